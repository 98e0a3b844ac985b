"""The live status page of one process: ``/`` (HTML), ``/status`` (JSON) and ``/metrics``
(Prometheus), served by a thread of the flow's own process.

Off unless ``[status] http`` (or ``$ACQUIRE_STATUS_HTTP``) names an address. Each summary
partition adds its Figures to :data:`PAGE` when it is built; the first one starts the server
and the last one to close stops it. With several processes (``bytewax.run -i N``), process N
listens on the configured port + N (port 0: a free port each), and serves its own workers'
buses and sinks only; the page and ``/status`` say which process they are.

The server never delays a tick or a worker: it runs on threads of its own (one per request,
``ThreadingHTTPServer``), reads the Figures the workers update without a lock (``list()`` and
``dict()`` copy under the GIL in one C call each, as flows.observe.metrics does) and, between
requests, only wakes ten times a second to see whether it should stop. Names reach the browser
as JSON, which the page's script puts in the document as text (``textContent``), never as
markup; the HTML shell escapes the one thing it writes itself (the process label and config
path). A Content-Security-Policy forbids inline and foreign scripts, so a page that escaped
badly still would not run injected code.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from connectors.sample import ErrorKind
from flows.observe.figures import Figures, sink_states
from flows.observe.status import LOGGER
from sinks.spooled import states

__all__ = ["PAGE", "Page", "StatusPage", "process_of_run", "snapshot"]

STATIC = resources.files("flows.observe") / "static"
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATE = {
    ErrorKind.CONNECTION_FAILED: "cannot connect",
    ErrorKind.CONNECTION_LOST: "connection lost",
}


@dataclass(frozen=True, slots=True)
class StatusPage:
    """Where the page listens (``host``, ``port``: the first process's port) and the run facts
    it shows: the config file, the tick rate and, per device, its parameters in the order to
    show them (the config's; others after them)."""

    host: str
    port: int
    config: str = "<config>"
    rate_hz: float = 1.0
    order: tuple[tuple[str, tuple[str, ...]], ...] = ()


def process_of_run(argv: list[str] | None = None) -> tuple[int, int]:
    """``(index, count)`` of this process in a ``bytewax.run`` cluster: ``-i/--process-id``
    (or ``$BYTEWAX_PROCESS_ID``) and the number of ``-a/--addresses``; ``(0, 1)`` alone."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--process-id", type=int)
    parser.add_argument("-a", "--addresses")
    try:
        args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    except SystemExit:  # not bytewax.run's arguments
        return 0, 1
    index = args.process_id
    if index is None:
        index = int(os.environ.get("BYTEWAX_PROCESS_ID", "0") or 0)
    addresses = args.addresses or os.environ.get("BYTEWAX_ADDRESSES", "")
    count = len([a for a in addresses.split(";") if a.strip()]) or 1
    return index, max(count, index + 1)


def _number(value: Any) -> Any:
    """A value JSON can carry: non-finite floats as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _age(now: datetime, at: datetime | None) -> float | None:
    return None if at is None else round((now - at).total_seconds(), 3)


def snapshot(page: Page) -> dict[str, Any]:
    """What ``/status`` answers: run facts, each bus with its devices, each sink."""
    now = datetime.now(timezone.utc)
    at = now.timestamp()
    settings, workers = page.settings, frozenset(page.workers)  # a copy: add() may change it
    buses: dict[str, dict[str, Any]] = {}
    kinds: dict[str, set[ErrorKind | None]] = {}
    for figures in page.figures():
        for name, b in list(figures.buses.items()):
            buses[name] = {
                "name": name,
                "up": b.up,
                "ticks": b.ticks,
                "late": b.late,
                "reads": b.reads,
                "errors": b.errors,
                "devices": [],
            }
        for d in list(figures.devices.values()):
            bus = buses.setdefault(d.bus, {"name": d.bus, "up": None, "devices": []})
            for key in ("ticks", "late", "reads", "errors"):  # no TickStats (yet)
                bus.setdefault(key, None)
            kinds.setdefault(d.bus, set()).add(d.last_kind)
            last = dict(d.last)
            order = page.order(d.device, last)
            values = [
                {
                    "parameter": s.parameter,
                    "value": _number(s.value),
                    "text": s.text,
                    "unit": s.unit,
                    "age_s": round(at - s.received_at.timestamp(), 3),
                }
                for s in map(last.__getitem__, order)
            ]
            bus["devices"].append(
                {
                    "name": d.device,
                    "address": d.address,
                    "answering": d.answering,
                    "rows": d.rows,
                    "errors": d.errors,
                    "last_error": d.last_error,
                    "last_error_age_s": _age(now, d.error_at),
                    "values": values,
                }
            )
    for name, bus in buses.items():
        bus["devices"].sort(key=lambda d: d["name"])
        if bus["up"] is None:  # samples only, no TickStats: up when a device answers
            bus["up"] = any(d["answering"] for d in bus["devices"])
        down = [text for kind, text in _STATE.items() if kind in kinds.get(name, ())]
        bus["state"] = "up" if bus["up"] else (down or ["no answer"])[0]
    sinks = [
        {
            "sink": s.where,
            "worker": s.worker,
            "state": s.state,
            "rows_written": s.rows_written,
            "rows_spooled": s.rows_spooled,
            "rows_spooled_total": s.rows_spooled_total,
            "retries": s.retries,
            "oldest_spooled_s": s.oldest_age_s,
            "last_error": s.last_error,
        }
        for s in sink_states(states())
        if s.worker in workers
    ]
    return {
        "process": page.label(),
        "process_index": page.process[0],
        "process_count": page.process[1],
        "workers": sorted(workers),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "config": settings.config,
        "rate_hz": settings.rate_hz,
        "started_at": page.started_at.isoformat(),
        "uptime_s": round(time.monotonic() - page.started, 3),
        "now": now.isoformat(),
        "refresh_s": page.refresh_s,
        "buses": sorted(buses.values(), key=lambda b: b["name"]),
        "sinks": sinks,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that connects and says nothing holds its thread this long

    def do_GET(self) -> None:
        page = self.server.page
        path = self.path.split("?", 1)[0]
        if path == "/":
            body = page.shell().encode()
            self._send(200, "text/html; charset=utf-8", body)
        elif path == "/status":
            body = json.dumps(snapshot(page), separators=(",", ":"), check_circular=False)
            self._send(200, "application/json", body.encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path in ("/page.js", "/page.css"):
            kind = "text/javascript" if path.endswith(".js") else "text/css"
            self._send(200, f"{kind}; charset=utf-8", (STATIC / path[1:]).read_bytes())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: /, /status, /metrics\n")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the status lines


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    page: Page


class _Server6(_Server):
    address_family = socket.AF_INET6


class Page:
    """The page of this process: the Figures of its open summary partitions, and the server
    while there is one (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: list[Figures] = []
        self.workers: set[int] = set()
        self._server: _Server | None = None
        self.settings = StatusPage("127.0.0.1", 0)
        self.process = (0, 1)
        self.started = time.monotonic()
        self.started_at = datetime.now(timezone.utc)
        self.address: tuple[str, int] | None = None
        """Where the server listens, once it does."""
        self.rank: dict[tuple[str, str], int] = {}  # (device, parameter) -> place on the page
        self._orders: dict[str, tuple[str, ...]] = {}  # device -> its parameters in that order

    def order(self, device: str, last: dict[str, Any]) -> tuple[str, ...]:
        """The parameters of ``last`` (a device's last values) in the page's order; kept
        until the device has another parameter (one is only ever added)."""
        order = self._orders.get(device)
        if order is None or len(order) != len(last):
            rank, end = self.rank, len(self.rank)
            order = tuple(sorted(last, key=lambda p: rank.get((device, p), end)))
            self._orders[device] = order
        return order

    @property
    def refresh_s(self) -> float:
        """How often the page asks again: every tick, between 0.25 s and 1 s."""
        return min(1.0, max(0.25, 1 / self.settings.rate_hz))

    def figures(self) -> list[Figures]:
        return list(self._figures)

    def label(self) -> str:
        index, count = self.process
        return f"process {index + 1}/{count} (pid {os.getpid()} on {socket.gethostname()})"

    def shell(self) -> str:
        """The page's HTML: the process and config, escaped; the script fills in the rest."""
        label = html.escape(f"{self.label()}, config {self.settings.config}")
        text = (STATIC / "page.html").read_text(encoding="utf-8")
        return text.replace("{{label}}", label)

    def add(self, figures: Figures, worker: int, settings: StatusPage) -> None:
        """Serve ``figures`` (of ``worker``), starting the server when it is the first."""
        with self._lock:
            self._figures.append(figures)
            self.workers.add(worker)
            if self._server is not None or len(self._figures) > 1:
                return
            self.settings, self.process = settings, process_of_run()
            self.rank = {(d, p): i for d, names in settings.order for i, p in enumerate(names)}
            self._orders = {}
            self.started, self.started_at = time.monotonic(), datetime.now(timezone.utc)
            port = settings.port + self.process[0] if settings.port else 0
            try:
                kind = _Server6 if ":" in settings.host else _Server
                server = kind((settings.host, port), _Handler)
            except OSError as exc:
                LOGGER.warning(
                    "status page: cannot listen on %s:%d (%s); running without it",
                    settings.host,
                    port,
                    exc.strerror or exc,
                )
                return
            server.page = self
            self._server = server
            self.address = server.server_address[:2]
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},  # how long a stop waits for it
                name="status-page",
                daemon=True,
            ).start()
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        LOGGER.info("status page of %s: http://%s:%d/", self.label(), shown, port)

    def remove(self, figures: Figures) -> None:
        """Stop serving ``figures`` (a closed partition's); the last one stops the server."""
        with self._lock:
            self._figures = [f for f in self._figures if f is not figures]
            if self._figures or self._server is None:
                return
            server, self._server, self.address = self._server, None, None
            self.workers = set()
        server.shutdown()
        server.server_close()


PAGE = Page()
