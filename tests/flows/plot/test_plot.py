"""python -m flows.plot on the output of a real short run: PNGs per device, and its errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main
from matplotlib.image import imread

from connectors.registers import load_profile
from flows.acquire import build_flow
from flows.config import load_config
from flows.plot import device_figure, main
from flows.plot.data import Loaded, load
from sinks.base import check_identifier

ROOT = Path(__file__).resolve().parents[3]

CONFIG = """
[acquisition]
rate_hz = 4
duration_s = 3

[windows]
length_s = 1
lateness_s = 2

[[bus]]
name = "tcp-bus"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.2

  [[bus.device]]
  name = "pm-a"
  profile = "watlow_pm"
  address = 1

  [[bus.device]]
  name = "gas-a"
  profile = "servomex_4100"
  address = 2
  parameters = ["measurement_1", "measurement_1_name", "measurement_1_units"]

[[bus]]
name = "rtu-bus"
url = "rtu://pty?baudrate=38400"
simulate = true
timeout_s = 0.2

  [[bus.device]]
  name = "pm-dead"
  profile = "watlow_pm"
  address = 3
  parameters = ["analog_input_value", "heat_power"]
  simulate = { dead = true }

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"

[[sink]]
kind = "sqlite"
path = "out/acquire.sqlite"
table = "windows"
stream = "windows"

[[sink]]
kind = "parquet"
path = "out/windows"
stream = "windows"

[[sink]]
kind = "parquet"
path = "out/samples"
"""

PM_PARAMETERS = [p.name for p in load_profile("watlow_pm").parameters]
PM_PANELS = [
    "analog_input_value, analog_input_2, set_point, closed_loop_set_point",
    "input_error (state",
    "heat_power, cool_power",
    "display_units (state",
]
# device -> (its panels' titles, in order; whether it has values; whether it has errors)
EXPECTED = {
    "pm-a": (PM_PANELS, True, False),
    "gas-a": (["measurement_1"], True, False),
    "pm-dead": (["analog_input_value", "heat_power"], False, True),
}
BLUE, RED = (31, 119, 180), (214, 39, 40)  # tab:blue, tab:red

# Runs flows.plot with the named top-level packages made uninstalled: their import fails as
# it does when they are missing, whoever imports them.
BLOCKED = """
import runpy, sys
missing = sys.argv[1].split(",")
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
sys.argv = ["flows.plot", *sys.argv[2:]]
runpy.run_module("flows.plot", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one 3 s run at 4 Hz with 1 s windows."""
    base = tmp_path_factory.mktemp("run")
    (base / "acquire.toml").write_text(textwrap.dedent(CONFIG))
    run_main(build_flow(load_config(base / "acquire.toml")))
    return base / "out"


def plot(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.plot", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def blocked(packages: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, packages, *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def pixels(png: Path, color: tuple[int, int, int]) -> int:
    rgb = (imread(png)[..., :3] * 255).round()
    return int((np.abs(rgb - color).max(axis=-1) < 30).sum())


def check_pngs(directory: Path, devices: dict = EXPECTED) -> None:
    """One readable, non-blank PNG per device, as tall as its panels (numeric 2 in, state
    strips 0.8 in), with data drawn in it."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{d}.png" for d in devices)
    for device, (panels, values, errors) in devices.items():
        png = directory / f"{device}.png"
        image = imread(png)
        height, width = image.shape[:2]
        assert width == 1100
        inches = 1.4 + sum(0.8 if "(state" in p else 2.0 for p in panels)
        assert height == round(100 * inches), (device, height)
        ink = (image[..., :3] < 0.9).any(axis=-1).mean()  # not white background
        assert ink > 0.01, (device, ink)
        # Lines of values (not just a legend entry) in tab:blue; error marks in tab:red.
        numeric = sum("(state" not in p for p in panels)
        assert (pixels(png, BLUE) > 150 * numeric) == values, device
        assert (pixels(png, RED) > 200) == errors, device


