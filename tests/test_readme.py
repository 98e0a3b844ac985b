"""Every example in README.md and docs/*.md runs: configs parse, commands run, the Python
example builds. The pages' links lead to files that exist, and so do the README's layout
and the logger names the pages give."""

from __future__ import annotations

import ast
import logging
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

import flows.acquire  # noqa: F401  (creates the loggers the pages name)
import sinks.partition  # noqa: F401  (its logger too)
from flows.config import load_config, parse_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# README.md first: its first two commands are the run and test commands.
PAGES = (README, *sorted((ROOT / "docs").glob("*.md")))
SHORT = (ROOT / "acquire.toml").read_text().replace("duration_s = 10", "duration_s = 1")
# The recovery section's commands, run by tests/flows/test_recovery.py.
RECOVERY = ("bytewax.recovery", " -r recovery")
# Fenced blocks the tests run ("" is output and pictures: nothing to run).
LANGUAGES = ("sh", "toml", "python", "yaml", "")


def page_name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def examples(language: str) -> list[tuple[str, str]]:
    """(page, block) for every fenced ``language`` block of README.md and docs/*.md, in
    page order (README.md first, then docs/ by name) and, within a page, in text order."""
    return [
        (page_name(page), block)
        for page in PAGES
        for kind, block in re.findall(r"^```(\w*)\n(.*?)^```$", page.read_text(), flags=re.S | re.M)
        if kind == language
    ]


def blocks(language: str) -> list[str]:
    return [block for _, block in examples(language)]


def command_lines() -> list[tuple[str, str]]:
    """(page, line) for every non-empty line of every ``sh`` block."""
    return [
        (page, line)
        for page, block in examples("sh")
        for line in block.splitlines()
        if line.strip()
    ]


def commands() -> list[str]:
    return [line for _, line in command_lines()]


def short_config(tmp_path: Path) -> Path:
    path = tmp_path / "acquire.toml"
    path.write_text(SHORT)
    return path


def argv(command: str) -> list[str]:
    """A documented command line, run with this interpreter in place of the venv's."""
    return shlex.split(command.replace(".venv/bin/python", sys.executable))


