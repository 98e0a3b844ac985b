"""MQTT sink (paho-mqtt 2.x): one JSON message per row, on a topic templated from the row;
or Sparkplug B (below).

The topic is ``topic`` with ``{name}`` replaced by the row's value of column ``name``
(``{prefix}`` by the ``prefix`` setting); the payload is the row as one JSON object, keys in
the schema's column order, timestamps ISO 8601 UTC strings, NaN and infinities ``null`` (the
rendering of :mod:`sinks.jsonl`). A template with an unknown field (when the schema is known),
a format spec, an MQTT wildcard (``+``, ``#``), NUL, an empty level or a leading ``$`` is
refused with SinkConfigError naming the setting; a row value that would put one of those in a
topic rejects the batch with SinkValueError naming the column.

JSON delivery is at least once. ``write_batch`` publishes every row (paho keeps ``max_inflight``
QoS 1 messages in flight and queues the rest) and returns once the broker acknowledged them
all (QoS 1) or they left the client (QoS 0). A broker that is down, a lost connection or
acknowledgements missing after ``ack_timeout_s`` raise SinkUnavailableError: the spool in
front of every configured sink then writes the whole batch again later, so a subscriber may
receive a row twice across an outage, never none. Credentials the broker refuses and a
broker certificate the CAs do not vouch for raise SinkWriteError (no retry fixes them). The
password never appears in a repr, message or log line: messages name the broker as
``host:port``.

``payload = "sparkplug_b"`` publishes Eclipse Sparkplug B 3.0 instead: worker ``i`` is the
edge node ``<edge_node_id>`` (``<edge_node_id>-w<i>`` with several workers, one MQTT session
each) of group ``group_id``, its messages on ``spBv1.0/<group_id>/<type>/<edge node>[/<device>]``
as :mod:`sinks.sparkplug_node` says, at QoS 0 (``qos = 1`` may be chosen) and never retained,
the NDEATH registered as the will (QoS 1). ``devices`` is the catalog of metrics each device
is born with; the acquisition config gives it from its profiles, as it gives ``state_dir``,
where bdSeq is kept across runs (neither is a TOML key).

This module holds the settings; the topic template is in :mod:`sinks.mqtt_topic`, the
partition in :mod:`sinks.mqtt_writer`.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sinks.base import IntoSink, Schema, SinkConfigError, SinkDependencyError, SinkTarget
from sinks.mqtt_topic import TopicTemplate, bad_text
from sinks.sparkplug import Metric, id_problem
from sinks.sparkplug_node import NEEDED

__all__ = ["DEFAULT_TOPIC", "IntoMqtt"]

DEFAULT_TOPIC = "{prefix}/{bus}/{device}/{parameter}"
PAYLOADS = ("json", "sparkplug_b")
DEFAULT_GROUP = "bytewax-daq"
_SPARKPLUG_ONLY = ("group_id", "edge_node_id", "devices", "state_dir")


def _check(name: str, ok: bool, what: str, value: Any, *, show: bool = True) -> None:
    if not ok:
        shown = f"{value!r} " if show else ""
        raise SinkConfigError("IntoMqtt", name, f"{shown}is not {what}")


@dataclass(frozen=True)
class IntoMqtt(IntoSink):
    """Publish rows to an MQTT broker, one partition (client) per worker.

    ``url``: ``mqtt://host[:port]`` (port 1883) or ``mqtts://host[:port]`` (TLS, port 8883,
    verified against ``ca_file`` or the system's CAs; ``cert_file`` and ``key_file`` for a
    client certificate). ``username``, ``password``: the broker's credentials.
    ``client_id``: the client id of worker ``i`` is ``<client_id>-w<i>`` (default
    ``bytewax-daq-<8 random hex>-w<i>``, so two sinks or two runs never take each other's
    session). ``keepalive_s``; ``connect_timeout_s`` for the TCP connect and the broker's
    CONNACK. ``topic``, ``prefix``: the topic template (see the module). ``qos``: 0 or 1;
    ``retain``: the broker keeps each topic's last message. ``max_inflight``: QoS 1 messages
    awaiting acknowledgement at once; ``ack_timeout_s``: the longest a batch waits for them.
    ``payload``: ``json`` or ``sparkplug_b`` (with ``group_id``, ``edge_node_id`` (default:
    the host name), ``devices`` and ``state_dir``; see the module). ``qos`` None: 1 for JSON,
    0 for Sparkplug B.
    """

    url: str
    topic: str = DEFAULT_TOPIC
    prefix: str = "daq"
    qos: int | None = None
    retain: bool = False
    payload: str = "json"
    group_id: str | None = None
    edge_node_id: str | None = None
    devices: tuple[tuple[str, tuple[Metric, ...]], ...] = ()
    state_dir: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    keepalive_s: int = 60
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    max_inflight: int = 1000
    ack_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    schema: Schema | None = None

    def __post_init__(self) -> None:
        url = self.url if isinstance(self.url, str) else ""
        shown = repr(url) if "@" not in url else "the URL"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise SinkConfigError("IntoMqtt", "url", f"{shown} has a bad port") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SinkConfigError("IntoMqtt", "url", f"{shown} is not mqtt://host[:port]")
        if "@" in parts.netloc:
            raise SinkConfigError(
                "IntoMqtt", "url", "credentials go in username and password, not in the URL"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise SinkConfigError("IntoMqtt", "url", f"{shown} has a path or query")
        self._set("_host", parts.hostname)
        self._set("_port", port or (8883 if parts.scheme == "mqtts" else 1883))
        self._set("_tls", parts.scheme == "mqtts")
        _check("prefix", isinstance(self.prefix, str), "a string", self.prefix)
        if (why := bad_text(self.prefix)) is not None:
            raise SinkConfigError("IntoMqtt", "prefix", f"{self.prefix!r} {why}")
        _check("topic", isinstance(self.topic, str), "a string", self.topic)
        self._set("_template", TopicTemplate(self.topic, self.prefix))
        qos_ok = self.qos is None or (self.qos in (0, 1) and not isinstance(self.qos, bool))
        _check("qos", qos_ok, "0 or 1", self.qos)
        _check("retain", isinstance(self.retain, bool), "a bool", self.retain)
        self._check_sparkplug()
        for name in ("username", "client_id"):
            value = getattr(self, name)
            ok = value is None or (isinstance(value, str) and 0 < len(value) <= 100)
            _check(name, ok and "\0" not in (value or ""), "a string of 1-100 characters", value)
        _check("password", self.password is None or isinstance(self.password, str),
               "a string", None, show=False)  # fmt: skip
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is None:
                continue
            if not self._tls:
                raise SinkConfigError("IntoMqtt", name, "needs an mqtts:// url")
            _check(name, isinstance(value, str) and Path(value).is_file(), "a file", value)
        if self.key_file is not None and self.cert_file is None:
            raise SinkConfigError("IntoMqtt", "key_file", "needs cert_file")
        for name, low, high, integer in (
            ("keepalive_s", 1, 65535, True),
            ("max_inflight", 1, 65535, True),
            ("ack_timeout_s", 0.001, 3600, False),
            ("connect_timeout_s", 0.001, 3600, False),
        ):
            value = getattr(self, name)
            typed = not isinstance(value, bool) and isinstance(
                value, int if integer else (int, float)
            )
            kind = "an integer" if integer else "a number"
            _check(name, typed and low <= value <= high, f"{kind} in [{low}, {high}]", value)
        if self.schema is not None:
            _check("schema", isinstance(self.schema, Schema), "a Schema or None", self.schema)
            if (why := self.check_columns(self.schema.names)) is not None:
                raise SinkConfigError("IntoMqtt", self._blame, why)

    def _check_sparkplug(self) -> None:
        _check("payload", self.payload in PAYLOADS, " or ".join(PAYLOADS), self.payload)
        if self.payload != "sparkplug_b":
            for name in _SPARKPLUG_ONLY:
                if getattr(self, name) not in (None, ()):
                    raise SinkConfigError("IntoMqtt", name, "is for payload = 'sparkplug_b' only")
            return
        for name, default in (("topic", DEFAULT_TOPIC), ("prefix", "daq")):
            if getattr(self, name) != default:
                raise SinkConfigError(
                    "IntoMqtt",
                    name,
                    "Sparkplug B topics are spBv1.0/<group_id>/<type>/<edge_node_id>[/<device>]; "
                    "set group_id and edge_node_id instead",
                )
        if self.retain:
            raise SinkConfigError(
                "IntoMqtt", "retain", "Sparkplug B messages are never retained (the spec)"
            )
        for name in ("group_id", "edge_node_id"):
            value = getattr(self, name)
            if value is not None and (why := id_problem(value)) is not None:
                raise SinkConfigError("IntoMqtt", name, f"{value!r} {why}: not a Sparkplug B id")
        if not isinstance(self.devices, tuple) or not all(
            isinstance(d, tuple) and len(d) == 2 and all(isinstance(m, Metric) for m in d[1])
            for d in self.devices
        ):
            raise SinkConfigError("IntoMqtt", "devices", "is not a tuple of (device, metrics)")
        for device, _ in self.devices:
            if (why := id_problem(device)) is not None:
                raise SinkConfigError(
                    "IntoMqtt",
                    "payload",
                    f"device {device!r} {why}: not a Sparkplug B device id",
                )

    @classmethod
    def settings(cls) -> dict[str, bool]:
        """The settings a config may give: the catalog and the state directory are the
        acquisition config's to give, not TOML keys."""
        return {k: v for k, v in super().settings().items() if k not in ("devices", "state_dir")}

    @property
    def _blame(self) -> str:
        return "payload" if self.payload == "sparkplug_b" else "topic"

    def check_columns(self, names: tuple[str, ...]) -> str | None:
        """Why rows of these columns cannot be published (the topic's fields, or the columns
        Sparkplug B needs), or None."""
        if self.payload == "sparkplug_b":
            missing = [n for n in NEEDED if n not in names]
            if missing:
                return f"Sparkplug B needs the columns {', '.join(NEEDED)}; missing {missing[0]!r}"
            return None
        return self._template.check_columns(names)  # type: ignore[attr-defined,no-any-return]

    @property
    def effective_qos(self) -> int:
        """The QoS messages are published with: ``qos``, else 1 (JSON) or 0 (Sparkplug B)."""
        if self.qos is not None:
            return self.qos
        return 0 if self.payload == "sparkplug_b" else 1

    @property
    def group(self) -> str:
        """The Sparkplug B group id."""
        return self.group_id or DEFAULT_GROUP

    def edge_node(self, worker_index: int, worker_count: int) -> str:
        """The Sparkplug B edge node id of worker ``worker_index``."""
        base = self.edge_node_id
        if base is None:
            base = re.sub(r"[+/#\0]", "_", socket.gethostname()) or "bytewax-daq"
        return base if worker_count == 1 else f"{base}-w{worker_index}"

    def bdseq_file(self, edge_node: str) -> Path | None:
        """Where the edge node keeps its last bdSeq (None: in this process only)."""
        if self.state_dir is None:
            return None
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.group}-{edge_node}")[:100]
        return Path(self.state_dir) / f"sparkplug-{name}.bdseq"

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @property
    def broker(self) -> str:
        """``host:port`` of the broker: how messages name it."""
        return f"{self._host}:{self._port}"  # type: ignore[attr-defined]

    @property
    def template(self) -> TopicTemplate:
        """The checked topic template."""
        return self._template  # type: ignore[attr-defined,no-any-return]

    @property
    def target(self) -> SinkTarget:
        """The topics of the template on this broker, blamed on ``topic``."""
        scheme = "mqtts" if self._tls else "mqtt"  # type: ignore[attr-defined]
        if self.payload == "sparkplug_b":
            where = f"spBv1.0/{self.group}/{self.edge_node(0, 1)}"
            return SinkTarget("database", f"{scheme}://{self.broker}/{where}", "edge_node_id")
        return SinkTarget("database", f"{scheme}://{self.broker}/{self.topic}", "topic")

    def __repr__(self) -> str:
        if self.payload == "sparkplug_b":
            where = f"spBv1.0/{self.group}/{self.edge_node(0, 1)}"
            return f"IntoMqtt({self.broker} {where} qos={self.effective_qos})"
        return f"IntoMqtt({self.broker} {self.topic!r} qos={self.effective_qos})"

    def connection(self) -> Mapping[str, Any]:
        """What the partition needs to connect: host, port and TLS."""
        return {"host": self._host, "port": self._port, "tls": self._tls}  # type: ignore[attr-defined]

    def build_partition(self, worker_index: int, worker_count: int) -> Any:
        """Connect worker ``worker_index``'s client (paho-mqtt is imported here) and start
        its network thread; a broker that refuses or does not answer raises
        SinkUnavailableError."""
        try:
            import paho.mqtt.client as paho
        except ImportError as exc:
            raise SinkDependencyError(
                f'IntoMqtt needs paho-mqtt ({exc}): pip install ".[mqtt]"'
            ) from exc
        from sinks.mqtt_writer import MqttPartition

        return MqttPartition(self, paho, worker_index, worker_count)
