"""A TCP proxy between a client and its server that fails on command: the fault suite's way of
taking PostgreSQL away from a sink without touching the server.

``FaultProxy(target)`` listens on 127.0.0.1 (an ephemeral port, kept for its whole life) and
forwards each connection to ``target`` from a thread of its own. Its mode changes at any time
(``proxy.mode = "refuse"``); the assignment returns once the mode holds:

* ``pass``: forward both ways.
* ``refuse``: nothing listens, so ``connect()`` fails with ECONNREFUSED; the open connections
  are reset (RST to both ends), as when the server's host goes away.
* ``blackhole``: connections are accepted (the server is not contacted) and the open ones
  kept, but nothing is forwarded either way: bytes wait unread, as on a partitioned network;
  ``pass`` again delivers what waited.
* ``cut``: every open connection is reset now (RST to both ends); then as ``pass``.
* ``strand``: nothing passes on the open connections any more, either way, for good, and no
  end is told; new connections pass. As after a failover that moved the server's address to
  another host, or a firewall that lost its state: the client's old connections hang.

``close()`` (or leaving the ``with`` block) ends each connection with FIN both ways and reads
what is left first, so neither end sees a reset.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MODES", "FaultProxy"]

MODES = ("pass", "refuse", "blackhole", "cut", "strand")
_CHUNK = 65536
_HELD = 1 << 20  # bytes buffered in one direction before its source is read no more
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass(eq=False)
class _Flow:
    """One direction of a connection: bytes read from ``src`` not yet written to ``dst``."""

    src: socket.socket
    dst: socket.socket
    held: bytearray = field(default_factory=bytearray)
    eof: bool = False  # src said it sends no more
    shut: bool = False  # and dst was told so (SHUT_WR), every held byte written first


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket | None = None  # None until it passes (accepted under blackhole)
    flows: tuple[_Flow, _Flow] | None = None
    stranded: bool = False  # nothing passes on it any more (``strand``)

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.server) if s is not None]


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` ``(host, port)``; see the module."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432), mode: str = "pass") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.target = target
        self.accepted = 0  # connections accepted so far
        self.resets = 0  # connections reset by refuse and cut
        self._mode = "pass" if mode in ("cut", "strand") else mode
        self._links: list[_Link] = []
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        self.port = self._listen(0).getsockname()[1]
        if self._mode == "refuse":
            self._unlisten()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def dsn(self, dsn: str) -> str:
        """``dsn`` (a postgresql:// URL) with its host and port replaced by the proxy's."""
        parts = urlsplit(dsn)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._links)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if not self._thread.is_alive():
            raise RuntimeError("the proxy is closed")
        done = threading.Event()
        self._commands.put((mode, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"the proxy did not switch to {mode!r}")

    def close(self) -> None:
        """Stop: every connection ends with FIN after what is left is read; idempotent."""
        if self._thread.is_alive():
            self._stop = True
            self._wake_w.send(b"x")
            self._thread.join(timeout=10)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        host, port = self.target
        return f"FaultProxy(127.0.0.1:{self.port} -> {host}:{port}, {self._mode})"

    # Everything below runs on the proxy's thread, which owns every socket.

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        return listener

    def _unlisten(self) -> None:
        if self._listener is not None:
            self._listener.close()  # connections still in its backlog get RST
            self._listener = None

    def _apply(self, mode: str) -> None:
        if mode in ("refuse", "cut"):
            if mode == "refuse":
                self._unlisten()
            for link in list(self._links):
                self._reset(link)
            mode = "pass" if mode == "cut" else mode
        if mode == "strand":
            for link in self._links:
                link.stranded = True
            mode = "pass"
        if mode != "refuse" and self._listener is None:
            self._listen(self.port)
        self._mode = mode
        if mode == "pass":
            for link in list(self._links):
                if link.server is None:
                    self._connect(link)

    def _reset(self, link: _Link, *, ours: bool = True) -> None:
        for sock in link.sockets():
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()
        self._links.remove(link)
        self.resets += ours

    def _connect(self, link: _Link) -> None:
        """Open the link's server side; a server that does not answer resets the client."""
        try:
            server = socket.create_connection(self.target, timeout=2)
        except OSError:
            self._reset(link)
            return
        server.setblocking(False)
        link.server = server
        link.flows = (_Flow(link.client, server), _Flow(server, link.client))

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        link = _Link(client)
        self._links.append(link)
        self.accepted += 1
        if self._mode == "pass":
            self._connect(link)

    def _run(self) -> None:
        try:
            while not self._stop:
                self._step()
        finally:
            self._shutdown()

    def _step(self) -> None:
        readers: dict[socket.socket, _Flow] = {}
        writers: dict[socket.socket, _Flow] = {}
        if self._mode == "pass":
            for link in self._links:
                for flow in () if link.stranded else link.flows or ():
                    if not flow.eof and len(flow.held) < _HELD:
                        readers[flow.src] = flow
                    if flow.held:
                        writers[flow.dst] = flow
        wanted = [self._wake_r, *readers]
        if self._listener is not None:
            wanted.append(self._listener)
        readable, writable, _ = select.select(wanted, list(writers), [], 1.0)
        if self._wake_r in readable:
            self._wake_r.recv(4096)
        while not self._commands.empty():
            mode, done = self._commands.get()
            self._apply(mode)
            done.set()
        if self._mode != "pass":
            if self._listener is not None and self._listener in readable:
                self._accept()
            return
        for sock in readable:
            if sock is self._listener:
                self._accept()
            elif (flow := readers.get(sock)) is not None:
                self._read(flow)
        for sock in writable:
            if (flow := writers.get(sock)) is not None and flow.held:
                self._write(flow)
        for link in list(self._links):
            if not link.stranded:
                self._settle(link)

    def _owner(self, flow: _Flow) -> _Link | None:
        return next((k for k in self._links if k.flows and flow in k.flows), None)

    def _read(self, flow: _Flow) -> None:
        if self._owner(flow) is None:
            return  # reset earlier in this step
        try:
            data = flow.src.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._fail(flow)
            return
        if data:
            flow.held += data
        else:
            flow.eof = True

    def _write(self, flow: _Flow) -> None:
        if self._owner(flow) is None:
            return
        try:
            sent = flow.dst.send(flow.held)
        except BlockingIOError:
            return
        except OSError:
            self._fail(flow)
            return
        del flow.held[:sent]

    def _fail(self, flow: _Flow) -> None:
        """An end reset its side or went away: reset the other end too, as a wire would."""
        link = self._owner(flow)
        if link is not None:
            self._reset(link, ours=False)

    def _settle(self, link: _Link) -> None:
        """Pass each end's FIN on once what it sent before is written; close when both ended."""
        if link.flows is None:
            return
        for flow in link.flows:
            if flow.eof and not flow.held and not flow.shut:
                with contextlib.suppress(OSError):
                    flow.dst.shutdown(socket.SHUT_WR)
                flow.shut = True
        if all(flow.shut for flow in link.flows):
            for sock in link.sockets():
                sock.close()
            self._links.remove(link)

    def _shutdown(self) -> None:
        """FIN to every end, then read until each ends (1 s at most), then close: closing a
        socket with unread bytes would send RST."""
        self._unlisten()
        open_ = [s for link in self._links for s in link.sockets()]
        self._links.clear()
        for sock in open_:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        while open_ and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select(open_, [], [], left)
            for sock in readable:
                try:
                    ended = not sock.recv(_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    ended = True
                if ended:
                    open_.remove(sock)
                    sock.close()
        for sock in open_:
            sock.close()
