"""The default config with an MQTT sink added: an independent subscriber receives every row
the run stored, each exactly once (issue 20's first done-when)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path

from bytewax.testing import run_main

from flows.acquire import build_flow
from flows.config import load_config
from tests.sinks.test_mqtt import BROKER, URL
from tests.sinks.test_mqtt import broker as broker  # the fixture: its skip rule

ROOT = Path(__file__).resolve().parents[2]


def test_every_row_of_a_default_run_is_received_once(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    prefix = f"daqtest{uuid.uuid4().hex[:8]}"
    text = (ROOT / "acquire.toml").read_text().replace("duration_s = 10", "duration_s = 2")
    text += f'\n[[sink]]\nkind = "mqtt"\nurl = "{URL}"\nprefix = "{prefix}"\n'
    (tmp_path / "acquire.toml").write_text(text)
    config = load_config(tmp_path / "acquire.toml")
    got: list[tuple[str, str, str]] = []

    def receive(client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        row = json.loads(message.payload)
        got.append((row["device"], row["parameter"], row["requested_at"]))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = receive
    sub.connect(*BROKER)
    sub.subscribe(f"{prefix}/#", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.3)
        run_main(build_flow(config))
        time.sleep(0.5)
    finally:
        sub.loop_stop()
        sub.disconnect()
    with sqlite3.connect(tmp_path / "data" / "acquire.sqlite") as db:
        stored = db.execute("SELECT device, parameter, requested_at FROM samples").fetchall()
    counts = Counter(got)
    assert len(stored) > 100
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:3]
    assert len(got) == len(stored)
