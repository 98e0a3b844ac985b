"""One worker's Sparkplug B edge node: births, deaths, seq, bdSeq and aliases.

The MQTT sink's partition (:mod:`sinks.mqtt_writer`) asks :meth:`EdgeNode.connect` for the
NDEATH will before every MQTT CONNECT (each CONNECT takes the next bdSeq, 0-255 wrapping,
kept in ``bdseq_file`` across runs when one is given) and turns each batch of rows into
messages with :meth:`EdgeNode.messages`, published in that order:

* the first batch of a session (or after a rebirth) begins with the NBIRTH (``seq`` 0, the
  ``bdSeq`` of the will, ``Node Control/Rebirth`` = false) and a DBIRTH for every device
  this node has published; a device seen for the first time gets its DBIRTH before its first
  DDATA. A DBIRTH names every metric of the device's catalog entry with its datatype, alias
  and ``engUnit``, each with the last value published in this partition (null before one);
* a row of a metric the device's birth lacks, or whose value its datatype cannot hold (a
  fraction for an integer type), adds the metric (Double, or String for text) and makes
  the whole birth sequence again first (the spec adds metrics "with a new NBIRTH and DBIRTH
  sequence"); so does an NCMD ``Node Control/Rebirth`` (:meth:`request_rebirth`);
* then one DDATA per device and batch (at most 500 metrics each), its metrics by alias only,
  in row order, each with the row's ``requested_at`` in ms since the epoch; a row with an
  error carries the ``Quality`` property 0 (BAD), and ``is_null`` without a value when it
  has no value.

Every message but the NDEATH carries ``seq``, one more than the node's last (255 -> 0).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sinks.sparkplug import INT_RANGES, Metric, encode_metric, encode_payload, id_problem
from sinks.sparkplug import property_set as props

__all__ = ["NEEDED", "EdgeNode"]

logger = logging.getLogger(__name__)

NEEDED = ("device", "parameter", "value", "requested_at")  # columns a Sparkplug row must have
_OPTIONAL = ("value_text", "error", "unit")
_FLOAT_MAX = 3.4028234663852886e38
_CHUNK = 500  # metrics per DDATA
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
_BAD = props([("Quality", 0)])
_LAST_BDSEQ: dict[tuple[str, str], int] = {}  # the last of each edge node in this process
_LAST_LOCK = threading.Lock()


def _ms(at: datetime) -> int:
    return (at - _EPOCH) // _MS


def _fits(datatype: str, value: Any, text: Any) -> bool:
    """Whether a row's value (and text) can be published as ``datatype``."""
    if value is None:
        return text is None or datatype == "String"
    if datatype == "Double":
        return True
    if datatype == "Float":
        return not math.isfinite(value) or abs(value) <= _FLOAT_MAX
    if datatype == "Boolean":
        return value in (0, 1)
    if datatype == "String":
        return False
    low, high = INT_RANGES[datatype]
    return float(value).is_integer() and low <= value <= high


