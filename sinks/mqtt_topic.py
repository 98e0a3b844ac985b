"""The MQTT sink's topic template: ``{column}`` fields over a row, checked for what an MQTT
topic name cannot hold (see :mod:`sinks.mqtt`)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sinks.base import SinkConfigError
from sinks.columns import format_timestamp

__all__ = ["TopicTemplate", "bad_text"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_TOPIC = 65535  # bytes of UTF-8


def bad_text(text: str) -> str | None:
    """Why ``text`` cannot be part of a topic name (a wildcard or NUL), or None."""
    for char, name in (("+", "the MQTT wildcard '+'"), ("#", "the MQTT wildcard '#'")):
        if char in text:
            return f"has {name}"
    if "\0" in text:
        return "has a NUL character"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "has a lone surrogate, which UTF-8 cannot hold"
    if size > _MAX_TOPIC:
        return f"is longer than an MQTT topic may be ({_MAX_TOPIC} bytes)"
    return None


class TopicTemplate:
    """A topic template with its fixed parts checked, rendering topics from rows."""

    def __init__(self, template: str, prefix: str) -> None:
        self.template = template
        self.fields: list[str] = []
        literals = [""]  # the fixed text before, between and after the fields
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise SinkConfigError("IntoMqtt", "topic", f"{template!r}: {exc}") from None
        for literal, name, spec, conversion in parsed:
            literals[-1] += literal
            if name is None:
                continue
            if not _FIELD.fullmatch(name) or spec or conversion:
                raise SinkConfigError(
                    "IntoMqtt", "topic", f"{template!r}: {{{name}}} is not a plain {{column}} field"
                )
            if name == "prefix":
                literals[-1] += prefix
            else:
                self.fields.append(name)
                literals.append("")
        if (why := bad_text("".join(literals))) is not None:
            raise SinkConfigError("IntoMqtt", "topic", f"{template!r} {why}")
        # Every field stands for a non-empty value without "/", so empty levels show here.
        sample = "x".join(literals)
        if not sample or "" in sample.split("/"):
            raise SinkConfigError("IntoMqtt", "topic", f"{template!r} has an empty level")
        if sample.startswith("$"):
            raise SinkConfigError("IntoMqtt", "topic", f"{template!r}: '$' topics are the broker's")
        self._literals = literals

    def check_columns(self, names: tuple[str, ...]) -> str | None:
        """Why the template cannot render rows of these columns, or None."""
        unknown = [f for f in self.fields if f not in names]
        if unknown:
            return (
                f"{self.template!r}: unknown field {{{unknown[0]}}} (columns: {', '.join(names)})"
            )
        return None

    def renderer(self, names: tuple[str, ...]) -> Callable[[tuple[Any, ...]], str]:
        """Topic of a row given as values in ``names`` order; raises ValueError naming the
        column whose value cannot be a topic level. Each distinct topic is checked once."""
        index = [names.index(f) for f in self.fields]
        literals = self._literals
        cache: dict[tuple[Any, ...], str] = {}

        def render(row: tuple[Any, ...]) -> str:
            key = tuple(row[i] for i in index)
            topic = cache.get(key)
            if topic is None:
                out = [literals[0]]
                for name, value, literal in zip(self.fields, key, literals[1:], strict=True):
                    out += [_level(name, value), literal]
                topic = "".join(out)
                if len(topic.encode("utf-8")) > _MAX_TOPIC:
                    raise ValueError(
                        f"column {self.fields[0]!r}: the row's topic is longer than an MQTT "
                        f"topic may be ({_MAX_TOPIC} bytes)"
                    )
                cache[key] = topic
            return topic

        return render


def _level(column: str, value: Any) -> str:
    """``value`` as topic text, or ValueError naming ``column``."""
    if isinstance(value, datetime):
        text = format_timestamp(value)
    elif value is None:
        raise ValueError(f"column {column!r} is NULL, which would make an empty topic level")
    else:
        text = str(value)
    why = bad_text(text)
    if why is None and (not text or "" in text.split("/")):
        why = "would make an empty topic level"
    if why is not None:
        raise ValueError(f"column {column!r}: value {value!r} {why}")
    return text