def run(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACQUIRE_CONFIG": str(config)}
    return subprocess.run(
        argv(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def prose(text: str) -> str:
    """``text`` without its fenced blocks and inline code."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page.read_text(),
                                                    flags=re.S | re.M), flags=re.M):  # fmt: skip
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def layout_paths() -> list[str]:
    """The paths the README's layout names, each relative to the root: the leading
    file-like words of each line (``name.py``, ``dir/``), under the folder it is indented in."""
    (block,) = re.findall(r"^## Layout\n.*?^```\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    paths: list[str] = []
    folders: list[tuple[int, str]] = []  # (indent, folder) of the lines above
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        base = folders[-1][1] if folders else ""
        names = []
        for word in line.split():
            if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*/?", word):
                break
            if "/" not in word and not re.search(r"\.(py|toml|md)$", word):
                break
            names.append(base + word)
        assert names, f"layout line names no path: {line!r}"
        paths.extend(names)
        if len(names) == 1 and names[0].endswith("/"):
            folders.append((indent, names[0]))
    return paths


@pytest.mark.parametrize(
    "page,text", examples("toml"), ids=lambda v: v.split("\n", 2)[1][:30] if "\n" in v else v
)
def test_config_examples_parse(page: str, text: str, tmp_path: Path) -> None:
    config = parse_config(tomllib.loads(text), source=page, base_dir=tmp_path)
    assert config.buses


def test_every_block_is_a_kind_the_tests_run() -> None:
    for page in PAGES:
        fences = re.findall(r"^```(.*)$", page.read_text(), flags=re.M)
        assert len(fences) % 2 == 0, page
        # Every second fence closes a block and has no language.
        assert set(fences[1::2]) <= {""}, page
        assert set(fences[::2]) <= set(LANGUAGES), (page, fences)


def test_every_command_is_covered() -> None:
    pairs = command_lines()
    lines = [line for _, line in pairs]
    assert pairs[0][0] == pairs[1][0] == "README.md"
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[parquet]' && ")
    assert lines[1].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && ")
    # Each of the others is run by a test below (the first two by tests/flows/test_acquire.py
    # and .ci/run, bench/poll.py by tests/test_bench_poll.py, bench/soak.py by
    # tests/test_bench_soak.py, bench/status.py by tests/test_bench_status.py, bench/outage.py
    # by tests/test_bench_outage.py, bench/mqtt.py by tests/test_bench_mqtt.py,
    # docs/make_images.py by test_make_images_makes_small_pictures below, the metrics
    # commands by tests/flows/observe/test_metrics.py, the recovery commands by
    # tests/flows/test_recovery.py).
    covered = ("ACQUIRE_CONFIG=", "connectors.sim", "connectors.scan", "flows.plot",
               "-w 4", "-i 0", "-i 1", "ACQUIRE_BATCHES=", "bench/sinks.py", "bench/scale.py",
               "bench/poll.py", "bench/soak.py", "bench/status.py", "bench/outage.py",
               "bench/mqtt.py", "docs/make_images.py",
               "BYTEWAX_DATAFLOW_API_ENABLED=true", "curl -s http://127.0.0.1:3030",
               *RECOVERY)  # fmt: skip
    assert len(lines) == 2 + len(covered), lines
    for marker in covered:
        assert sum(marker in line for line in lines) == 1, marker


def test_relative_links_lead_to_files_that_exist() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_relative_to(ROOT) and linked.exists(), (page_name(page), target)
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), (page_name(page), target)


def test_readme_links_every_docs_page() -> None:
    text = README.read_text()
    for page in PAGES[1:]:
        assert f"]({page_name(page)})" in text, page_name(page)


def test_layout_names_only_paths_that_exist() -> None:
    paths = layout_paths()
    assert "flows/config/" in paths and "connectors/sim/" in paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == [], missing


def test_layout_names_every_module() -> None:
    """Every module of the three packages has its line in the README's layout (empty
    ``__init__.py`` files aside)."""
    named = set(layout_paths())
    modules = [
        path.relative_to(ROOT).as_posix()
        for folder in ("connectors", "flows", "sinks")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    unnamed = [m for m in modules if m not in named and (ROOT / m).read_text().strip()]
    assert unnamed == [], unnamed


def test_logger_names_are_the_codes_own() -> None:
    loggers = logging.Logger.manager.loggerDict
    named = []
    for page in PAGES:
        text = page.read_text()
        named += re.findall(r"`([\w.]+)` logger", text) + re.findall(r"logger `([\w.]+)`", text)
    assert "flows.status" in named
    assert [n for n in named if n not in loggers] == []


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Module path -> the modules it imports (absolute, anywhere in it: in functions and under
    TYPE_CHECKING too), for every module under ``folder``. ``from a import b`` counts as
    ``a`` and ``a.b``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def imported_packages(folder: str) -> dict[str, set[str]]:
    """Module path -> the top-level packages it imports, for every module under ``folder``."""
    return {m: {n.split(".")[0] for n in names} for m, names in imported_modules(folder).items()}


def importers(prefix: str) -> set[str]:
    """The modules of connectors/, flows/ and sinks/ that import ``prefix`` or a module in it."""
    return {
        module
        for folder in ("connectors", "flows", "sinks")
        for module, names in imported_modules(folder).items()
        if any(n == prefix or n.startswith(prefix + ".") for n in names)
    }


def test_architecture_import_rules_hold() -> None:
    """docs/architecture.md: sinks import neither connectors nor flows; connectors never
    import flows; connectors.sim is imported only by connectors/link.py (outside itself);
    pymodbus only by the modules the page names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert "`sinks/` imports neither `connectors/` nor `flows/`" in text
    assert "`connectors/` never imports `flows/`" in text
    for folder, banned in (("sinks", {"connectors", "flows"}), ("connectors", {"flows"})):
        wrong = {m: n & banned for m, n in imported_packages(folder).items() if n & banned}
        assert wrong == {}, wrong

    assert "`connectors.sim` is imported only by `connectors/link.py`" in text
    sim = {m for m in importers("connectors.sim") if not m.startswith("connectors/sim/")}
    assert sim == {"connectors/link.py"}, sim

    (rule,) = [line for line in text.split("\n- ") if line.startswith("pymodbus is imported only")]
    allowed = set(re.findall(r"`(connectors/[\w/]+(?:\.py|/))`", rule))
    assert allowed == {
        "connectors/transport.py", "connectors/request.py", "connectors/link.py",
        "connectors/scan.py", "connectors/sim/",
    }, allowed  # fmt: skip
    # Each module the rule names imports pymodbus, and no other module outside connectors/sim/.
    outside_sim = {m for m in importers("pymodbus") if not m.startswith("connectors/sim/")}
    assert outside_sim == allowed - {"connectors/sim/"}, outside_sim


def test_troubleshooting_one_line_errors_are_the_flows_own(tmp_path: Path) -> None:
    quoted = re.findall(r"`([^`\n]+)`", (ROOT / "docs" / "troubleshooting.md").read_text())
    env = {k: v for k, v in os.environ.items() if k != "ACQUIRE_CONFIG"}
    flow = [sys.executable, "-m", "bytewax.run", "flows.acquire"]
    no_config = subprocess.run(flow, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    env["ACQUIRE_CONFIG"] = str(short_config(tmp_path))
    no_store = subprocess.run([*flow, "-r", "recovery", "-s", "10", "-b", "0"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    for result in (no_config, no_store):
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() in quoted, result.stderr


def test_summary_example_has_the_runs_lines(tmp_path: Path) -> None:
    """The README's summary has the lines a run prints, numbers aside."""
    (example,) = [b for b in blocks("") if b.startswith("run summary:")]
    result = run(".venv/bin/python -m bytewax.run flows.acquire", short_config(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = result.stdout[result.stdout.index("run summary:") :]

    def shapes(text: str) -> set[str]:
        return {re.sub(r"\d+(\.\d+)?", "N", " ".join(line.split())) for line in text.splitlines()}

    assert shapes(example) == shapes(printed) - {""}


def test_scrape_config_targets_the_metrics_port() -> None:
    (scrape,) = blocks("yaml")
    (curl,) = [c for c in commands() if c.startswith("curl ")]
    port = re.search(r"127\.0\.0\.1:(\d+)/metrics", curl).group(1)  # type: ignore[union-attr]
    assert re.search(rf'targets: \["[\w.-]+:{port}"\]', scrape), scrape
    assert "scrape_configs:" in scrape and "job_name:" in scrape


def test_scan_command_finds_the_simulated_devices() -> None:
    (simulator,) = [c for c in commands() if "connectors.sim" in c]
    (scan,) = [c for c in commands() if "connectors.scan" in c]
    proc = subprocess.Popen(
        argv(simulator.replace(":5020", ":0")), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = re.search(r"at tcp://\S+:(\d+)", proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        result = subprocess.run(
            argv(scan.replace(":5020", f":{port}")),
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    config = parse_config(tomllib.loads(result.stdout), source="scan", base_dir=ROOT)
    devices = [(d.address, d.name) for bus in config.buses for d in bus.devices]
    assert [a for a, _ in devices] == [1, 2]


def test_plot_command_renders_a_run(tmp_path: Path) -> None:
    (line,) = [c for c in commands() if "flows.plot" in c]
    flow = run(".venv/bin/python -m bytewax.run flows.acquire", short_config(tmp_path))
    assert flow.returncode == 0, flow.stderr
    plot = line.split(" && ", 1)[1].replace("data/", f"{tmp_path}/data/")
    result = subprocess.run(argv(plot), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in (tmp_path / "data" / "plots").glob("*.png"))
    devices = ("furnace-1", "furnace-2", "o2-analyser", "oven-1", "oven-2", "stack-gas")
    assert pngs == [f"{d}.png" for d in devices]


def test_real_hardware_command_runs_a_config(tmp_path: Path) -> None:
    (line,) = [c for c in commands() if c.startswith("ACQUIRE_CONFIG=")]
    result = run(line.split(" ", 1)[1], short_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "total: 54 rows, 0 error rows" in result.stdout


def test_workers_command(tmp_path: Path) -> None:
    (line,) = [c for c in commands() if c.endswith("-w 4")]
    result = run(line, short_config(tmp_path))
    assert result.returncode == 0, result.stderr
    # Two buses on four workers: two workers poll, window rows may land on any worker.
    assert result.stdout.count("  total: ") == 2
    assert result.stdout.count("bus lab-tcp: ") == result.stdout.count("bus line-rtu: ") == 1
    csvs = sorted(p.name for p in (tmp_path / "data").glob("samples-w*.csv"))
    assert csvs == [f"samples-w{i}.csv" for i in range(4)]


def test_processes_command(tmp_path: Path) -> None:
    lines = [c for c in commands() if " -i " in c]
    assert len(lines) == 2
    procs = []
    for i, line in enumerate(lines):
        local = line.replace("10.0.0.1:2101", "127.0.0.1:21901").replace(
            "10.0.0.2:2101", "127.0.0.1:21902"
        )
        env = {**os.environ, "ACQUIRE_CONFIG": str(short_config(tmp_path))}
        procs.append(
            subprocess.Popen(argv(local), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        )
        assert f"-i {i}" in line
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert "lab-tcp" in outs[0] + outs[1] and "line-rtu" in outs[0] + outs[1]


def test_simulator_command() -> None:
    (line,) = [c for c in commands() if "connectors.sim" in c]
    proc = subprocess.Popen(
        argv(line.replace(":5020", ":0")), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()
        url = re.search(r"at (tcp://\S+)", first).group(1)
        script = textwrap.dedent(f"""
            import asyncio, struct
            from pymodbus.client import AsyncModbusTcpClient
            async def main():
                host, port = "{url}"[6:].rsplit(":", 1)
                client = AsyncModbusTcpClient(host, port=int(port))
                await client.connect()
                rr = await client.read_input_registers(0, count=2, device_id=2)
                print(struct.unpack(">f", struct.pack(">2H", *rr.registers))[0])
                client.close()
            asyncio.run(main())
        """)
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
        )
        assert 20.8 < float(out.stdout) < 21.0, out.stderr  # O2 %, float32 high word first
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_example(code: str, page: str, tmp_path: Path) -> None:
    config = short_config(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.replace('"acquire.toml"', repr(str(config))), page, "exec"), namespace)
    flow = namespace["flow"]
    assert isinstance(flow, Dataflow)
    run_main(flow)


def test_python_examples_build_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plain, publish) = examples("python")
    monkeypatch.chdir(tmp_path)
    run_example(plain[1], plain[0], tmp_path)
    assert (tmp_path / "data" / "acquire.sqlite").exists()
    # The publishing example: an independent subscriber gets the changes of the process
    # values (each device's first at least), and Parquet every raw row.
    import paho.mqtt.client as mqtt
    import pyarrow.dataset as ds

    got: list[str] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda client, userdata, message: got.append(message.topic)
    sub.connect("127.0.0.1", 1883)
    sub.subscribe("plant/#", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.3)  # the subscription in place before anything is published
        run_example(publish[1], publish[0], tmp_path)
        time.sleep(0.5)
    finally:
        sub.loop_stop()
        sub.disconnect()
    config = load_config(short_config(tmp_path))
    devices = {d.name for b in config.buses for d in b.devices}
    assert {t.split("/")[2] for t in got} == devices  # every device's first rows at least
    raw = ds.dataset(tmp_path / "data" / "raw").to_table()
    pv_rows = raw.filter(ds.field("parameter") == "analog_input_value").num_rows
    pv_sent = sum(t.endswith("/analog_input_value") for t in got)
    assert 0 < pv_sent <= pv_rows  # each first row at least; the deadband may hold back more
    assert raw.num_rows >= len(got)  # every raw row in Parquet, the changes published


def test_batches_command(tmp_path: Path) -> None:
    (line,) = [c for c in commands() if c.startswith("ACQUIRE_BATCHES=")]
    labels = tmp_path / "batches.csv"
    labels.write_text("device,batch,started_at\noven-1,B-1,2020-01-01T00:00:00+00:00\n")
    env = {**os.environ, "ACQUIRE_CONFIG": str(short_config(tmp_path))}
    env["ACQUIRE_BATCHES"] = str(labels)
    result = subprocess.run(
        argv(line.split(" ", 1)[1]), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_bench_commands_run_small() -> None:
    sinks_line, scale_line = [
        c.split("#")[0] for c in commands() if "bench/sinks.py" in c or "bench/scale.py" in c
    ]
    small = {
        "bench/sinks.py": ["--rows", "4000", "--batch", "1000"],
        "bench/scale.py": shlex.split(
            "--seconds 1 --start 2 --most 2 --idle-seconds 1 --warm-up 1"
        ),
    }
    for line in (sinks_line, scale_line):
        script = next(k for k in small if k in line)
        result = subprocess.run(
            [*argv(line), *small[script]], cwd=ROOT, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
        # The last line is machine-readable: "name value, name value, ...".
        last = result.stdout.strip().splitlines()[-1]
        value = r"-?[\d.]+|nan"  # a 1 s run may see RSS before its imports end
        assert re.fullmatch(rf"\w+ ({value})(, \w+ ({value}))*", last), last


def test_make_images_makes_small_pictures(tmp_path: Path) -> None:
    """docs/make_images.py makes both pictures, small; the README's copies are small too."""
    from tests.flows.observe.test_page_browser import browser_or_skip

    browser_or_skip()
    (line,) = [c for c in commands() if "docs/make_images.py" in c]
    result = subprocess.run(
        [*argv(line), "--seconds", "2", "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("status-page.png", "plot.png"):
        for png in (tmp_path / name, ROOT / "docs" / name):
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 100_000, png
        assert f"{tmp_path / name}: " in result.stdout
