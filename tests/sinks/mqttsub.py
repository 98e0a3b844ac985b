"""The MQTT tests' broker and their independent subscriber.

``BROKER``/``URL``: the Mosquitto on 127.0.0.1:1883. The ``broker`` fixture skips a module
when none answers, except under CI (``CI=true``), where it fails. :class:`Subscriber` is a
paho client of its own, not the sink's code, that keeps every message it receives as its
``decode`` makes it."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pytest

paho = pytest.importorskip("paho.mqtt.client")

__all__ = ["BROKER", "URL", "Subscriber", "broker", "paho"]

BROKER = ("127.0.0.1", 1883)
URL = "mqtt://127.0.0.1:1883"

T = TypeVar("T")


@pytest.fixture(scope="module", autouse=True)
def broker() -> None:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError as exc:
        reason = f"no MQTT broker answers on {BROKER[0]}:{BROKER[1]} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the MQTT tests")
        pytest.skip(reason)


class Subscriber(Generic[T]):
    """Subscribed at QoS 1 to ``topics`` on ``broker`` once built; ``messages`` holds
    ``decode(message)`` of each message received, in order.

    ``keep``: a session the broker keeps across a restart under ``client_id`` (the client
    reconnects by itself and subscribes again)."""

    def __init__(
        self,
        topics: str,
        decode: Callable[[Any], T],
        *,
        broker: tuple[str, int] = BROKER,
        client_id: str = "",
        keep: bool = False,
    ) -> None:
        self.messages: list[T] = []
        self._decode = decode
        self._cond = threading.Condition()
        ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not keep
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_: c.subscribe(topics, 1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(*broker)
        self.client.loop_start()
        assert ready.wait(5), "the subscriber was not subscribed"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        found = self._decode(msg)
        with self._cond:
            self.messages.append(found)
            self._cond.notify_all()

    def wait(self, done: int | Callable[[list[T]], bool], timeout: float = 5.0) -> list[T]:
        """The messages once there are ``done`` of them, or ``done(messages)`` holds (or
        the timeout passed)."""
        enough = done if callable(done) else (lambda got: len(got) >= done)
        with self._cond:
            self._cond.wait_for(lambda: enough(self.messages), timeout)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
