"""Which value of a batch a backend cannot hold: the diagnosis behind a SinkValueError.

The backends write first and ask afterwards: a batch the driver refused (a UnicodeEncodeError,
an OverflowError, a constraint the data broke) is scanned here, value by value, to name the
column and the kind of value. That scan runs only on the failure path, so the common case
pays nothing for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sinks.base import Schema

__all__ = ["INT64", "longest_key_text", "misfit", "preview"]

INT64 = (-(2**63), 2**63 - 1)


def preview(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to about ``limit`` characters for huge strings."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)


def _text_problem(value: str, nul: str | None) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        return f"text {preview(value)} has the lone surrogate U+{code:04X}, which UTF-8 cannot hold"
    if nul is not None and "\0" in value:
        return f"text {preview(value)} has a NUL character, which {nul} cannot hold"
    return None


def _problem(value: Any, required: bool, *, nul: str | None, int64: bool) -> str | None:
    if isinstance(value, str):
        return _text_problem(value, nul)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if int64 and not INT64[0] <= value <= INT64[1]:
            return f"integer {value} is outside the signed 64-bit range"
        try:
            str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            return "an integer with too many digits to write as text"
        return None
    if isinstance(value, float) and math.isnan(value) and required:
        return "NaN, which this backend stores as NULL, in a column that takes no NULL"
    if isinstance(value, datetime) and value.utcoffset() is not None:
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            return f"timestamp {value.isoformat()!r} is out of range in UTC (years 1 to 9999)"
    return None


def misfit(
    schema: Schema,
    values: Sequence[Sequence[Any]],
    *,
    nul: str | None = None,
    int64: bool = False,
    nan_is_null: bool = False,
) -> str | None:
    """The first value of ``values`` (tuples in the schema's column order) a backend cannot
    hold, as ``column 'name' (type): <what>``, or None when every value fits.

    Always checked: text that UTF-8 cannot encode (lone surrogates), integers too long for
    ``str()``, timestamps with no UTC equivalent. ``nul``: text with a NUL character, which
    the backend named so cannot hold (e.g. ``"PostgreSQL text"``).
    ``int64``: integers outside the signed 64-bit range. ``nan_is_null``: NaN in a column
    that takes no NULL (the backend stores NaN as NULL).
    """
    for i, column in enumerate(schema.columns):
        required = nan_is_null and schema.required(column)
        for row in values:
            problem = _problem(row[i], required, nul=nul, int64=int64)
            if problem is not None:
                return f"column {column.name!r} ({column.type}): {problem}"
    return None


def longest_key_text(schema: Schema, values: Sequence[Sequence[Any]]) -> str | None:
    """The key column holding the longest text, in UTF-8 bytes, as ``column 'name' (type):
    <what>``, for a backend whose index entries hold a bounded key; None without key text."""
    sizes = [
        (len(row[i].encode("utf-8", "replace")), column.name)
        for i, column in enumerate(schema.columns)
        if column.name in schema.key
        for row in values
        if isinstance(row[i], str)
    ]
    if not sizes:
        return None
    size, name = max(sizes)
    return f"column {name!r} (text): a key of {size} bytes, more than an index entry holds"
