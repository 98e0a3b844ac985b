"""python -m flows.plot PATH: one PNG per device from what a run of the flow wrote.

PATH is a SQLite file of the sqlite sink (window rows in table "windows", columns of
flows.windows.WINDOW_SCHEMA; raw rows in table "samples", flows.rows.SAMPLE_SCHEMA) or a
Parquet dataset directory (or part file) of the parquet sink with either kind of rows.

- Window rows are drawn per parameter as the window mean, a step over each window's span,
  with the band from the window's min to its max. Without window rows (or with --raw), the
  raw values over time. Times are UTC; an axis' y label is the parameter's unit.
- One axis per (parameter, instance), sorted by name, all on one time axis.
- Error rows (value empty, error set) leave a gap and a red mark on the bottom edge of the
  axis (windows: one mark mid-window per window with errors). A parameter with errors only
  keeps its axis, saying so.
- Text parameters (value empty, no error: a gas name, a unit string) are not plotted; the
  figure title lists them, with their last text when there are raw rows, and so does the
  line printed per PNG. A device with text parameters only gets no PNG.
- The PNGs are <device>.png in --output, by default plots/ next to PATH.

Needs matplotlib: pip install -e '.[plot]'; for Parquet also pyarrow: pip install -e
'.[parquet]'. Exit code 0 when the PNGs are written; 2, with one line on stderr, for bad
input (missing path, no such table, no rows, unknown device) or a missing extra.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows.plot.data import Loaded, PlotError, Row, load, need

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["device_figure", "main", "series"]

Series = dict[tuple[str, int], list[Row]]
RED, BLUE = "tab:red", "tab:blue"
MARK = {"marker": "|", "ls": "", "color": RED, "ms": 10, "mew": 2, "clip_on": False}


def series(loaded: Loaded, device: str) -> tuple[Series, list[str]]:
    """A device's numeric series by (parameter, instance), sorted, and its text parameters
    (as ``name = last text`` when the text is known)."""
    by_key: Series = {}
    for row in loaded.rows[device]:
        by_key.setdefault((row["parameter"], row["instance"]), []).append(row)
    numeric, text = {}, []
    last = loaded.texts.get(device, {})
    for (parameter, instance), rows in sorted(by_key.items()):
        if loaded.kind == "windows":
            is_text = all(r["mean"] is None for r in rows) and any(r["count"] for r in rows)
        else:
            ok = [r["value"] for r in rows if r["error"] is None]
            is_text = bool(ok) and all(v is None for v in ok)
        if not is_text:
            numeric[parameter, instance] = rows
        elif parameter not in text:
            text.append(parameter)
    return numeric, [f"{p} = {last[p]}" if p in last else p for p in text]


def device_figure(device: str, loaded: Loaded) -> Figure:
    """One device's figure (Agg canvas): one axis per numeric series of :func:`series`."""
    need("matplotlib", "plot")
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, windows = loaded.rows[device], loaded.kind == "windows"
    numeric, text = series(loaded, device)
    several = len({i for _, i in numeric}) > 1
    fig = Figure(figsize=(11, 1.4 + 1.9 * max(len(numeric), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(numeric), 1, sharex=True, squeeze=False)[:, 0] if numeric else []
    for ax, ((parameter, instance), srows) in zip(axes, numeric.items(), strict=True):
        _draw(ax, f"{parameter} (instance {instance})" if several else parameter, srows, windows)
    if numeric:
        locator = mdates.AutoDateLocator()
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes[-1].set_xlabel("time (UTC)")
        pairs = (zip(*ax.get_legend_handles_labels(), strict=True) for ax in axes)
        shown = {label: handle for pair in pairs for handle, label in pair}
        fig.legend(shown.values(), shown, loc="outside lower center", ncols=len(shown))
    if windows:
        start, end = min(r["window_start"] for r in rows), max(r["window_end"] for r in rows)
        length = (rows[0]["window_end"] - rows[0]["window_start"]).total_seconds()
        what = f"window mean and min/max, {length:g} s windows"
    else:
        start, end = min(r["midpoint_at"] for r in rows), max(r["midpoint_at"] for r in rows)
        what = f"raw values, bus {rows[0]['bus']}"
    title = f"{device}: {what}, {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC"
    if text:
        title += f"\ntext parameters, not plotted: {', '.join(text)}"
    fig.suptitle(title, fontsize=11)
    return fig


def _draw(ax: Axes, name: str, rows: list[Row], windows: bool) -> None:
    import matplotlib.dates as mdates
    import numpy as np

    unit = next((r["unit"] for r in reversed(rows) if r["unit"] is not None), None)
    ax.set_ylabel(unit or "(no unit)")
    ax.grid(True, alpha=0.3)
    if windows:
        rows = sorted(rows, key=lambda r: r["window_start"])
        edges, stats = [rows[0]["window_start"]], []
        for r in rows:
            if r["window_start"] > edges[-1]:  # a window missing: a gap in the steps
                edges.append(r["window_start"])
                stats.append((None, None, None))
            edges.append(r["window_end"])
            stats.append((r["mean"], r["min"], r["max"]))
        mean, lo, hi = np.array(stats, dtype=float).T  # None -> NaN, drawn as a gap
        x = mdates.date2num(edges)
        ax.stairs(hi, x, baseline=lo, fill=True, color=BLUE, alpha=0.25, label="window min to max")
        ax.stairs(mean, x, baseline=None, color=BLUE, lw=1.5, label="window mean")
        errors = [r["window_start"] + (r["window_end"] - r["window_start"]) / 2 for r in rows]
        errors = [at for at, r in zip(errors, rows, strict=True) if r["error_count"]]
        n_errors = sum(r["error_count"] for r in rows)
    else:
        rows = sorted(rows, key=lambda r: r["midpoint_at"])
        x = mdates.date2num([r["midpoint_at"] for r in rows])
        mean = np.array([r["value"] for r in rows], dtype=float)
        ax.plot(x, mean, color=BLUE, lw=1.2, marker=".", ms=4, label="value")
        errors = [r["midpoint_at"] for r in rows if r["error"] is not None]
        n_errors = len(errors)
        labels = {r["value"]: r["value_text"] for r in rows if r["value_text"] is not None}
        if labels and len(labels) <= 8 and None not in labels:  # an enum: name its values
            ax.set_yticks(sorted(labels), [f"{labels[v]} ({v:g})" for v in sorted(labels)])
    if errors:
        # x in data, y in axes coordinates: the marks sit on the bottom edge whatever the data
        bottom = ax.get_xaxis_transform()
        label = "window with error rows" if windows else "error row"
        ax.plot(mdates.date2num(errors), [0] * len(errors), transform=bottom, label=label, **MARK)
    ax.set_title(name + (f"  ({n_errors} error rows)" if n_errors else ""), loc="left")
    if np.isnan(mean).all():
        ax.set_yticks([])
        note = f"no values: {n_errors} error rows" if n_errors else "no values"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color=RED)


def _file_name(device: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", device).lstrip(".") or "device"
    name, n = f"{stem}.png", 1
    while name in taken:  # two names that differ only in characters a file name cannot take
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """The command: write the PNGs, print one line per device; 2 on a PlotError."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.plot",
        description=__doc__,
        epilog="examples:\n"
        "  python -m flows.plot data/acquire.sqlite   # writes data/plots/<device>.png\n"
        "  python -m flows.plot data/windows --device oven-1 --output /tmp/plots\n"
        "  python -m flows.plot data/acquire.sqlite --raw",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("path", type=Path, metavar="PATH", help="SQLite file or Parquet dataset directory")
    add(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="directory for the PNGs (default: plots/ next to PATH)",
    )
    add(
        "-d",
        "--device",
        action="append",
        default=[],
        metavar="NAME",
        help="plot only this device; repeat for more (default: every device)",
    )
    add("--raw", action="store_true", help="plot the raw rows even if there are window rows")
    default = "SQLite table of %s (default: %%(default)s)"
    add("--samples-table", default="samples", metavar="NAME", help=default % "raw rows")
    add("--windows-table", default="windows", metavar="NAME", help=default % "window rows")
    args = parser.parse_args(argv)
    path: Path = args.path
    try:
        need("matplotlib", "plot")
        tables = (args.samples_table, args.windows_table)
        loaded = load(path, args.device, raw=args.raw, tables=tables)
        beside = path if path.name not in ("", ".", "..") else path.resolve()
        out: Path = args.output or beside.parent / "plots"
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PlotError(f"{out}: {exc.strerror or exc}") from None
        taken: set[str] = set()
        for device in loaded.rows:
            numeric, text = series(loaded, device)
            skipped = f"; text, not plotted: {', '.join(text)}" if text else ""
            if not numeric:
                print(f"{device}: no numeric parameter, no plot{skipped}")
                continue
            target = out / _file_name(device, taken)
            device_figure(device, loaded).savefig(target)
            print(f"{target}: {len(numeric)} parameter{'s' * (len(numeric) != 1)}{skipped}")
    except PlotError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0
