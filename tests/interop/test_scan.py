"""``python -m connectors.scan`` against a pyModbusTCP server playing a gateway with PMs set
differently behind it, and against the hand-written RTU slave: it finds each PM, its snippet
says the word order and units found, and the flow run on that snippet, as printed, stores
every value as loaded, in its unit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.interop.rig import check_rows, pm_unit, run_flow
from tests.interop.rtuslave import RtuSlave
from tests.interop.watlow import CELSIUS, FAHRENHEIT, HIGH_LOW, LOW_HIGH, PM

ROOT = Path(__file__).resolve().parents[2]
PMS = {
    1: PM(word_order=LOW_HIGH, units=CELSIUS),
    2: PM(word_order=HIGH_LOW, units=FAHRENHEIT, offset=2),
    4: PM(word_order=HIGH_LOW, units=CELSIUS, single_register=True, offset=4),
}  # 3: nobody (the gateway answers exception 11)
ORDER_WORDS = {LOW_HIGH: r"low[_ ]?high|CDAB", HIGH_LOW: r"high[_ ]?low|ABCD"}
UNIT_WORDS = {CELSIUS: r"\bC\b|degC", FAHRENHEIT: r"\bF\b|degF"}


def test_scan_finds_the_pms_and_its_snippet_reads_them(pm_server, tmp_path: Path) -> None:
    server = pm_server({u: pm.registers() for u, pm in PMS.items()})
    scan = subprocess.run(
        [sys.executable, "-m", "connectors.scan", server.url, "--units", "1-4", "--timeout", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 0, scan.stderr
    snippet = scan.stdout
    assert "unit 3: no answer" in scan.stderr
    tables = snippet.split("[[bus.device]]")[1:]
    assert len(tables) == len(PMS), snippet
    for unit, table in zip(PMS, tables, strict=True):
        pm = PMS[unit]
        assert f"address = {unit}" in table
        assert 'profile = "watlow_pm"' in table
        said = table.split("\n")[1]  # the evidence comment under [[bus.device]]
        assert re.search(ORDER_WORDS[pm.word_order], said, re.I), said
        assert re.search(UNIT_WORDS[pm.units], said), said
    assert "[bus.device.override" not in snippet  # the PMs say how they are read: no pins
    rows = run_flow(tmp_path, snippet)
    for unit, pm in PMS.items():
        check_rows(rows, pm, f"watlow-pm-{unit}")


def test_scan_of_the_hand_written_rtu_slave(tmp_path: Path) -> None:
    """Over RTU on a pty, against the slave written from the spec: units 1 and 3 silent, a
    PM in High_Low and °F at 2; the flow on the snippet stores it exactly, in degF."""
    pm = PM(word_order=HIGH_LOW, units=FAHRENHEIT)
    line = RtuSlave({2: pm_unit(pm)}).start()
    try:
        url = f"rtu://{line.path}?baudrate=115200"
        scan = subprocess.run(
            [sys.executable, "-m", "connectors.scan", url, "--units", "1-3", "--timeout", "0.2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert scan.returncode == 0, scan.stderr
        assert "unit 1: no answer" in scan.stderr and "unit 3: no answer" in scan.stderr
        (table,) = scan.stdout.split("[[bus.device]]")[1:]
        assert "address = 2" in table and 'profile = "watlow_pm"' in table
        said = table.split("\n")[1]
        assert re.search(ORDER_WORDS[HIGH_LOW], said, re.I), said
        assert re.search(UNIT_WORDS[FAHRENHEIT], said), said
        check_rows(run_flow(tmp_path, scan.stdout), pm, "watlow-pm-2")
        assert not line.dropped
    finally:
        line.stop()
