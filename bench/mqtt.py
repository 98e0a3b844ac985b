"""The MQTT sink against a bare paho-mqtt publish loop, and the latency of the whole flow.

Throughput: the same acquisition rows (default 200,000 in batches of 10,000, bench/sinks.py's
``make_batches``: 400 topics) go once through the project's sink (``sinks.mqtt.IntoMqtt``,
QoS 1, ``build_partition(0, 1)`` and ``write_batch``) and once through a bare paho-mqtt 2.x
client doing the same job: the same topics and JSON payloads, QoS 1, the same in-flight
window, each batch acknowledged before the next (the sink's contract). Both go to the
Mosquitto on 127.0.0.1:1883, alternating, best of ``--repeat``. An independent subscriber
(another process, ``<prefix>/#``) counts what arrived in each run and sums a hash of
every (topic below the run's prefix, payload), so the two runs are shown to have sent the
same messages.

Latency: ``--buses`` simulated Modbus TCP buses (pymodbus servers in the flow's process,
8 Watlow PMs x 4 parameters each) at 1 Hz for ``--seconds`` through
``python -m bytewax.run flows.acquire`` with an MQTT sink; the subscriber notes when each
message arrived, and p50/p99/max of (arrival - the row's ``received_at``) are printed, with
the rows the flow counted against the messages received.

The CPU steal of the run is printed; the last line is ``ratio mqtt <r>, p99 latency <ms> ms``
(targets: ratio >= 0.8).

    python bench/mqtt.py [--rows 200000] [--batch 10000] [--repeat 3] [--seconds 20]
                         [--buses 16] [--broker 127.0.0.1:1883]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The project first, even when installed: bench/ holds a sinks.py of its own.
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_times, steal_since  # noqa: E402
from bench.scale import PARAMS  # noqa: E402
from bench.sinks import Batches, make_batches, timed  # noqa: E402

INFLIGHT = 1000  # the sink's default max_inflight, given to the bare client too
_MASK = 2**64 - 1


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    raise TypeError(type(value).__name__)


def _digest(topic: str, payload: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=8).digest())


# ----- the independent subscriber (a process of its own: ``--subscribe PREFIX``)


def subscribe(broker: tuple[str, int], prefix: str) -> None:
    """Subscribe to ``<prefix>/#``; per run (the topic level after the prefix) count the
    messages, sum their digests and note arrival times. Commands on stdin, one a line:
    ``count RUN N`` or ``latency RUN N`` answer once N messages of RUN arrived or none came
    for 3 s: ``RUN <count> <digest>`` (and, for latency, `` <p50 ms> <p99 ms> <max ms>``)."""
    import paho.mqtt.client as paho

    cond = threading.Condition()
    runs: dict[str, list[Any]] = {}  # run -> [count, digest, last arrival, [(arrival, payload)]]

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        run, _, topic = msg.topic[len(prefix) + 1 :].partition("/")
        with cond:
            r = runs.setdefault(run, [0, 0, now, []])
            r[0] += 1
            r[1] = (r[1] + _digest(topic, msg.payload)) & _MASK
            r[2] = now
            if run == "lat":  # the latency run: payloads kept for their received_at
                r[3].append((now, msg.payload))

    ready = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-sub")
    # QoS 0: Mosquitto sends a QoS 1 subscriber 20 messages at a time (max_inflight_messages)
    # and drops what passes 1000 queued behind them, which a Python client at 10,000 messages/s
    # reaches; at QoS 0 the socket's buffers absorb the bursts. The counts show any loss.
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", 0)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = on_message
    client.connect(*broker)
    client.loop_start()
    if not ready.wait(10):
        raise SystemExit("the subscriber was not subscribed")
    print("ready", flush=True)
    for line in sys.stdin:
        what, run, expected = line.split()
        asked = time.time()
        with cond:
            while True:
                r = runs.get(run, [0, 0, asked, []])
                if r[0] >= int(expected) or time.time() - max(r[2], asked) > 3:
                    break
                cond.wait(0.1)
            answer = f"{run} {r[0]} {r[1]}"
            arrivals = list(r[3])
        if what == "latency":
            ms = sorted(
                (at - datetime.fromisoformat(json.loads(p)["received_at"]).timestamp()) * 1000
                for at, p in arrivals
            )
            pick = [ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")
                    for q in (0.5, 0.99)]  # fmt: skip
            answer += f" {pick[0]:.1f} {pick[1]:.1f} {ms[-1] if ms else float('nan'):.1f}"
        print(answer, flush=True)
    client.disconnect()
    client.loop_stop()


class Subscriber:
    """The subscriber process, driven through its stdin and stdout."""

    def __init__(self, broker: str, prefix: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--subscribe", prefix, "--broker", broker],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        if self._out.readline().strip() != "ready":
            self.proc.kill()
            raise SystemExit("the subscriber did not start")

    def ask(self, what: str, run: str, expected: int) -> list[str]:
        self._in.write(f"{what} {run} {expected}\n")
        self._in.flush()
        return self._out.readline().split()[1:]

    def close(self) -> None:
        self._in.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----- throughput


def floor_paho(broker: tuple[str, int], prefix: str, batches: Batches) -> None:
    """The bare client: publish each batch at QoS 1 and wait for its acknowledgements."""
    import paho.mqtt.client as paho

    cond = threading.Condition()
    count = {"acked": 0, "sent": 0}

    def on_publish(*_: Any) -> None:
        with cond:
            count["acked"] += 1
            if count["acked"] >= count["sent"]:
                cond.notify()

    def done() -> bool:
        return count["acked"] >= count["sent"]

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-floor")
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(*broker)
    client.loop_start()
    for batch in batches:
        for row in batch:
            topic = f"{prefix}/{row['bus']}/{row['device']}/{row['parameter']}"
            client.publish(topic, json.dumps(row, default=_iso).encode(), 1)
        with cond:
            count["sent"] += len(batch)
            if not cond.wait_for(done, 30):
                raise SystemExit("floor: messages not acknowledged in 30 s")
    client.disconnect()
    client.loop_stop()


def project_mqtt(broker: str, prefix: str, batches: Batches) -> None:
    from flows.rows import SAMPLE_SCHEMA
    from sinks.mqtt import IntoMqtt

    sink = IntoMqtt(url=f"mqtt://{broker}", prefix=prefix, qos=1, schema=SAMPLE_SCHEMA,
                    max_inflight=INFLIGHT, ack_timeout_s=30)  # fmt: skip
    part = sink.build_partition(0, 1)
    for batch in batches:
        part.write_batch(batch)
    part.close()


def throughput(args: argparse.Namespace, sub: Subscriber, prefix: str) -> float:
    host, _, port = args.broker.rpartition(":")
    batches = make_batches(args.rows, args.batch)
    n = sum(len(b) for b in batches)
    best = {"floor": float("inf"), "project": float("inf")}
    digests: dict[str, set[str]] = {"floor": set(), "project": set()}
    missing = 0
    for i in range(args.repeat):
        # Alternate and keep each one's best: the broker still delivering the previous
        # run's messages to the subscriber would otherwise always tax the second.
        for name in ("floor", "project"):
            run = f"{name}{i}"
            if name == "floor":
                seconds = timed(floor_paho, (host, int(port)), f"{prefix}/{run}", batches)
            else:
                seconds = timed(project_mqtt, args.broker, f"{prefix}/{run}", batches)
            count, digest = sub.ask("count", run, n)
            digests[name].add(digest)
            missing += n - int(count)
            best[name] = min(best[name], seconds)
            print(f"  {run}: {n / seconds:,.0f} rows/s; subscriber received {count} of {n}",
                  flush=True)  # fmt: skip
    ratio = best["floor"] / best["project"]
    same = len(digests["floor"] | digests["project"]) == 1
    print(f"throughput: project {n / best['project']:,.0f} rows/s, floor {n / best['floor']:,.0f} "
          f"rows/s, ratio {ratio:.2f} ({n} rows x {args.repeat}, QoS 1, batches of {args.batch}); "
          f"subscriber: {missing} missing, same messages from both: "
          f"{'yes' if same else 'NO'}")  # fmt: skip
    return ratio


# ----- latency


def flow_config(path: Path, buses: int, seconds: float, broker: str, prefix: str) -> Path:
    parts = [f"[acquisition]\nrate_hz = 1.0\nduration_s = {seconds}\n"]
    for b in range(buses):
        parts.append(
            f'[[bus]]\nname = "b{b}"\nurl = "tcp://127.0.0.1:0"\nsimulate = true\ntimeout_s = 0.5\n'
        )
        for d in range(1, 9):
            parts.append(
                f'  [[bus.device]]\n  name = "b{b}-pm{d}"\n  profile = "watlow_pm"\n'
                f"  address = {d}\n  parameters = {PARAMS}\n"
            )
    parts.append(f'[[sink]]\nkind = "mqtt"\nurl = "mqtt://{broker}"\nprefix = "{prefix}"\n')
    path.write_text("\n".join(parts))
    return path


def latency(args: argparse.Namespace, sub: Subscriber, prefix: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = flow_config(Path(tmp) / "mqtt.toml", args.buses, args.seconds, args.broker,
                          f"{prefix}/lat")  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.acquire"],
            cwd=ROOT, env={**os.environ, "ACQUIRE_CONFIG": str(cfg)},
            capture_output=True, text=True, timeout=args.seconds + 120,
        )  # fmt: skip
    out = proc.stdout + proc.stderr
    if proc.returncode:
        raise SystemExit(f"flow failed ({proc.returncode}):\n{out[-3000:]}")
    rows = sum(int(n) for n in re.findall(r"total: (\d+) rows", out))
    late = sum(int(n) for n in re.findall(r"ticks, (\d+) late", out))
    count, _, p50, p99, most = sub.ask("latency", "lat", rows)
    print(f"latency: {args.buses} TCP buses x 8 devices x 4 parameters at 1 Hz for "
          f"{args.seconds:g} s: {rows} rows, {late} late ticks; subscriber received {count} of "
          f"{rows}; received_at -> subscriber p50 {p50} ms, p99 {p99} ms, "
          f"max {most} ms")  # fmt: skip
    return float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="the latency run")
    parser.add_argument("--buses", type=int, default=16, help="the latency run")
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    parser.add_argument("--subscribe", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        host, _, port = args.broker.rpartition(":")
        subscribe((host, int(port)), args.subscribe)
        return
    prefix = f"bench-mqtt-{uuid.uuid4().hex[:8]}"
    before = cpu_times()
    sub = Subscriber(args.broker, prefix)
    try:
        ratio = throughput(args, sub, prefix)
        p99 = latency(args, sub, prefix)
    finally:
        sub.close()
    print(f"CPU steal {steal_since(before):.0%}")
    print(f"ratio mqtt {ratio:.2f}, p99 latency {p99:.1f} ms")


if __name__ == "__main__":
    main()
