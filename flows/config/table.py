"""A config's tables (``connectors.tomltable``'s reader, raising ConfigError) and the checks
of config values."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from connectors import tomltable
from connectors.tomltable import TableError

__all__ = [
    "NAME",
    "ConfigError",
    "Table",
    "check_at_most",
    "check_http",
    "check_max_gap",
    "check_name",
    "check_non_negative",
    "check_positive",
    "check_retries",
    "check_text",
    "check_unit_id",
    "parse_http",
]

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$")


class ConfigError(TableError):
    """A config that cannot be used: ``file``, ``path`` (the key path) and ``message`` as
    data; ``str()`` is the one line to show the user."""


class Table(tomltable.Table):
    """One table of a config being read; its errors are ConfigErrors."""

    error_type = ConfigError


def check_positive(value: float) -> str | None:
    # inf passes "> 0" but would turn a schedule or a timeout into nonsense.
    if not math.isfinite(value):
        return "is not a finite number"
    return None if value > 0 else "must be > 0"


def check_name(value: str) -> str | None:
    return None if NAME.match(value) else "is not a name (letters, digits, _ . -; up to 63)"


def check_unit_id(value: int) -> str | None:
    return None if 1 <= value <= 247 else "is not a Modbus unit id (1-247)"


def check_non_negative(value: float) -> str | None:
    if not math.isfinite(value):
        return "is not a finite number"
    return None if value >= 0 else "must be >= 0"


def check_at_most(limit: float, unit: str, *, zero: bool = False) -> Callable[[float], str | None]:
    """check_positive (check_non_negative with ``zero``), and at most ``limit``: beyond it
    the schedule's float arithmetic overflows, or a timedelta cannot hold the value."""
    first = check_non_negative if zero else check_positive

    def check(value: float) -> str | None:
        problem = first(value)
        return problem or (None if value <= limit else f"is more than {limit:g} {unit}")

    return check


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(value: str) -> str | None:
    """None for printable text; a NUL (which PostgreSQL text cannot hold) or another control
    character in a name, unit or label is refused here rather than by a sink mid-run."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    return f"contains the control character U+{ord(found.group()):04X} (not printable text)"


def check_retries(value: int) -> str | None:
    return None if 0 <= value <= 10 else "is not 0-10"


def check_max_gap(value: int) -> str | None:
    return None if 0 <= value <= 124 else "is not 0-124"


_HTTP = re.compile(r"^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):)?([0-9]{1,5})$")


def check_http(value: str) -> str | None:
    """None for ``""`` (off), ``PORT`` (on 127.0.0.1), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    if value == "":
        return None
    found = _HTTP.match(value)
    if found is None:
        return "is not HOST:PORT, [IPv6]:PORT or PORT (e.g. 127.0.0.1:8080)"
    return None if int(found.group(2)) <= 65535 else "has a port beyond 65535"


def parse_http(value: str) -> tuple[str, int] | None:
    """A value check_http passed as ``(host, port)``; None for ``""``."""
    found = _HTTP.match(value)
    if found is None:
        return None
    host = (found.group(1) or "127.0.0.1").strip("[]")
    return host, int(found.group(2))