def test_sqlite_window_rows_one_png_per_device(out: Path, tmp_path: Path) -> None:
    result = plot(out / "acquire.sqlite", "--output", tmp_path / "png")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = sorted(result.stdout.splitlines())
    assert lines[0] == (
        f"{tmp_path / 'png' / 'gas-a.png'}: 1 parameter; "
        "text, not plotted: measurement_1_name = O2, measurement_1_units = %"
    )
    assert lines[1] == f"{tmp_path / 'png' / 'pm-a.png'}: 8 parameters"
    check_pngs(tmp_path / "png")


def test_parquet_window_rows_default_output_next_to_the_dataset(out: Path) -> None:
    assert main([str(out / "windows")]) == 0
    check_pngs(out / "plots")


@pytest.mark.parametrize("source", ["parquet", "sqlite"])
def test_raw_rows(out: Path, tmp_path: Path, source: str) -> None:
    args = [str(out / "samples")] if source == "parquet" else [str(out / "acquire.sqlite"), "--raw"]
    assert main([*args, "-o", str(tmp_path)]) == 0
    check_pngs(tmp_path)


@pytest.mark.parametrize("kind", ["windows", "samples"])
def test_panels_by_unit_states_and_profile_order(out: Path, kind: str) -> None:
    loaded = load(out / "acquire.sqlite", raw=kind == "samples")
    assert loaded.kind == kind
    for device, (panels, values, _) in EXPECTED.items():
        fig = device_figure(device, loaded)
        titles = [ax.get_title(loc="left") for ax in fig.axes]
        assert [t[: len(p)] for t, p in zip(titles, panels, strict=True)] == panels, titles
        assert fig.axes[-1].get_xlabel() == "time (UTC)"
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        notes = [t for t in texts if t.startswith("no values")]
        assert notes == ([] if values else [f"no values: {12} error rows"] * len(panels))
    fig = device_figure("pm-a", loaded)
    temperatures, input_error, power, units = fig.axes
    # One legend per panel naming its parameters (and the window band).
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    band = ["window min to max"] if kind == "windows" else []
    assert legends == [
        ["analog_input_value", "analog_input_2", "set_point", "closed_loop_set_point", *band],
        ["none (61)"],
        ["heat_power", "cool_power", *band],
        ["C (15)"],
    ]
    assert (temperatures.get_ylabel(), power.get_ylabel()) == ("degC", "%")
    assert power.get_ylim() == (-3, 103)  # a percentage: 0-100
    # The state strips: one span per run of one state, labelled inside.
    assert [t.get_text() for t in input_error.texts] == ["none"]
    assert [t.get_text() for t in units.texts] == ["C"]
    assert input_error.get_yticks().size == 0 and len(input_error.collections) == 1
    assert "measurement_1_name = O2" in device_figure("gas-a", loaded).get_suptitle()
    # What is drawn is what is stored: the window means, or the raw values, in time order.
    with sqlite3.connect(out / "acquire.sqlite") as db:
        if kind == "windows":
            sql = "SELECT mean FROM windows WHERE {} ORDER BY window_start"
            (step,) = [p for p in temperatures.patches if p.get_label() == "analog_input_value"]
            drawn = step.get_data().values
        else:
            sql = "SELECT value FROM samples WHERE {} ORDER BY midpoint_at"
            (line,) = [x for x in temperatures.lines if x.get_label() == "analog_input_value"]
            drawn = line.get_ydata()
        where = "device = 'pm-a' AND parameter = 'analog_input_value'"
        stored = [v for (v,) in db.execute(sql.format(where))]
    assert len(stored) >= 3
    assert list(drawn) == stored
    # The set points are constant: +-1 around them, not matplotlib's +-5 % of noise.
    set_points = Loaded(
        kind, {"pm-a": [r for r in loaded.rows["pm-a"] if "set_point" in r["parameter"]]}, ""
    )
    (ax,) = device_figure("pm-a", set_points).axes
    assert ax.get_ylim() == (74.0, 76.0)


