"""IntoPostgres keeps the password out of every text: its repr and str, its log records, its
errors and their causes, whether the password came in the DSN, encoded, as a query
parameter, as a field or from PGPASSWORD.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.machine import free_ports
from sinks.base import SinkWriteError
from sinks.postgres import IntoPostgres
from tests.sinks.pg import FAST, count, terminate
from tests.sinks.pg import app as app  # the fixture, used by name
from tests.sinks.pg import dsn as dsn  # the fixture
from tests.sinks.pg import table as table  # the fixture

SECRET = "Pw-7f3kQ9zX-s3cr3t"


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def test_the_password_never_shows(
    dsn: str, table: str, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = urlsplit(dsn).password or SECRET  # trust auth ignores a password it did not ask
    parts = urlsplit(dsn)
    sinks = [
        IntoPostgres(with_password(dsn, secret), table=table, create_table=True, **FAST),
        IntoPostgres(
            host=parts.hostname, port=parts.port or 5432, user=parts.username,
            password=secret, database=parts.path.lstrip("/"), table=table, application_name=app,
        ),
    ]  # fmt: skip
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for sink in sinks:
            texts += [repr(sink), str(sink)]
            part = sink.build_partition(0, 1)
            part.write_batch([{"a": 1}])
            terminate(app)
            part.write_batch([{"a": 2}])
            part.close()
    where = f"{parts.hostname}:{parts.port or 5432}{parts.path}.public.{table}"
    assert texts[0] == f"IntoPostgres({where})"
    texts += [r.getMessage() for r in caplog.records]
    texts += [r.exc_text or "" for r in caplog.records]
    assert count(table) == 4
    for text in texts:
        assert secret not in text and "postgresql://" not in text


@pytest.mark.parametrize(
    "sink",
    [
        pytest.param(lambda p: IntoPostgres(f"postgresql://u:{SECRET}@127.0.0.1:{p}/db"), id="dsn"),
        pytest.param(
            lambda p: IntoPostgres(f"postgresql://u:{SECRET.replace('-', '%2D')}@127.0.0.1:{p}/db"),
            id="encoded",
        ),
        pytest.param(
            lambda p: IntoPostgres(f"postgresql://u@127.0.0.1:{p}/db?password={SECRET}"), id="query"
        ),
        pytest.param(
            lambda p: IntoPostgres(host="127.0.0.1", port=p, password=SECRET, database="db"),
            id="discrete",
        ),
    ],
)
def test_the_password_never_shows_in_errors(sink: Any, caplog: pytest.LogCaptureFixture) -> None:
    (port,) = free_ports(1)
    texts = []
    for retries in (0, 1):
        into = replace(sink(port), retries=retries, **FAST)
        with caplog.at_level(logging.DEBUG), pytest.raises(SinkWriteError) as info:
            into.build_partition(0, 1)
        assert isinstance(info.value.__cause__, OSError)
        texts += [repr(into), str(into), str(info.value), repr(info.value)]
        texts += [str(info.value.__cause__), repr(info.value.__cause__)]
    assert "opening failed after 1 attempt (retries=0)" in texts[2]
    assert len([r for r in caplog.records if r.name == "sinks.postgres"]) == 1  # one retry
    texts += [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{port}/db.public.samples" in texts[0]
    for text in texts:
        assert SECRET not in text and SECRET.replace("-", "%2D") not in text
    with pytest.raises(ValueError) as conflict:
        IntoPostgres(f"postgresql://u:{SECRET}@h/db", password=SECRET)
    assert SECRET not in str(conflict.value)


def test_a_backend_error_showing_the_password_is_scrubbed(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = urlsplit(dsn).password or SECRET
    monkeypatch.setenv("PGPASSWORD", "Env-Pw-0b5f")  # what asyncpg would send without one
    part = IntoPostgres(with_password(dsn, secret)).build_partition(0, 1)
    cases = [
        (OSError(5, f"no route via {secret}"), secret),
        (ValueError(f"bad {secret}"), secret),
        (ValueError("bad Env-Pw-0b5f"), "Env-Pw-0b5f"),
    ]
    try:
        for cause, shown in cases:
            with pytest.raises(SinkWriteError) as info:
                part._fail("writing 1 rows failed", cause)
            assert shown not in str(info.value) and "***" in str(info.value)
            kept = info.value.__cause__
            assert kept is None or (kept is cause and shown not in str(cause))
            assert kept is not None or isinstance(cause, OSError)  # str() ignores OSError.args
    finally:
        part.close()
