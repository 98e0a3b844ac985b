"""The Sparkplug B decoder the project did not write: Eclipse Tahu's ``sparkplug_b.proto``
(data/sparkplug_b.proto, copied unchanged from github.com/eclipse/tahu, sparkplug_b/, commit
5736e404; EPL-2.0, its header kept) compiled by ``grpc_tools.protoc`` and read by Google's
``protobuf`` runtime; and a subscriber (tests/sinks/mqttsub.py) that decodes every message
of a group with it."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sinks.mqttsub import BROKER, Subscriber

PROTO = Path(__file__).parent / "data" / "sparkplug_b.proto"
_COMPILED: list[Any] = []


def compiled(tmp_dir: Path) -> Any:
    """The module protoc makes of the proto (``sparkplug_b_pb2``), compiled once per run."""
    if _COMPILED:
        return _COMPILED[0]
    protoc = pytest.importorskip("grpc_tools.protoc")
    pytest.importorskip("google.protobuf")
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={tmp_dir}", PROTO.name]
    assert protoc.main(args) == 0, "protoc could not compile sparkplug_b.proto"
    sys.path.insert(0, str(tmp_dir))
    try:
        _COMPILED.append(importlib.import_module("sparkplug_b_pb2"))
    finally:
        sys.path.remove(str(tmp_dir))
    return _COMPILED[0]


@dataclass
class Message:
    topic: str
    kind: str  # NBIRTH, DBIRTH, DDATA, NDEATH, DDEATH
    edge_node: str
    device: str | None
    payload: Any  # the decoded Payload
    qos: int
    retain: bool


def sparkplug_subscriber(
    pb: Any, group: str, broker: tuple[str, int] = BROKER
) -> Subscriber[Message]:
    """A subscriber of ``spBv1.0/<group>/#`` that decodes every message with ``pb``."""

    def decode(msg: Any) -> Message:
        payload = pb.Payload()
        payload.ParseFromString(msg.payload)
        parts = msg.topic.split("/")
        device = parts[4] if len(parts) > 4 else None
        return Message(msg.topic, parts[2], parts[3], device, payload, msg.qos, msg.retain)

    return Subscriber(f"spBv1.0/{group}/#", decode, broker=broker)


def value_of(pb: Any, metric: Any, datatype: int) -> Any:
    """A decoded metric's value as its datatype says (None when ``is_null``); signed
    integers back from two's complement."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    value = getattr(metric, kind)
    bits = {pb.Int8: 32, pb.Int16: 32, pb.Int32: 32, pb.Int64: 64}.get(datatype)
    if bits is not None and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value