def test_several_runs_and_a_time_window(out: Path, tmp_path: Path) -> None:
    """A second run an hour later in the same file: the title counts two runs, no line joins
    them, and --since/--until pick one."""
    two = tmp_path / "two.sqlite"
    two.write_bytes((out / "acquire.sqlite").read_bytes())
    with sqlite3.connect(two) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM samples WHERE device = 'pm-a'")]
        for r in rows:
            for c in ("requested_at", "received_at", "midpoint_at"):
                r[c] = (datetime.fromisoformat(r[c]) + timedelta(hours=1)).isoformat()
        names = ", ".join(rows[0])
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(
            f"INSERT INTO samples ({names}) VALUES ({marks})", [tuple(r.values()) for r in rows]
        )
    loaded = load(two, ["pm-a"], raw=True)
    fig = device_figure("pm-a", loaded)
    assert fig.get_suptitle().split("\n")[0].endswith(", 2 runs")
    (line,) = [x for x in fig.axes[0].lines if x.get_label() == "analog_input_value"]
    y = line.get_ydata()
    assert np.isnan(y).sum() == 1 and len(y) == 2 * len(rows) // 8 + 1
    second = min(datetime.fromisoformat(r["midpoint_at"]) for r in rows)
    later = load(two, ["pm-a"], raw=True, since=second)
    assert (
        len(later.rows["pm-a"]) == len(rows)
        and "runs" not in device_figure("pm-a", later).get_suptitle()
    )
    earlier = load(two, ["pm-a"], raw=True, until=second)
    assert len(earlier.rows["pm-a"]) == len(rows)
    assert (
        main(
            [
                str(two),
                "--raw",
                "--since",
                second.isoformat(),
                "-o",
                str(tmp_path / "png"),
                "-d",
                "pm-a",
            ]
        )
        == 0
    )
    config = ["--config", str(out.parent / "acquire.toml")]
    assert main([str(two), *config, "-o", str(tmp_path / "png"), "-d", "pm-a"]) == 0
    (tmp_path / "bad.toml").write_text("[acquisition]\nrate_hz = 0\n")
    assert main([str(two), "--config", str(tmp_path / "bad.toml")]) == 2
    assert main([str(two), "--since", "yesterday"]) == 2
    assert main([str(two), "--until", "2000-01-01"]) == 2


