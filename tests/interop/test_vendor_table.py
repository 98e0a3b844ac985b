"""connectors/profiles/watlow_pm.toml held against Watlow's PM parameter table as shipped in
the watlowlib 0.8.1 wheel (data/watlow_pm_parameters.json: the rows the profile uses, copied
unchanged), and that extract held against the wheel itself when it can be downloaded.

The profile is read here as plain TOML, not with the project's loader: names are the
snake_case of Watlow's parameter names, ids and PDU addresses (relative_addr, plus the next
instance offset per instance) are Watlow's, IEEE Float is float32 and Enumeration uint16 in
holding registers, enumeration labels are Watlow's texts, ranges Watlow's widest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from connectors.registers import PROFILE_DIR

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

EXTRACT = json.loads((Path(__file__).parent / "data" / "watlow_pm_parameters.json").read_text())
SOURCE = EXTRACT["source"]
ROWS = {(r["parameter_id"], r["instance_id"]): r for r in EXTRACT["parameters"]}
PROFILE = tomllib.loads((PROFILE_DIR / "watlow_pm.toml").read_text(encoding="utf-8"))
PARAMETERS = PROFILE["parameter"]
TYPES = {"IEEE Float": "float32", "Enumeration": "uint16"}
WORD_ORDERS = {"Low_High": "CDAB", "High_Low": "ABCD"}  # low word first, high word first
UNITS = {"°C": "degC", "°F": "degF"}


def snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def enumeration(row: dict[str, Any]) -> dict[int, str]:
    """Watlow's ``range`` of an enumeration, e.g. ``None (61), Open (65)`` -> {61: "None", ...}."""
    return {
        int(code): text.strip() for text, code in re.findall(r"([^,(]+)\((\d+)\)", row["range"])
    }


def widest_range(row: dict[str, Any]) -> tuple[float, float]:
    """The widest of the limits in Watlow's ``range`` (°F and °C alike)."""
    numbers = [float(n.replace(",", "")) for n in re.findall(r"-?\d[\d,]*(?:\.\d+)?", row["range"])]
    return min(numbers), max(numbers)


