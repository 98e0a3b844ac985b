"""Drawing the panels of flows.plot.panels on matplotlib axes: numeric panels (lines or window
steps with their min-max band, one colour per parameter, a legend naming them) and state
strips (one coloured span per run of one state, labelled), both with the error marks."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import pairwise
from statistics import median
from typing import TYPE_CHECKING

from flows.plot.data import Row
from flows.plot.panels import Panel, Track

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["RED", "draw_numeric", "draw_state", "run_starts"]

RED = "tab:red"
MARK = {"marker": "|", "ls": "", "color": RED, "ms": 10, "mew": 2, "clip_on": False}
# Red is for error marks only.
LINES = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray")
STATES = ("tab:cyan", "tab:olive", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def _at(r: Row, windows: bool) -> datetime:
    return r["window_start"] if windows else r["midpoint_at"]


def step_of(times: list[datetime]) -> timedelta:
    """The typical time between two rows: the median gap (1 s without one)."""
    gaps = [b - a for a, b in pairwise(times) if b > a]
    return median(gaps) if gaps else timedelta(seconds=1)


def run_starts(times: list[datetime]) -> list[int]:
    """The indexes in sorted ``times`` where a run begins: 0, and after each gap of more
    than 5 typical steps and 10 s (a run that stopped and another that started later)."""
    step = step_of(times)
    limit = max(5 * step, timedelta(seconds=10))
    return [0] + [i for i in range(1, len(times)) if times[i] - times[i - 1] > limit]


def _marks(ax: Axes, at: list[datetime], windows: bool) -> None:
    import matplotlib.dates as mdates

    if at:
        # x in data, y in axes coordinates: the marks sit on the bottom edge whatever the data
        label = "window with error rows" if windows else "error row"
        bottom = ax.get_xaxis_transform()
        ax.plot(mdates.date2num(at), [0] * len(at), transform=bottom, label=label, **MARK)


def _errors(rows: list[Row], windows: bool) -> tuple[list[datetime], int]:
    if windows:
        at = [r["window_start"] + (r["window_end"] - r["window_start"]) / 2 for r in rows]
        return [a for a, r in zip(at, rows, strict=True) if r["error_count"]], sum(
            r["error_count"] for r in rows
        )
    at = [r["midpoint_at"] for r in rows if r["error"] is not None]
    return at, len(at)


def _limits(ax: Axes, unit: str | None, values: list[float]) -> None:
    """A constant gets an axis of +-1 around it (1 % of it when larger), not matplotlib's
    +-5 % ticks of noise; a percentage within 0-100 gets 0-100; the rest 6 % of room."""
    if not values:
        return
    lo, hi = min(values), max(values)
    if unit == "%" and lo >= 0 and hi <= 100:
        ax.set_ylim(-3, 103)
    elif hi - lo <= 1e-9 * max(abs(hi), 1):
        half = max(1.0, abs(hi) * 0.01)
        ax.set_ylim(hi - half, hi + half)
    else:  # steps stick to the edges otherwise: a set point at the top edge disappears
        pad = (hi - lo) * 0.06
        ax.set_ylim(lo - pad, hi + pad)


def draw_numeric(ax: Axes, panel: Panel, windows: bool, several: bool) -> None:
    """One line (or window steps and min-max band) per track, each in its own colour."""
    import matplotlib.dates as mdates
    import numpy as np

    ax.set_ylabel(panel.unit or "(no unit)")
    ax.grid(True, alpha=0.3)
    marks: list[datetime] = []
    n_errors, drawn = 0, []
    for i, track in enumerate(panel.tracks):
        color = LINES[i % len(LINES)]
        rows = sorted(track.rows, key=lambda r: _at(r, windows))
        if windows:
            edges, stats = [rows[0]["window_start"]], []
            for r in rows:
                if r["window_start"] > edges[-1]:  # a window missing: a gap in the steps
                    edges.append(r["window_start"])
                    stats.append((None, None, None))
                edges.append(r["window_end"])
                stats.append((r["mean"], r["min"], r["max"]))
            mean, lo, hi = np.array(stats, dtype=float).T  # None -> NaN, drawn as a gap
            x = mdates.date2num(edges)
            ax.stairs(hi, x, baseline=lo, fill=True, color=color, alpha=0.2)
            ax.stairs(mean, x, baseline=None, color=color, lw=1.5, label=track.name(several))
            drawn += [v for v in (*lo, *hi) if not math.isnan(v)]
        else:
            times = [r["midpoint_at"] for r in rows]
            values = [np.nan if r["value"] is None else r["value"] for r in rows]
            for k in reversed(run_starts(times)[1:]):  # no line across the gap between runs
                times.insert(k, times[k - 1] + (times[k] - times[k - 1]) / 2)
                values.insert(k, np.nan)
            y = np.array(values, dtype=float)
            x = mdates.date2num(times)
            ax.plot(x, y, color=color, lw=1.2, marker=".", ms=4, label=track.name(several))
            drawn += [v for v in values if not math.isnan(v)]
        at, n = _errors(rows, windows)
        marks += at
        n_errors += n
    _marks(ax, marks, windows)
    _limits(ax, panel.unit, drawn)
    names = ", ".join(t.name(several) for t in panel.tracks)
    ax.set_title(names + (f"  ({n_errors} error rows)" if n_errors else ""), loc="left")
    if not drawn:
        ax.set_yticks([])
        note = f"no values: {n_errors} error rows" if n_errors else "no values"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color=RED)
    handles, labels = ax.get_legend_handles_labels()
    if windows and drawn:
        from matplotlib.patches import Patch

        handles.append(Patch(color="0.6", alpha=0.4))
        labels.append("window min to max")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")


def _label(track: Track, value: float) -> str:
    text = track.labels.get(value)
    return f"{text} ({value:g})" if text is not None else f"{value:g}"


def draw_state(ax: Axes, track: Track, windows: bool, several: bool) -> None:
    """A strip of spans, one per run of one state (a window's state is its last value),
    coloured and labelled per state; an error row leaves a gap and a mark."""
    import matplotlib.dates as mdates

    rows = sorted(track.rows, key=lambda r: _at(r, windows))
    step = step_of([_at(r, windows) for r in rows])
    spans: list[tuple[float, datetime, datetime]] = []  # (state, from, to)
    for i, r in enumerate(rows):
        value = r["last"] if windows else r["value"]
        start = _at(r, windows)
        if windows:
            end = r["window_end"]
        else:
            end = rows[i + 1]["midpoint_at"] if i + 1 < len(rows) else start + step
            end = min(end, start + 2 * step)
        if value is None:
            continue
        if spans and spans[-1][0] == value and spans[-1][2] >= start:
            spans[-1] = (value, spans[-1][1], end)
        else:
            spans.append((value, start, end))
    states = sorted({v for v, _, _ in spans} | set(track.labels))
    colors = {v: STATES[i % len(STATES)] for i, v in enumerate(states)}
    drawn = {v for v, _, _ in spans}
    for value in states:
        if value not in drawn:
            continue
        bars = [
            (mdates.date2num(a), mdates.date2num(b) - mdates.date2num(a))
            for v, a, b in spans
            if v == value
        ]
        ax.broken_barh(bars, (0.1, 0.8), facecolors=colors[value], label=_label(track, value))
    if spans:
        width = mdates.date2num(spans[-1][2]) - mdates.date2num(spans[0][1])
        for value, a, b in spans:  # the label inside each span wide enough for it
            x0, x1 = mdates.date2num(a), mdates.date2num(b)
            if x1 - x0 > 0.08 * width:
                text = track.labels.get(value, f"{value:g}")
                ax.text((x0 + x1) / 2, 0.5, text, ha="center", va="center", fontsize="small")
    at, n_errors = _errors(rows, windows)
    _marks(ax, at, windows)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("state")
    what = "state, the last of each window" if windows else "state"
    title = f"{track.name(several)} ({what})"
    ax.set_title(title + (f"  ({n_errors} error rows)" if n_errors else ""), loc="left")
    if not spans:
        note = f"no values: {n_errors} error rows" if n_errors else "no values"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color=RED)
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
