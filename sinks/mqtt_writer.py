"""The MQTT sink's partition: one paho client and its network thread per worker.

paho's thread reads acknowledgements and sends what waits beyond the in-flight window; it ends
with its connection. ``write_batch`` publishes from the worker's (or the spool's) thread and
waits for the batch's acknowledgements; after a lost connection it connects again first (paho
then also sends again what the broker had not acknowledged). See :mod:`sinks.mqtt`.

With ``payload = "sparkplug_b"`` each CONNECT registers the edge node's NDEATH as the will,
and a reconnect is a new session (the next bdSeq, the whole birth sequence again; see
:mod:`sinks.sparkplug_node`); the client subscribes to its NCMD topic for rebirth requests,
and a clean ``close`` publishes the NDEATH (QoS 1, acknowledged or given up after a second)
before it disconnects, since an MQTT 3.1.1 DISCONNECT discards the will.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sinks.base import Schema, SinkSchemaError, SinkUnavailableError, SinkValueError, SinkWriteError
from sinks.jsonl import _json_column  # the JSON Lines sink's rendering, one row per message
from sinks.partition import LockedPartition
from sinks.sparkplug import rebirth_requested
from sinks.sparkplug_node import EdgeNode
from sinks.values import misfit

if TYPE_CHECKING:
    from sinks.mqtt import IntoMqtt

__all__ = ["MqttPartition"]

logger = logging.getLogger(__name__)


class MqttPartition(LockedPartition):
    """One worker's MQTT client; see the module docstrings."""

    def __init__(
        self, into: IntoMqtt, paho: ModuleType, worker_index: int, worker_count: int = 1
    ) -> None:
        super().__init__(into.schema, f"MQTT broker {into.broker}")
        self._into = into
        self._paho = paho
        self._secret = into.password
        self._cond = threading.Condition()
        self._connected = False
        self._refused: str | None = None  # the broker's CONNACK refusal, if any
        self._lost: str | None = None  # why the connection went, if it did
        self._closing = False
        self._acked: set[int] = set()
        self._render: Any = None  # the topic of a row, once the schema is known
        self._node: EdgeNode | None = None
        if into.payload == "sparkplug_b":
            edge = into.edge_node(worker_index, worker_count)
            catalog = dict(into.devices)
            self._node = EdgeNode(into.group, edge, catalog, into.bdseq_file(edge))
        base = into.client_id or f"bytewax-daq-{secrets.token_hex(4)}"
        # No reconnect in paho's thread: its backoff sleeps would hold up close(); the next
        # write reconnects instead (behind the spool, a new partition does).
        client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=f"{base}-w{worker_index}",
            clean_session=True,
            reconnect_on_failure=False,
        )
        client.connect_timeout = into.connect_timeout_s
        client.max_inflight_messages_set(into.max_inflight)
        client.max_queued_messages_set(0)  # unbounded: the batch waits for its acks anyway
        if into.username is not None:
            client.username_pw_set(into.username, into.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        if into.connection()["tls"]:
            try:
                client.tls_set(
                    ca_certs=into.ca_file, certfile=into.cert_file, keyfile=into.key_file
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise SinkUnavailableError(
                    f"{self._where}: cannot load the TLS files: {self._scrub(exc)}"
                ) from None
        self._connect(first=True)

    def _connect(self, *, first: bool) -> None:
        """Connect (or reconnect) and start paho's thread; wait for the broker's CONNACK."""
        client, into = self._client, self._into
        client.loop_stop()  # a thread that ended with its connection: wait until it has
        with self._cond:
            self._refused = None
        if self._node is not None:  # every CONNECT is a new Sparkplug session
            topic, death = self._node.connect()
            client.will_set(topic, death, qos=1, retain=False)
        try:
            if first:
                address = into.connection()
                client.connect(address["host"], address["port"], into.keepalive_s)
            else:
                client.reconnect()
        except ssl.SSLCertVerificationError as exc:  # no retry makes the broker trusted
            raise SinkWriteError(f"{self._where}: {self._scrub(exc)}") from None
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket errors are OSErrors
            raise SinkUnavailableError(
                f"cannot connect to {self._where}: {self._scrub(exc)}"
            ) from None
        client.loop_start()
        deadline = time.monotonic() + into.connect_timeout_s
        with self._cond:
            while not self._connected and self._refused is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            refused = self._refused
            if self._connected:
                return
        client.disconnect()
        client.loop_stop()
        if refused is not None:
            raise SinkWriteError(f"{self._where} refused the connection: {refused}")
        raise SinkUnavailableError(
            f"{self._where}: no CONNACK within connect_timeout_s = {into.connect_timeout_s}"
        )

    # ----- paho's thread

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            if reason.is_failure:
                self._refused = str(reason)
            else:
                self._connected, self._lost = True, None
                if self._node is not None:
                    client.subscribe(self._node.topic("NCMD"), qos=1)
            self._cond.notify_all()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._cond:
            if self._connected and not self._closing:
                logger.warning("%s: connection lost (%s)", self._where, reason)
            self._connected = False
            self._lost = str(reason)
            self._cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self._node is not None and rebirth_requested(message.payload):
            logger.info("%s: NCMD asks for a rebirth", self._where)
            self._node.request_rebirth()

    # ----- the writer's thread

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return text.replace(self._secret, "***") if self._secret else text

    def _payloads(self, schema: Schema, values: list[tuple[Any, ...]]) -> list[bytes]:
        # Column names are checked identifiers, so they need no JSON escaping.
        shape = "{" + ", ".join(f'"{name}": %s' for name in schema.names) + "}"
        try:
            columns = [
                _json_column(c.type, col)
                for c, col in zip(schema.columns, zip(*values, strict=True), strict=True)
            ]
            return [(shape % row).encode() for row in zip(*columns, strict=True)]
        except (SinkValueError, TypeError, ValueError) as exc:  # UnicodeEncodeError too
            problem = misfit(schema, values) or f"a value cannot be JSON: {exc}"
            raise SinkValueError(f"{self._where}: {problem}; nothing was published") from None

    def _topics(self, schema: Schema, values: list[tuple[Any, ...]]) -> list[str]:
        if self._render is None:
            template = self._into.template
            if (why := template.check_columns(schema.names)) is not None:
                raise SinkSchemaError(f"{self._where}: topic {why}")
            self._render = template.renderer(schema.names)
        try:
            return [self._render(row) for row in values]
        except (ValueError, SinkValueError) as exc:
            raise SinkValueError(f"{self._where}: topic: {exc}; nothing was published") from None

    def _write(self, schema: Schema, values: list[tuple[Any, ...]]) -> None:
        """Publish the batch and wait for it (see :mod:`sinks.mqtt`); rendered first, so a
        bad value publishes nothing."""
        node = self._node
        if node is None:
            messages = list(
                zip(self._topics(schema, values), self._payloads(schema, values), strict=True)
            )
        elif (why := self._into.check_columns(schema.names)) is not None:
            raise SinkSchemaError(f"{self._where}: {why}")
        paho, qos, retain = self._paho, self._into.effective_qos, self._into.retain
        with self._cond:
            connected = self._connected
        if not connected:  # lost since the last write
            self._connect(first=False)
        if node is not None:  # built once connected: a reconnect begins a new session
            try:
                messages = node.messages(schema.names, values)
            except (TypeError, ValueError) as exc:  # UnicodeEncodeError too
                problem = misfit(schema, values) or str(exc)
                raise SinkValueError(f"{self._where}: {problem}; nothing was published") from None
        with self._cond:
            self._acked.clear()
        pending: set[int] = set()
        for topic, payload in messages:
            info = self._client.publish(topic, payload, qos, retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                if info.rc == paho.MQTT_ERR_NO_CONN:  # before paho's thread says so: the
                    with self._cond:  # next write connects again
                        self._connected = False
                raise SinkUnavailableError(
                    f"{self._where}: cannot publish ({paho.error_string(info.rc)})"
                )
            pending.add(info.mid)
        deadline = time.monotonic() + self._into.ack_timeout_s
        with self._cond:
            while True:
                pending -= self._acked
                self._acked.clear()
                if not pending:
                    return
                if not self._connected:
                    raise SinkUnavailableError(
                        f"{self._where}: connection lost with {len(pending)} of {len(messages)} "
                        f"messages unacknowledged ({self._lost})"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SinkUnavailableError(
                        f"{self._where}: {len(pending)} of {len(messages)} messages not "
                        f"acknowledged within ack_timeout_s = {self._into.ack_timeout_s}"
                    )
                self._cond.wait(left)

    def _close(self) -> None:
        with self._cond:
            self._closing = True
            connected = self._connected
        if self._node is not None and connected:
            topic, death = self._node.death()
            try:
                self._client.publish(topic, death, qos=1, retain=False).wait_for_publish(1.0)
            except (RuntimeError, ValueError) as exc:  # the connection went meanwhile
                logger.debug("%s: NDEATH: %s", self._where, exc)
        try:
            self._client.disconnect()
        except Exception as exc:  # closing a client that failed: nothing more to say
            logger.debug("%s: disconnect: %s", self._where, self._scrub(exc))
        # Stopped before its thread wrote the DISCONNECT, the client would leave the broker
        # to see the connection drop and publish the will (a second NDEATH).
        with self._cond:
            self._cond.wait_for(lambda: not self._connected, 1.0)
        self._client.loop_stop()