def vendor_row(parameter: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(instance, Watlow's row) of a profile parameter, from its id and address."""
    first = ROWS[(parameter["id"], 1)]
    step = first["next_inst_offset"]
    steps = (parameter["address"] - first["relative_addr"]) // (step if step != "N/A" else 1)
    instance = steps + 1
    assert (parameter["id"], instance) in ROWS, f"{parameter['name']}: no Watlow row"
    return instance, ROWS[(parameter["id"], instance)]


def test_the_extract_names_its_source() -> None:
    assert SOURCE["wheel"] == "watlowlib-0.8.1-py3-none-any.whl"
    assert SOURCE["version"] == "0.8.1"
    assert SOURCE["parameters_file"] == "watlowlib/data/pm_parameters.json"
    assert {r["sheet"] for r in EXTRACT["parameters"]} == {SOURCE["parameters_sheet"]}


@pytest.mark.parametrize("parameter", PARAMETERS, ids=lambda p: p["name"])
def test_a_profile_parameter_is_watlows(parameter: dict[str, Any]) -> None:
    defaults = PROFILE.get("defaults", {})
    instance, row = vendor_row(parameter)
    group, _, name = row["name"].partition(" - ")
    names = (
        {snake(name)}
        if instance == 1
        else {f"{snake(name)}_{instance}", f"{snake(group)}_{instance}"}
    )
    assert parameter["name"] in names, row["name"]
    assert parameter["address"] == row["relative_addr"]
    assert parameter.get("table", defaults.get("table")) == "holding"
    assert row["absolute_addr"] == 400001 + row["relative_addr"]  # 4xxxxx: a holding register
    assert parameter.get("type", defaults.get("type")) == TYPES[row["data_type"]]
    if row["unit_kind"] == "enumeration":
        watlow = {code: text.strip("°").casefold() for code, text in enumeration(row).items()}
        labels = {int(code): text.casefold() for code, text in parameter["labels"].items()}
        assert labels == watlow
    else:
        assert "labels" not in parameter
    if row["unit_kind"] == "percent":
        assert parameter.get("unit") == "%"
    if row["unit_kind"] == "temperature":
        assert parameter.get("quantity") == "temperature"  # its unit is the PM's to say
    if "range" in parameter:
        assert tuple(parameter["range"]) == widest_range(row)


def test_every_extract_row_is_used_by_the_profile() -> None:
    used = {(p["id"], vendor_row(p)[0]) for p in PARAMETERS}
    described = {(r["parameter_id"], 1) for r in EXTRACT["parameters"]} - used
    assert described == {(17043, 1)}  # the word order: read through [describe], not polled


def test_the_describe_registers_are_watlows() -> None:
    describe = PROFILE["describe"]
    order, units = describe["word_order"], describe["units"]
    row = ROWS[(17043, 1)]
    assert row["data_type"] == "Wide Enumeration"
    assert order["address"] == row["relative_addr"] == 2488
    assert order["count"] == 2  # [1331, 0] Low_High, [0, 1330] High_Low, or one register
    assert order["sets"] == "byte_order"
    watlow = {code: WORD_ORDERS[text] for code, text in enumeration(row).items()}
    assert {int(c): v for c, v in order["values"].items()} == watlow == {1331: "CDAB", 1330: "ABCD"}
    assert row["default"] == "Low_High (1331)"
    assert PROFILE["defaults"]["byte_order"] == "CDAB"  # the factory default until told
    row = ROWS[(17050, 1)]
    assert units["address"] == row["relative_addr"] == 2490
    assert units["sets"] == "unit" and units["quantity"] == "temperature"
    watlow = {code: UNITS[text] for code, text in enumeration(row).items()}
    assert {int(c): v for c, v in units["values"].items()} == watlow == {15: "degC", 30: "degF"}


def test_enumeration_rows_name_the_codes() -> None:
    codes = {
        code
        for r in EXTRACT["parameters"]
        if "numeration" in r["data_type"]
        for code in enumeration(r)
    }
    listed = {row[3]: row for row in EXTRACT["enumerations"]}
    assert set(listed) == codes
    for r in EXTRACT["parameters"]:
        for code, text in enumeration(r).items():
            prompt = listed[code][1].casefold()
            assert text.strip("°").replace("_", " ").casefold() in prompt, (code, text, prompt)


def download_wheel(directory: Path) -> Path:
    """pip download the wheel named in the extract; pytest.skip when offline (not in CI)."""
    name = f"{SOURCE['package']}=={SOURCE['version']}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.13", "--dest", str(directory), "--quiet", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        done = None
    wheel = directory / SOURCE["wheel"]
    if done is None or done.returncode != 0 or not wheel.exists():
        why = "timed out" if done is None else (done.stderr.strip().splitlines() or ["failed"])[-1]
        if os.environ.get("CI"):
            pytest.fail(f"pip download {name}: {why}")
        pytest.skip(f"cannot download {name} to check the extract against it: {why}")
    return wheel


def test_the_extract_is_the_wheels(tmp_path: Path) -> None:
    wheel = download_wheel(tmp_path)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == SOURCE["wheel_sha256"]
    with zipfile.ZipFile(wheel) as z:
        parameters = json.loads(z.read(SOURCE["parameters_file"]))
        enumerations = json.loads(z.read(SOURCE["enumerations_file"]))
    sheet = SOURCE["parameters_sheet"]
    theirs = {(r["parameter_id"], r["instance_id"]): r for r in parameters if r["sheet"] == sheet}
    for key, row in ROWS.items():
        assert theirs[key] == row, key
    assert enumerations[0]["row"] == SOURCE["enumerations_header"]
    rows = [e["row"] for e in enumerations[1:]]
    for row in EXTRACT["enumerations"]:
        assert row in rows
    codes = {row[3] for row in EXTRACT["enumerations"]}
    assert sorted(map(str, EXTRACT["enumerations"])) == sorted(
        str(r) for r in rows if r[3] in codes
    )