def test_device_selection(out: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(out / "windows"), "-d", "pm-dead", "-o", str(tmp_path)]) == 0
    check_pngs(tmp_path, {"pm-dead": EXPECTED["pm-dead"]})
    assert main([str(out / "acquire.sqlite"), "-d", "pm-a", "-d", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == f"{out / 'acquire.sqlite'}: no rows of device 'nope' in table 'windows'\n"


def error_inputs(tmp: Path, out: Path) -> list[tuple[list[str], str]]:
    """(arguments, the one line expected on stderr) for bad input of every kind."""
    (tmp / "empty.sqlite").touch()
    (tmp / "notes.txt").write_text("not data\n")
    with sqlite3.connect(tmp / "other.sqlite") as db:
        db.execute("CREATE TABLE readings (x REAL)")
    with sqlite3.connect(tmp / "shape.sqlite") as db:
        db.execute("CREATE TABLE samples (device TEXT, value REAL)")
    empty = tmp / "no-rows.sqlite"
    empty.write_bytes((out / "acquire.sqlite").read_bytes())
    with sqlite3.connect(empty) as db:
        db.execute("DELETE FROM samples")
        db.execute("DELETE FROM windows")
    garbled = tmp / "garbled.sqlite"
    garbled.write_bytes((out / "acquire.sqlite").read_bytes())
    with sqlite3.connect(garbled) as db:
        db.execute("UPDATE samples SET midpoint_at = 'yesterday' WHERE device = 'gas-a'")
    (tmp / "no-parts").mkdir()
    (tmp / "no-parts" / "README").write_text("nothing here\n")
    (tmp / "other").mkdir()
    pq.write_table(pa.table({"x": [1.0]}), tmp / "other" / "part-0.parquet")
    (tmp / "zero").mkdir()
    schema = pq.read_schema(next((out / "windows").glob("*.parquet")))
    pq.write_table(schema.empty_table(), tmp / "zero" / "part-0.parquet")
    db = str(out / "acquire.sqlite")
    with pytest.raises(ValueError) as bad:
        check_identifier("w; DROP", "--windows-table")
    bad_name = str(bad.value)
    return [
        ([f"{tmp}/missing.sqlite"], f"{tmp}/missing.sqlite: no such file or directory"),
        ([f"{tmp}/empty.sqlite"], f"{tmp}/empty.sqlite: not a SQLite file or a Parquet dataset"),
        ([f"{tmp}/notes.txt"], f"{tmp}/notes.txt: not a SQLite file or a Parquet dataset"),
        ([f"{tmp}/other.sqlite"],
         f"{tmp}/other.sqlite: no table 'windows' or 'samples' (tables: readings)"),
        ([f"{tmp}/other.sqlite", "--raw", "--samples-table", "raw"],
         f"{tmp}/other.sqlite: no table 'raw' (tables: readings)"),
        ([f"{tmp}/shape.sqlite"], f"{tmp}/shape.sqlite: table 'samples' has no column "
         "bus, address, protocol, parameter, parameter_id, instance, value_text, unit, "
         "requested_at, received_at, midpoint_at, latency_s, error"),
        ([str(empty)], f"{empty}: no rows in tables 'windows' and 'samples'"),
        ([str(garbled), "--raw", "-d", "gas-a"],
         f"{garbled}: table 'samples': midpoint_at 'yesterday' is not an ISO 8601 time"),
        ([db, "--windows-table", "w; DROP"], bad_name),
        ([f"{tmp}/no-parts"], f"{tmp}/no-parts: no Parquet files in the dataset"),
        ([f"{tmp}/other"],
         f"{tmp}/other: not a dataset of window rows or raw rows (columns: x)"),
        ([f"{tmp}/zero"], f"{tmp}/zero: no rows in the dataset"),
        ([str(out / "windows"), "--raw"], f"{out / 'windows'}: not a dataset of raw rows "
         "(columns: " + ", ".join(schema.names) + ")"),
    ]  # fmt: skip


def test_bad_input_is_one_line_and_exit_code_2(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for args, expected in error_inputs(tmp_path, out):
        assert main([*args, "-o", str(tmp_path / "png")]) == 2, args
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", expected + "\n")
    assert not (tmp_path / "png").exists()


def test_the_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = plot(tmp_path / "missing")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"{tmp_path / 'missing'}: no such file or directory\n"
    usage = plot()
    assert usage.returncode == 2 and "usage: python -m flows.plot" in usage.stderr
    help_text = plot("--help").stdout
    for option in ("--output", "--device", "--raw", "--samples-table", "--windows-table",
                   "--since", "--until", "--config"):  # fmt: skip
        assert option in help_text
    assert "pip install -e '.[plot]'" in help_text


def test_missing_matplotlib(out: Path, tmp_path: Path) -> None:
    result = blocked("matplotlib", out / "acquire.sqlite", "-o", tmp_path)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        "python -m flows.plot needs matplotlib, which is not installed: pip install -e '.[plot]'\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_pyarrow(out: Path, tmp_path: Path) -> None:
    result = blocked("pyarrow", out / "windows", "-o", tmp_path)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        "python -m flows.plot needs pyarrow, which is not installed: pip install -e '.[parquet]'\n"
    )
    # A SQLite file needs no pyarrow.
    result = blocked("pyarrow", out / "acquire.sqlite", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    check_pngs(tmp_path)
