"""Per-row cost of the summary partition (figures, status line, metrics) in write_batch; with
``--page``, the CPU the status page costs a running flow.

Without options: feeds batches of 10,000 Samples of 64 devices on 8 buses (1 in 20 an error
row) and 8 TickStats per batch to IntoSummary's partition, with the status line due every
batch, and prints the microseconds per row; last line: the ratio to a bare loop over the same
batch.

``--page [--buses 64] [--seconds 30] [--rounds 2]``: runs the whole flow (build_flow,
run_main, one worker) on ``--buses`` simulated ``sim://`` buses of a Watlow PM and a Servomex
analyser each, at 1 Hz, for ``--seconds``, alternately with the page off and with it on and a
client (another process) asking ``/status`` every second, as the open page does; ``--rounds``
times each. Per run: the process's CPU (user + system, % of one core) and the late ticks.
Then the page's cost two ways: the difference of the mean CPU with it on and off (the whole
cost, including the server's threads and the GIL they take, but as noisy as the machine),
and the CPU time of the threads answering the requests (``time.thread_time`` around each,
a floor free of the others' noise) per second of run; last line: ``page: X % CPU (on - off),
Y % (its threads), N late ticks with the page on``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

# The project first: bench/ (this script's directory) holds a sinks.py of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.sample import ErrorKind, Sample, TickStats
from flows.observe import page as status_page
from flows.observe.summary import IntoSummary

ROWS = 10_000


def batch() -> list[Sample | TickStats]:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    items: list[Sample | TickStats] = []
    for i in range(ROWS):
        error = "timeout: no response" if i % 20 == 0 else None
        kind = ErrorKind.TIMEOUT if error else None
        s = Sample(
            bus=f"bus-{i % 8}", device=f"dev-{i % 64}", address=1, protocol="modbus-tcp",
            parameter="p", parameter_id=None, instance=1, value=None if error else 1.0,
            unit=None, requested_at=t, received_at=t + timedelta(microseconds=i % 5000),
            tick=i // 64, error=error, error_kind=kind,
        )  # fmt: skip
        items.append(s)
    for b in range(8):
        items.append(TickStats(f"bus-{b}", 0, t, 0.01, 0.001, 8, 8, 0, 0))
    return items


def best(fn: object, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


BUS = """
[[bus]]
name = "bus-{i}"
url = "sim://"
simulate = true
  [[bus.device]]
  name = "pm-{i}"
  profile = "watlow_pm"
  address = 1
  [[bus.device]]
  name = "o2-{i}"
  profile = "servomex_4100"
  address = 2
"""
# The open page's own loop: /status every second (its refresh at 1 Hz).
CLIENT = """
import sys, time, urllib.request
url, n, next_at = sys.argv[1], 0, time.monotonic()
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
    except OSError:  # the run ended
        break
    n += 1
    print(n, flush=True)
    next_at += 1.0
    time.sleep(max(0.0, next_at - time.monotonic()))
"""


def timed_handler() -> list[float]:
    """Make the page's request handler add the CPU time of each request's thread to the
    list returned."""
    spent: list[float] = []
    handle = status_page._Handler.do_GET

    def do_get(self: status_page._Handler) -> None:
        start = time.thread_time()
        handle(self)
        spent.append(time.thread_time() - start)

    status_page._Handler.do_GET = do_get  # type: ignore[method-assign]
    return spent


def page_run(buses: int, seconds: float, page: bool, tmp: Path) -> tuple[float, int, int]:
    """One run of the flow: (CPU % of one core, late ticks, requests answered)."""
    from bytewax.testing import run_main

    from flows.acquire import build_flow
    from flows.config import load_config

    http = 'http = "127.0.0.1:0"' if page else ""
    head = f"[acquisition]\nrate_hz = 1\nduration_s = {seconds}\n[status]\ninterval_s = 0\n{http}\n"
    sink = f'[[sink]]\nkind = "csv"\npath = "rows-{page}.csv"\n'
    config = tmp / "bench.toml"
    config.write_text(head + "".join(BUS.format(i=i) for i in range(buses)) + sink)
    flow = build_flow(load_config(config))
    client: list[subprocess.Popen[str]] = []

    def start_client() -> None:
        while status_page.PAGE.address is None:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{status_page.PAGE.address[1]}/status"
        command = [sys.executable, "-c", CLIENT, url]
        client.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))

    if page:
        threading.Thread(target=start_client, daemon=True).start()
    out = io.StringIO()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    with contextlib.redirect_stdout(out):
        run_main(flow)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    requests = 0
    for proc in client:
        proc.kill()
        lines = proc.communicate()[0].split()
        requests = int(lines[-1]) if lines else 0
    late = sum(int(n) for n in re.findall(r"ticks, (\d+) late", out.getvalue()))
    return 100 * cpu / wall, late, requests


def page_main(buses: int, seconds: float, rounds: int) -> None:
    spent = timed_handler()
    on: list[float] = []
    off: list[float] = []
    late_on = requests = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for page in (False, True):
                cpu, late, answered = page_run(buses, seconds, page, Path(tmp))
                (on if page else off).append(cpu)
                late_on += late if page else 0
                requests += answered
                what = f"on, {answered} requests" if page else "off"
                print(f"page {what}: {cpu:.1f} % CPU, {late} late ticks", flush=True)
    threads = 100 * sum(spent) / (seconds * rounds)
    per = 1000 * sum(spent) / max(len(spent), 1)
    print(
        f"{buses} buses at 1 Hz, {seconds:g} s x {rounds} runs each; "
        f"{requests} requests, {per:.2f} ms CPU each"
    )
    diff = sum(on) / len(on) - sum(off) / len(off)
    print(
        f"page: {diff:.2f} % CPU (on - off), {threads:.2f} % (its threads), "
        f"{late_on} late ticks with the page on"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", action="store_true", help="measure the status page instead")
    parser.add_argument("--buses", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("flows.status").addHandler(logging.NullHandler())
    if args.page:
        page_main(args.buses, args.seconds, args.rounds)
        return
    items = batch()
    part = IntoSummary(io.StringIO(), status_s=0.0001).build("summary", 0, 1)
    cost = best(lambda: part.write_batch(items))
    part.close()

    def bare() -> None:
        for s in items:
            isinstance(s, Sample)

    floor = best(bare)
    print(f"write_batch: {cost / len(items) * 1e6:.2f} us/row")
    print(f"bare loop:   {floor / len(items) * 1e6:.2f} us/row")
    print(f"ratio: {cost / floor:.1f}")


if __name__ == "__main__":
    main()
