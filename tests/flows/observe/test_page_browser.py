"""The status page in a real browser (Debian's chromium, headless, driven by playwright)
against a running flow: a bus of the test's own simulator (two PMs, one killed mid-run) and a
simulated bus whose profile, config path and sink path carry hostile names.

Without chromium or playwright the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from bytewax.testing import run_main

from connectors.sim import SimulatedDevice
from flows.acquire import build_flow
from flows.config import load_config
from flows.observe.page import PAGE
from tests.faults.rig import SimLoop

CHROMIUM = "/usr/bin/chromium"
RATE_HZ = 2.0
TICK_S = 1 / RATE_HZ
HOSTILE = "<img src=x onerror=alert(1)>&\"q'"  # a name that is markup if not escaped
PROFILE = f"""
name = "hostile"
[[parameter]]
name = {json.dumps(HOSTILE)}
table = "holding"
address = 0
type = "uint16"
unit = "<b>&amp;</b>"
labels = {{ 0 = "</td><script>alert(2)</script>" }}
"""
CONFIG = """
[acquisition]
rate_hz = {rate}
duration_s = 30

[status]
interval_s = 0
http = "127.0.0.1:0"

[[bus]]
name = "line-tcp"
url = "{url}"
timeout_s = 0.15

  [[bus.device]]
  name = "pm-1"
  profile = "watlow_pm"
  address = 1
  parameters = ["analog_input_value", "set_point", "heat_power"]

  [[bus.device]]
  name = "pm-2"
  profile = "watlow_pm"
  address = 2
  parameters = ["analog_input_value", "set_point", "heat_power"]

[[bus]]
name = "odd-names"
url = "sim://"
simulate = true

  [[bus.device]]
  name = "probe"
  profile = "hostile.toml"
  address = 1

[[sink]]
kind = "csv"
path = {sink}
"""


def browser_or_skip() -> object:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs chromium (apt-get install chromium) and playwright (.[dev])")
        pytest.skip("needs /usr/bin/chromium and playwright")
    return sync_playwright


def test_page_in_a_browser(tmp_path: Path) -> None:
    sync_playwright = browser_or_skip()
    stop = threading.Event()  # ends the run once the browser has seen it
    sims = SimLoop()
    try:
        pms = [SimulatedDevice(address=u, profile="watlow_pm") for u in (1, 2)]
        sim = sims.serve("tcp", pms)
        (tmp_path / "hostile.toml").write_text(PROFILE, encoding="utf-8")
        sink = json.dumps(str(tmp_path / f"rows {HOSTILE}.csv"))
        config = tmp_path / f"run {HOSTILE}.toml"
        config.write_text(CONFIG.format(rate=RATE_HZ, url=sim.url, sink=sink), encoding="utf-8")
        flow = build_flow(load_config(config), stop=stop)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                run_main(flow)
            except BaseException as exc:
                failed.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        deadline = time.monotonic() + 5
        while PAGE.address is None and time.monotonic() < deadline and not failed:
            time.sleep(0.02)
        assert PAGE.address is not None, failed
        url = "http://{}:{}/".format(*PAGE.address)
        with sync_playwright() as p:  # type: ignore[operator]
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url)
            # Every bus and device, and the process it is.
            for device in ("pm-1", "pm-2", "probe"):
                page.wait_for_selector(f'tr[data-device="{device}"].answering', timeout=5000)
            buses = page.eval_on_selector_all("section.bus", "els => els.map(e => e.dataset.bus)")
            assert buses == ["line-tcp", "odd-names"]
            assert "process 1/1" in page.title()
            # The tick count shown moves on within two ticks.
            facts = 'section[data-bus="line-tcp"] p.facts'
            before = page.inner_text(facts)
            started = time.monotonic()
            while page.inner_text(facts) == before and time.monotonic() - started < 3:
                page.wait_for_timeout(20)  # the page's CSP refuses wait_for_function's eval
            assert time.monotonic() - started <= 2 * TICK_S, page.inner_text(facts)
            # Units and values, and the hostile names as text, never as markup.
            row = page.inner_text('tr[data-device="pm-1"]')
            assert "analog_input_value = " in row and "degC" in row and "%" in row, row
            probe = page.inner_text('tr[data-device="probe"]')
            assert HOSTILE in probe and "<b>&amp;</b>" in probe, probe
            assert "</td><script>alert(2)</script>" in probe, probe
            assert HOSTILE in page.inner_text("#process")
            assert HOSTILE in page.inner_text("#sinks")
            # Markup in a name would have made an <img>, or a <b> holding "&".
            assert page.locator("img").count() == 0
            assert "&" not in page.locator("b").all_inner_texts()
            assert page.locator("script").count() == 1  # the page's own
            # A device killed in the simulator shows as not answering, with its error.
            sims.set_fault(sim, 2, dead=True)
            killed = time.monotonic()
            page.wait_for_selector('tr[data-device="pm-2"].silent', timeout=4 * TICK_S * 1000)
            seen_s = time.monotonic() - killed
            silent = page.inner_text('tr[data-device="pm-2"]')
            assert "not answering" in silent and "timeout: no response" in silent, silent
            assert page.locator('tr[data-device="pm-1"].answering').count() == 1
            page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
            browser.close()
        stop.set()
        assert dialogs == []
        assert (tmp_path / "status.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with urllib.request.urlopen(url + "status", timeout=5) as answer:
            status = json.load(answer)
        pm2 = next(d for b in status["buses"] for d in b["devices"] if d["name"] == "pm-2")
        assert not pm2["answering"] and pm2["last_error"].startswith("timeout")
        runner.join(timeout=10)
        assert not runner.is_alive() and not failed, failed
        assert PAGE.address is None  # the last partition closed stops the server
        print(f"PAGE killed device shown as not answering after {seen_s:.2f} s")
    finally:
        stop.set()
        sims.close()
