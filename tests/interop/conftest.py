"""Fixtures of the interop tests (the rig itself is in rig.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.interop.rig import PmServer


@pytest.fixture
def pm_server() -> Iterator[Any]:
    """``pm_server(units)``: a started :class:`PmServer`, stopped after the test."""
    servers: list[PmServer] = []

    def start(units: Mapping[int, Mapping[int, int]]) -> PmServer:
        servers.append(PmServer(units).serve())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()
