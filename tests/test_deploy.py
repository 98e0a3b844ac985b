"""deploy/bytewax-daq@.service: what it promises (docs/operations.md#deploying-on-several-hosts)
and, where systemd-analyze is installed, systemd's own check of it."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.acquire import EXIT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "bytewax-daq@.service"
INSTALLED = "/opt/bytewax-daq"


def sections() -> dict[str, list[tuple[str, str]]]:
    """Section -> its (key, value) lines, in order (a key may repeat, as systemd allows)."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, line
        current.append((key, value))
    return out


def test_the_unit_says_what_the_docs_say() -> None:
    units = sections()
    assert set(units) == {"Unit", "Service", "Install"}
    service = dict(units["Service"])
    env = dict(v.split("=", 1) for k, v in units["Service"] if k == "Environment")
    assert (
        service["ExecStart"] == f"{INSTALLED}/.venv/bin/python -m bytewax.run flows.acquire -i %i"
    )
    assert service["Restart"] == "on-failure"
    assert str(EXIT_CONFIG) in service["RestartPreventExitStatus"].split()
    assert service["KillSignal"] == "SIGTERM"
    assert str(128 + signal.SIGTERM) in service["SuccessExitStatus"].split()
    assert float(service["TimeoutStopSec"]) >= 10
    assert {"BYTEWAX_RECOVERY_DIRECTORY", "BYTEWAX_SNAPSHOT_INTERVAL"} <= set(env)
    assert {"ACQUIRE_CONFIG", "ACQUIRE_JOIN_TIMEOUT_S"} <= set(env)
    assert "time-sync.target" in dict(units["Unit"])["After"].split()
    assert dict(units["Install"])["WantedBy"] == "multi-user.target"
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert "deploy/bytewax-daq@.service" in docs
    # The excerpt the docs show is the unit's own lines.
    (excerpt,) = re.findall(r"^```\n(ExecStart=.*?)^```$", docs, flags=re.S | re.M)
    lines = {f"{k}={v}" for section in units.values() for k, v in section}
    assert set(excerpt.splitlines()) <= lines


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (the key checks above still ran)")
    # The unit as installed, with the repository's interpreter where the venv would be.
    venv = tmp_path / "opt" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    text = UNIT.read_text().replace(INSTALLED, str(tmp_path / "opt"))
    (tmp_path / UNIT.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "bytewax-daq@0.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It warns about a key or value it does not know, and still exits 0: no line at all.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result
