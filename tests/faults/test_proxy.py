"""The fault proxy against the real PostgreSQL: each mode does to an asyncpg client what it says,
and passing again brings the server back. (The ``dsn`` fixture: tests/faults/conftest.py.)"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.faults.proxy import FaultProxy

T = TypeVar("T")
# What asyncpg raises on a connection the server side reset.
LOST = (asyncpg.ConnectionDoesNotExistError, ConnectionError, asyncpg.InterfaceError)


@pytest.fixture
def proxy(dsn: str) -> Iterator[FaultProxy]:
    parts = urlsplit(dsn)
    with FaultProxy((parts.hostname or "127.0.0.1", parts.port or 5432)) as p:
        yield p


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def connect(proxy: FaultProxy, dsn: str, timeout: float = 2.0) -> asyncpg.Connection:
    return await asyncpg.connect(proxy.dsn(dsn), timeout=timeout)


async def answer(proxy: FaultProxy, dsn: str) -> int:
    conn = await connect(proxy, dsn)
    try:
        return await conn.fetchval("SELECT 41 + 1")
    finally:
        await conn.close()


def test_pass_forwards_a_query_and_closes_without_reset(proxy: FaultProxy, dsn: str) -> None:
    assert proxy.dsn("postgresql://postgres@127.0.0.1:5432/test") == (
        f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
    )
    assert run(answer(proxy, dsn)) == 42
    # A connection open when the proxy closes sees its end (FIN), not a reset.
    raw = socket.create_connection(proxy.address, timeout=2)
    raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest: the server answers "N"
    assert raw.recv(1) == b"N"
    closing = threading.Thread(target=proxy.close)  # it waits for both ends to end
    closing.start()
    assert raw.recv(1) == b""
    raw.close()
    closing.join(timeout=5)
    assert proxy.resets == 0 and not closing.is_alive()


def test_refuse_refuses_and_resets_then_pass_recovers(proxy: FaultProxy, dsn: str) -> None:
    async def scenario() -> None:
        held = await connect(proxy, dsn)
        proxy.mode = "refuse"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=1).close()
        with pytest.raises(OSError) as refused:
            await connect(proxy, dsn)
        assert refused.value.errno == errno.ECONNREFUSED or "refused" in str(refused.value)
        with pytest.raises(LOST):
            await held.fetchval("SELECT 1", timeout=2)
        held.terminate()
        proxy.mode = "pass"
        assert await answer(proxy, dsn) == 42

    run(scenario())
    assert proxy.resets == 1


def test_blackhole_times_out_then_pass_recovers(proxy: FaultProxy, dsn: str) -> None:
    async def scenario() -> None:
        held = await connect(proxy, dsn)
        proxy.mode = "blackhole"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(held.fetchval("SELECT 1"), 0.5)
        held.terminate()
        with pytest.raises(asyncio.TimeoutError):
            await connect(proxy, dsn, timeout=0.5)  # accepted, never answered
        proxy.mode = "pass"
        assert await answer(proxy, dsn) == 42

    run(scenario())


def test_blackhole_holds_bytes_and_delivers_them_on_pass(proxy: FaultProxy) -> None:
    raw = socket.create_connection(proxy.address, timeout=2)
    proxy.mode = "blackhole"
    raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
    raw.settimeout(0.3)
    with pytest.raises(TimeoutError):
        raw.recv(1)
    proxy.mode = "pass"
    raw.settimeout(2)
    assert raw.recv(1) == b"N"
    raw.close()


def test_cut_resets_open_connections_and_keeps_passing(proxy: FaultProxy, dsn: str) -> None:
    async def scenario() -> None:
        held = await connect(proxy, dsn)
        assert await held.fetchval("SELECT 1") == 1
        proxy.mode = "cut"
        assert proxy.mode == "pass"
        with pytest.raises(LOST):
            await held.fetchval("SELECT 1", timeout=2)
        held.terminate()
        assert await answer(proxy, dsn) == 42

    run(scenario())
    assert proxy.resets == 1


def test_strand_hangs_open_connections_for_good_and_passes_new_ones(
    proxy: FaultProxy, dsn: str
) -> None:
    raw = socket.create_connection(proxy.address, timeout=2)
    deadline = time.monotonic() + 2
    while proxy.connections < 1 and time.monotonic() < deadline:  # accepted by the proxy
        time.sleep(0.01)
    proxy.mode = "strand"
    assert proxy.mode == "pass"
    raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest: never forwarded
    raw.settimeout(0.3)
    with pytest.raises(TimeoutError):
        raw.recv(1)
    assert run(answer(proxy, dsn)) == 42  # a new connection passes
    proxy.mode = "pass"  # and passing again does not bring the stranded one back
    with pytest.raises(TimeoutError):
        raw.recv(1)
    raw.close()
    assert proxy.resets == 0


def test_refuse_from_the_start_then_pass(dsn: str) -> None:
    parts = urlsplit(dsn)
    with FaultProxy((parts.hostname or "127.0.0.1", parts.port or 5432), mode="refuse") as proxy:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=1).close()
        proxy.mode = "pass"
        assert run(answer(proxy, dsn)) == 42
    with pytest.raises(ValueError, match="not one of"):
        FaultProxy(mode="drop")
