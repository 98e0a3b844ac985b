"""Reading one TOML table of a config, with errors that name the file, key path and value."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "NAME",
    "ConfigError",
    "Table",
    "check_at_most",
    "check_max_gap",
    "check_name",
    "check_non_negative",
    "check_positive",
    "check_retries",
    "check_text",
    "check_unit_id",
]

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}$")


class ConfigError(ValueError):
    """A config that cannot be used; ``str()`` is the one line to show the user."""


_MISSING: Any = object()
# Named by the last accepted type: (int, float) reads "a number".
_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


class Table:
    """One TOML table being read: knows its key path and reports unknown keys."""

    def __init__(self, data: Any, where: str, file: str) -> None:
        self.file, self.where = file, where
        if not isinstance(data, dict):
            raise self.error(f"{data!r} is not a table", key=None)
        self.data = data
        self.used: set[str] = set()

    def error(self, message: str, key: str | None) -> ConfigError:
        path = ".".join(p for p in (self.where, key) if p)
        return ConfigError(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                # A misspelt required key is reported here, before done() sees it.
                typo = difflib.get_close_matches(key, [k for k in self.data if k not in self.used])
                hint = f" (found {typo[0]!r}: a typo?)" if typo else ""
                raise self.error(f"missing{hint}", key)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.error(f"{value!r} is not {_KIND_NAMES[kinds[-1]]}", key)
        if check is not None and (problem := check(value)):
            raise self.error(f"{value!r} {problem}", key)
        return value

    def tables(self, key: str) -> list[Table]:
        self.used.add(key)
        items = self.data.get(key, [])
        prefix = f"{self.where}." if self.where else ""
        if not isinstance(items, list):
            # The TOML header to write, e.g. [[bus.device]] for bus[0].device.
            header = re.sub(r"\[\d+\]", "", f"{prefix}{key}")
            raise self.error(f"must be an array of tables ([[{header}]])", key)
        return [Table(item, f"{prefix}{key}[{i}]", self.file) for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(f"unknown key (known keys: {known})", unknown[0])


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
