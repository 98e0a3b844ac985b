"""python -m flows.plot PATH: one PNG per device from what a run of the flow wrote.

PATH is a SQLite file of the sqlite sink (window rows in table "windows", columns of
flows.windows.WINDOW_SCHEMA; raw rows in table "samples", flows.rows.SAMPLE_SCHEMA) or a
Parquet dataset directory (or part file) of the parquet sink with either kind of rows.

- Parameters sharing a unit share a panel (a PM's process value with its set points; heat
  and cool power), one colour and legend entry each; window rows are drawn as the window
  mean, a step over each window's span, with the band from the window's min to its max;
  without window rows (or with --raw), the raw values over time. Times are UTC; a panel's
  y label is its unit. A constant gets an axis of +-1 around it (+-1 % when larger), a
  percentage within 0-100 the axis 0-100.
- Enumerations (parameters with labels: a PM's input error, its display units) and bits
  (coils, discrete inputs, ``bit`` parameters) are state strips: one coloured span per run
  of one state, labelled with the state's text (a window's state is its last value).
- Panels follow the device's profile order: the profile of --config, else the shipped
  profile that has all the device's parameters, else the names' order.
- Error rows (value empty, error set) leave a gap and a red mark on the bottom edge of the
  panel (windows: one mark mid-window per window with errors). A parameter with errors only
  keeps its panel, saying so.
- Several runs in one file or dataset: a gap of more than 5 typical steps (and 10 s) between
  rows ends a run; lines are not drawn across it, and the title counts the runs. --since
  and --until keep the rows of a time window.
- Text parameters (value empty, no error: a gas name, a unit string) are not plotted; the
  figure title lists them, with their last text when there are raw rows, and so does the
  line printed per PNG. A device with text parameters only gets no PNG.
- The PNGs are <device>.png in --output, by default plots/ next to PATH.

Needs matplotlib: pip install -e '.[plot]'; for Parquet also pyarrow: pip install -e
'.[parquet]'. Exit code 0 when the PNGs are written; 2, with one line on stderr, for bad
input (missing path, no such table, no rows, unknown device, a bad time or config) or a
missing extra.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.parameter import Parameter
from flows.plot.data import Loaded, PlotError, Row, load, need, parse_time
from flows.plot.draw import draw_numeric, draw_state, run_starts
from flows.plot.panels import panels, profile_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["device_figure", "main", "series"]

Series = dict[tuple[str, int], list[Row]]


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


def device_figure(
    device: str, loaded: Loaded, profile: Sequence[Parameter] | None = None
) -> Figure:
    """One device's figure (Agg canvas): the panels of flows.plot.panels, numeric ones and
    state strips, in the order of ``profile`` (the device's parameters; None: found by
    flows.plot.panels.profile_of), on one time axis."""
    need("matplotlib", "plot")
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, windows = loaded.rows[device], loaded.kind == "windows"
    numeric, text = series(loaded, device)
    order = profile_of({p for p, _ in numeric}, profile)
    shown = panels(loaded, device, numeric, order)
    several = len({i for _, i in numeric}) > 1
    ratios = [2.0 if p.kind == "numeric" else 0.8 for p in shown] or [1.0]
    fig = Figure(figsize=(11, 1.4 + sum(ratios)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = []
    if shown:
        grid = {"height_ratios": ratios}
        axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False, gridspec_kw=grid)[:, 0]
    for ax, panel in zip(axes, shown, strict=True):
        if panel.kind == "numeric":
            draw_numeric(ax, panel, windows, several)
        else:
            draw_state(ax, panel.tracks[0], windows, several)
    if shown:
        locator = mdates.AutoDateLocator()
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes[-1].set_xlabel("time (UTC)")
    at = "window_start" if windows else "midpoint_at"
    times = sorted(r[at] for r in rows)
    if windows:
        length = (rows[0]["window_end"] - rows[0]["window_start"]).total_seconds()
        what = f"window mean and min/max, {length:g} s windows"
        end = max(r["window_end"] for r in rows)
    else:
        what, end = f"raw values, bus {rows[0]['bus']}", times[-1]
    runs = len(run_starts(times))
    span = f"{times[0]:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC"
    if end.date() != times[0].date():
        span = f"{times[0]:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"
    title = f"{device}: {what}, {span}" + (f", {runs} runs" if runs > 1 else "")
    if text:
        title += f"\ntext parameters, not plotted: {', '.join(text)}"
    fig.suptitle(title, fontsize=11)
    return fig


def _file_name(device: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", device).lstrip(".") or "device"
    name, n = f"{stem}.png", 1
    while name in taken:  # two names that differ only in characters a file name cannot take
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name


def _profiles(config: Path | None) -> dict[str, Sequence[Parameter]]:
    """Each device's parameters in ``config`` (none without one); PlotError for a bad one."""
    if config is None:
        return {}
    from flows.config import ConfigError, load_config

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        raise PlotError(str(exc)) from None
    return {d.name: d.parameters for bus in loaded.buses for d in bus.devices}


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
    add("--since", metavar="TIME", help="only rows from this ISO 8601 time on (UTC unless it says)")
    add("--until", metavar="TIME", help="only rows before this ISO 8601 time")
    add(
        "--config",
        type=Path,
        metavar="FILE",
        help="the run's config: each device's parameters in its profile's order, and which are "
        "enumerations or bits (default: the shipped profile that has the device's parameters)",
    )
    default = "SQLite table of %s (default: %%(default)s)"
    add("--samples-table", default="samples", metavar="NAME", help=default % "raw rows")
    add("--windows-table", default="windows", metavar="NAME", help=default % "window rows")
    args = parser.parse_args(argv)
    path: Path = args.path
    try:
        need("matplotlib", "plot")
        tables = (args.samples_table, args.windows_table)
        since = None if args.since is None else parse_time(args.since, "--since")
        until = None if args.until is None else parse_time(args.until, "--until")
        profiles = _profiles(args.config)
        loaded = load(path, args.device, raw=args.raw, tables=tables, since=since, until=until)
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
            device_figure(device, loaded, profiles.get(device)).savefig(target)
            print(f"{target}: {len(numeric)} parameter{'s' * (len(numeric) != 1)}{skipped}")
    except PlotError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0
