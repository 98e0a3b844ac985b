"""Make the README's two pictures: docs/status-page.png (the status page of a running flow, in
headless chromium) and docs/plot.png (python -m flows.plot of one PM from the same run).

Runs the flow on simulated buses (a Modbus TCP bus of two PMs, one of them dead, and an RTU
bus of a PM and an O2 analyser) at 2 Hz for --seconds (default 20), with the status page on
a free port; screenshots the page once every device has been polled, then plots the PM's raw
rows. Both PNGs are reduced to 64 colours so each stays well under 100 kB. Needs chromium
(/usr/bin/chromium, Debian's package) and the dev extra (playwright, matplotlib).

    .venv/bin/python docs/make_images.py [--seconds 20] [--output docs]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.acquire import build_flow  # noqa: E402
from flows.config import load_config  # noqa: E402
from flows.observe.page import PAGE  # noqa: E402
from flows.plot import device_figure  # noqa: E402
from flows.plot.data import load  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CONFIG = """
[acquisition]
rate_hz = 2
duration_s = {seconds}

[status]
interval_s = 0
http = "127.0.0.1:0"

[[bus]]
name = "lab-tcp"
url = "tcp://127.0.0.1:0"
simulate = true
timeout_s = 0.2

  [[bus.device]]
  name = "oven-1"
  profile = "watlow_pm"
  address = 1
  simulate = {{ set_point = 120 }}

  [[bus.device]]
  name = "oven-2"
  profile = "watlow_pm"
  address = 2
  parameters = ["analog_input_value", "set_point", "heat_power"]
  simulate = {{ dead = true }}

[[bus]]
name = "line-rtu"
url = "rtu://pty?baudrate=38400"
simulate = true
timeout_s = 0.2

  [[bus.device]]
  name = "furnace-1"
  profile = "watlow_pm"
  address = 1
  parameters = ["analog_input_value", "set_point", "heat_power", "input_error"]

  [[bus.device]]
  name = "stack-gas"
  profile = "servomex_4100"
  address = 7
  parameters = ["measurement_1", "measurement_1_name"]

[[sink]]
kind = "sqlite"
path = "acquire.sqlite"
"""


def small_png(path: Path) -> None:
    """``path`` again in 64 colours (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(64).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    # The browser first: starting it can take longer than a short run lasts on a busy machine.
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 600})
        config = Path(tmp) / "acquire.toml"
        config.write_text(CONFIG.format(seconds=args.seconds))
        flow = build_flow(load_config(config))
        from bytewax.testing import run_main

        def run() -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # the summary
                run_main(flow)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        while PAGE.address is None:
            time.sleep(0.02)
        page.goto(f"http://127.0.0.1:{PAGE.address[1]}/")
        for device in ("oven-1", "furnace-1", "stack-gas"):
            page.wait_for_selector(f'tr[data-device="{device}"].answering', timeout=10_000)
        page.wait_for_selector('tr[data-device="oven-2"].silent', timeout=10_000)
        time.sleep(0.6)  # a tick or two more in the counts
        shot = args.output / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
        small_png(shot)
        runner.join()
        loaded = load(Path(tmp) / "acquire.sqlite", ["oven-1"], raw=True)
        fig = device_figure("oven-1", loaded)
        fig.set_dpi(80)
        picture = args.output / "plot.png"
        fig.savefig(picture, dpi=80)
        small_png(picture)
    for png in (shot, picture):
        print(f"{png}: {png.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main()
