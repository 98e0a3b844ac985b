"""Reading a parsed TOML document one table at a time, with errors that name the file, the
key path and the value: the one reader of config files (``flows.config``) and device profiles
(``connectors.registers``).

It lives in ``connectors`` because profiles are loaded there (and by the simulator and the
scanner), and ``connectors`` never imports ``flows``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

__all__ = ["Table", "TableError", "cut_values"]


class TableError(ValueError):
    """A value that cannot be used, at key path ``path`` (``"bus[0].device[1].address"``, or
    ``""`` for the file as a whole) of ``file`` (None: no file, e.g. an unknown profile name).

    ``str()`` is the one line to show the user: ``"<file>: <path>: <message>"``, without the
    file when None and without the path when empty.
    """

    def __init__(self, *, file: str | None, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        parts = ([] if file is None else [file]) + ([path] if path else []) + [message]
        super().__init__(": ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.file, self.path, self.message)


def _rebuild(cls: type[TableError], file: str | None, path: str, message: str) -> TableError:
    return cls(file=file, path=path, message=message)


_MISSING: Any = object()

# A quoted string or a bracketed list echoed in a message, longer than a line can show.
_LONG = re.compile(r"""'(?:[^'\\]|\\.){200,}'|"(?:[^"\\]|\\.){200,}"|\[[^\[\]]{200,}\]""")
_SHOWN = 80


def cut_values(message: str) -> str:
    """``message`` with each echoed value of more than 200 characters (a quoted string, a
    list) cut to its first 80, saying how long it was: one line stays readable."""

    def cut(match: re.Match[str]) -> str:
        text = match.group()
        return f"{text[:_SHOWN]}...{text[-1]} ({len(text) - 2} characters)"

    return _LONG.sub(cut, message)


# Named by the last accepted type: (int, float) reads "a number".
_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}
_T = TypeVar("_T", bound="Table")


class Table:
    """One TOML table being read: knows its file and key path, and which keys were read.

    Errors are ``error_type`` (a TableError subclass per kind of file, set by subclassing);
    tables below this one are of the same class.
    """

    error_type: ClassVar[type[TableError]] = TableError

    def __init__(self, data: Any, where: str, file: str) -> None:
        self.file, self.where = file, where
        if not isinstance(data, dict):
            raise self.error(f"{data!r} is not a table", key=None)
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def error(self, message: str, key: str | None) -> TableError:
        """The error ``message`` about ``key`` (a key path below this table; None: the table),
        with any value it echoes cut to a readable length (:func:`cut_values`)."""
        path = ".".join(p for p in (self.where, key) if p)
        return self.error_type(file=self.file, path=path, message=cut_values(message))

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The value of ``key``, of type ``kind`` (bool is not an int here) and passing
        ``check`` (which returns None or what is wrong with the value); ``default`` when
        absent, an error "missing" when there is no default."""
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

    def table(self: _T, key: str, data: Any) -> _T:
        """``data`` as the table at ``key`` below this one (e.g. ``override.set_point``)."""
        prefix = f"{self.where}." if self.where else ""
        return type(self)(data, f"{prefix}{key}", self.file)

    def tables(self: _T, key: str) -> list[_T]:
        """The array of tables at ``key`` (none when absent), e.g. ``[[bus.device]]``."""
        self.used.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            # The TOML header to write, e.g. [[bus.device]] for bus[0].device.
            prefix = f"{self.where}." if self.where else ""
            header = re.sub(r"\[\d+\]", "", f"{prefix}{key}")
            raise self.error(f"must be an array of tables ([[{header}]])", key)
        return [self.table(f"{key}[{i}]", item) for i, item in enumerate(items)]

    def allow(self, keys: Iterable[str]) -> None:
        """Refuse the first key of the table not among ``keys``, listing them in their order;
        for tables whose keys are declared up front rather than read one by one."""
        known = tuple(keys)
        for key in self.data:
            if key not in known:
                raise self.error(f"unknown key; expected one of {', '.join(known)}", key)

    def done(self) -> None:
        """Refuse a key that no ``get`` or ``tables`` asked for: a typo must not pass."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise self.error(f"unknown key (known keys: {known})", unknown[0])
