"""Every example in README.md runs: configs parse, commands run, the Python example builds."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from flows.config import parse_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHORT = (ROOT / "acquire.toml").read_text().replace("duration_s = 10", "duration_s = 1")
# The recovery section's commands, run by tests/flows/test_recovery.py.
RECOVERY = ("bytewax.recovery", " -r recovery")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands() -> list[str]:
    return [line for block in blocks("sh") for line in block.splitlines() if line.strip()]


def short_config(tmp_path: Path) -> Path:
    path = tmp_path / "acquire.toml"
    path.write_text(SHORT)
    return path


def argv(command: str) -> list[str]:
    """A README command line, run with this interpreter in place of the venv's."""
    return shlex.split(command.replace(".venv/bin/python", sys.executable))


def run(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACQUIRE_CONFIG": str(config)}
    return subprocess.run(
        argv(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("text", blocks("toml"), ids=lambda t: t.split("\n", 2)[1][:30])
def test_config_examples_parse(text: str, tmp_path: Path) -> None:
    config = parse_config(tomllib.loads(text), source="README.md", base_dir=tmp_path)
    assert config.buses


def test_every_command_is_covered() -> None:
    lines = commands()
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[parquet]' && ")
    assert lines[1].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && ")
    # Each of the others is run by a test below (the first two by tests/flows/test_acquire.py
    # and .ci/run, bench/poll.py by tests/test_bench_poll.py, bench/soak.py by
    # tests/test_bench_soak.py).
    covered = ("ACQUIRE_CONFIG=", "connectors.sim", "connectors.scan", "flows.plot",
               "-w 4", "-i 0", "-i 1", "ACQUIRE_BATCHES=", "bench/sinks.py", "bench/scale.py",
               "bench/poll.py", "bench/soak.py", "bench/status.py",
               "BYTEWAX_DATAFLOW_API_ENABLED=true", "curl -s http://127.0.0.1:3030",
               *RECOVERY)  # fmt: skip
    assert len(lines) == 2 + len(covered), lines
    for marker in covered:
        assert sum(marker in line for line in lines) == 1, marker


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
    assert "total: 46 rows, 0 error rows" in result.stdout


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


def test_python_example_builds_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks("python")
    config = short_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.replace('"acquire.toml"', repr(str(config))), "README.md", "exec"), namespace)
    flow = namespace["flow"]
    assert isinstance(flow, Dataflow)
    run_main(flow)
    assert (tmp_path / "data" / "acquire.sqlite").exists()


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
            "--seconds 2 --start 2 --most 4 --idle-seconds 1 --warm-up 1"
        ),
    }
    for line in (sinks_line, scale_line):
        script = next(k for k in small if k in line)
        result = subprocess.run(
            [*argv(line), *small[script]], cwd=ROOT, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
        assert "ratio" in result.stdout.strip().splitlines()[-1]
