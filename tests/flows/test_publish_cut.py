"""A whole run publishing through a proxy whose network fails mid-run (issue 20, item 5):
first the broker's side goes dark (blackhole: nothing passes, then everything held passes
at once), then the connection is cut (RST to both ends). An independent subscriber on the
broker itself receives every row the run stored at least once; a row comes twice only when
it was polled around a fault (QoS 1 publishes again what was not acknowledged), and those
are counted."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bytewax.testing import run_main

from flows.acquire import build_flow
from flows.config import load_config
from tests.faults.proxy import FaultProxy
from tests.sinks.test_mqtt import BROKER
from tests.sinks.test_mqtt import broker as broker  # the fixture: its skip rule

ROOT = Path(__file__).resolve().parents[2]
TICK = timedelta(seconds=0.25)


def test_a_dark_then_cut_connection_loses_no_row(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    prefix = f"daqtest{uuid.uuid4().hex[:8]}"
    got: Counter[tuple[str, str, str]] = Counter()

    def receive(client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        row = json.loads(message.payload)
        got[(row["device"], row["parameter"], row["requested_at"])] += 1

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = receive
    sub.connect(*BROKER)
    sub.subscribe(f"{prefix}/#", qos=1)
    sub.loop_start()
    faults: list[tuple[datetime, datetime]] = []  # when each fault began and ended
    with FaultProxy(BROKER) as proxy:
        text = (ROOT / "acquire.toml").read_text()
        text = text.replace("duration_s = 10", "duration_s = 3.5").replace(
            "rate_hz = 1.0", "rate_hz = 4"
        )
        text = text.replace('dir = "data/spool"', 'dir = "data/spool"\nretry_max_s = 0.2')
        text += (
            f'\n[[sink]]\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:{proxy.port}"\n'
            f'prefix = "{prefix}"\nack_timeout_s = 0.3\n'
        )
        (tmp_path / "acquire.toml").write_text(text)
        flow = build_flow(load_config(tmp_path / "acquire.toml"))
        run = threading.Thread(target=run_main, args=(flow,))
        run.start()
        time.sleep(1.0)
        began = datetime.now(timezone.utc)
        proxy.mode = "blackhole"  # what the sink sends now waits in the proxy, unacknowledged
        time.sleep(0.6)
        proxy.mode = "pass"  # ... and reaches the broker now, beside what the spool sends
        faults.append((began, datetime.now(timezone.utc)))
        time.sleep(0.6)
        began = datetime.now(timezone.utc)
        proxy.mode = "cut"
        faults.append((began, datetime.now(timezone.utc)))
        run.join(20)
        assert not run.is_alive()
        time.sleep(0.5)
    sub.loop_stop()
    sub.disconnect()
    with sqlite3.connect(tmp_path / "data" / "acquire.sqlite") as db:
        stored = db.execute("SELECT device, parameter, requested_at FROM samples").fetchall()
    assert len(stored) > 200
    keys = [(d, p, datetime.fromisoformat(at)) for d, p, at in stored]
    received = {(d, p, datetime.fromisoformat(at)): n for (d, p, at), n in got.items()}
    assert [k for k in keys if k not in received] == [], "rows lost"
    twice = sorted(at for k, n in received.items() if n > 1 for at in [k[2]])
    assert max(received.values()) <= 2
    # A fault's window: from two ticks before it (a batch polled then may still wait for its
    # acknowledgements) to one tick after it ended.
    near = [[b - 2 * TICK <= at <= e + TICK for at in twice] for b, e in faults]
    assert all(map(any, zip(*near, strict=True))), "a row polled far from any fault came twice"
    assert any(near[0]), "the held batch, delivered when the proxy passed again, came twice"
    per_fault = [sum(hits) for hits in near]
    print(f"{len(keys)} rows; received twice: {len(twice)} ({per_fault} around the faults)")