class EdgeNode:
    """The Sparkplug B state of one MQTT session after another; see the module docstring.

    ``catalog``: device -> its metrics, born in its DBIRTH whatever the rows carry.
    """

    def __init__(
        self,
        group: str,
        edge_node: str,
        catalog: Mapping[str, tuple[Metric, ...]],
        bdseq_file: Path | None,
    ) -> None:
        self.group, self.edge_node = group, edge_node
        self._catalog = catalog
        self._bdseq_file = bdseq_file
        self._bdseq = -1
        self._seq = 0
        self._rebirth = threading.Event()  # set by paho's thread on an NCMD
        self._metrics: dict[str, dict[str, Metric]] = {}  # devices published, in order
        self._aliases: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], tuple[int, Any, bool]] = {}  # (ms, value, error)
        self._index: tuple[int | None, ...] | None = None

    def topic(self, kind: str, device: str | None = None) -> str:
        """The topic of a message of ``kind`` (NBIRTH, DDATA ...) about ``device``."""
        base = f"spBv1.0/{self.group}/{kind}/{self.edge_node}"
        return base if device is None else f"{base}/{device}"

    def connect(self) -> tuple[str, bytes]:
        """Begin a session: take the next bdSeq and return the NDEATH (topic, payload) to
        register as the will. The next batch begins with the whole birth sequence."""
        key = (self.group, self.edge_node)
        with _LAST_LOCK:
            last = _LAST_BDSEQ.get(key)
            if last is None and self._bdseq_file is not None:
                try:
                    last = int(self._bdseq_file.read_text().strip())
                except (OSError, ValueError):
                    last = None
            self._bdseq = 0 if last is None else (last + 1) % 256
            _LAST_BDSEQ[key] = self._bdseq
        if self._bdseq_file is not None:
            try:
                part = self._bdseq_file.with_name(self._bdseq_file.name + ".tmp")
                part.write_text(f"{self._bdseq}\n")
                os.replace(part, self._bdseq_file)
            except OSError as exc:
                logger.warning(
                    "Sparkplug B %s: cannot keep bdSeq in %s: %s",
                    self.edge_node,
                    self._bdseq_file,
                    exc,
                )
        self._rebirth.set()
        return self.death()

    def death(self) -> tuple[str, bytes]:
        """The NDEATH of the current session: its bdSeq metric, no seq."""
        now = _ms(datetime.now(timezone.utc))
        bdseq = encode_metric(
            name="bdSeq", timestamp=now, datatype="Int64", value=self._bdseq, typed=True
        )
        return self.topic("NDEATH"), encode_payload(now, [bdseq], None)

    def request_rebirth(self) -> None:
        """Make the next batch begin with the whole birth sequence (from any thread)."""
        self._rebirth.set()

    def messages(
        self, names: tuple[str, ...], values: list[tuple[Any, ...]]
    ) -> list[tuple[str, bytes]]:
        """The messages publishing ``values`` (rows in ``names`` order), in order; raises
        ValueError naming the column of a value no message can hold (nothing is changed)."""
        if self._index is None:
            self._index = tuple(names.index(n) if n in names else None for n in NEEDED + _OPTIONAL)
        dev, par, val, at, txt, err, unit = self._index
        assert dev is not None and par is not None and val is not None and at is not None
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for row in values:
            rows.setdefault(row[dev], []).append(row)
        for device in rows:
            if device not in self._metrics and (why := id_problem(device)) is not None:
                raise ValueError(f"column 'device': {device!r} {why}, so it is no Sparkplug id")
        seq = self._seq
        try:
            return self._build(rows, (par, val, at, txt, err, unit))
        except BaseException:
            self._seq = seq  # nothing of it is published; the next batch births it all again
            self._rebirth.set()
            raise

    def _build(
        self, rows: dict[str, list[tuple[Any, ...]]], index: tuple[int | None, ...]
    ) -> list[tuple[str, bytes]]:
        par, val, at, txt, err, unit = index
        assert par is not None and val is not None and at is not None
        rebirth = self._rebirth.is_set()
        self._rebirth.clear()
        new: list[str] = []
        for device, device_rows in rows.items():
            metrics = self._metrics.get(device)
            if metrics is None:
                metrics = {m.name: m for m in self._catalog.get(device, ())}
                self._metrics[device] = metrics
                new.append(device)
            for row in device_rows:
                name, value = row[par], row[val]
                text = row[txt] if txt is not None else None
                metric = metrics.get(name)
                if metric is None or not _fits(metric.datatype, value, text):
                    kind = "String" if value is None and text is not None else "Double"
                    metrics[name] = Metric(name, kind, row[unit] if unit is not None else None)
                    rebirth = rebirth or device not in new
            for name in metrics:
                self._aliases.setdefault((device, name), len(self._aliases) + 1)
        now = _ms(datetime.now(timezone.utc))
        out = []
        if rebirth:
            out.append(self._nbirth(now))
            out += [self._dbirth(device, now) for device in self._metrics]
        else:
            out += [self._dbirth(device, now) for device in new]
        for device, device_rows in rows.items():
            metrics, topic = self._metrics[device], self.topic("DDATA", device)
            encoded = []
            for row in device_rows:
                name, value, failed = row[par], row[val], err is not None and row[err] is not None
                datatype = metrics[name].datatype
                if datatype == "String" and txt is not None:
                    value = row[txt]
                ms = _ms(row[at])
                self._last[(device, name)] = (ms, value, failed)
                encoded.append(
                    encode_metric(
                        alias=self._aliases[(device, name)],
                        timestamp=ms,
                        datatype=datatype,
                        value=value,
                        properties=_BAD if failed else b"",
                    )
                )
            for start in range(0, len(encoded), _CHUNK):
                out.append(
                    (topic, encode_payload(now, encoded[start : start + _CHUNK], self._next()))
                )
        return out

    def _next(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _nbirth(self, now: int) -> tuple[str, bytes]:
        self._seq = 0
        metrics = [
            encode_metric(
                name="bdSeq", timestamp=now, datatype="Int64", value=self._bdseq, typed=True
            ),
            encode_metric(
                name="Node Control/Rebirth",
                timestamp=now,
                datatype="Boolean",
                value=False,
                typed=True,
            ),
        ]
        return self.topic("NBIRTH"), encode_payload(now, metrics, 0)

    def _dbirth(self, device: str, now: int) -> tuple[str, bytes]:
        metrics = []
        for metric in self._metrics[device].values():
            key = (device, metric.name)
            ms, value, failed = self._last.get(key, (now, None, False))
            pairs: list[tuple[str, int | str]] = [("engUnit", metric.unit)] if metric.unit else []
            if failed:
                pairs.append(("Quality", 0))
            metrics.append(
                encode_metric(
                    name=metric.name,
                    alias=self._aliases[key],
                    timestamp=ms,
                    datatype=metric.datatype,
                    value=value,
                    typed=True,
                    properties=props(pairs),
                )
            )
        return self.topic("DBIRTH", device), encode_payload(now, metrics, self._next())
