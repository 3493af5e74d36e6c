"""`make dashboard` in Chromium: the Voila page paints fast, a slider and Run change the output.

Starts `make dashboard` (this venv as it is: NO_INSTALL=1) on a free 127.0.0.1 port, opens it in
headless Debian Chromium through Playwright, waits for the committed fedora-bpf table and the
explorers' widgets, moves the pressure explorer's slider (its numbers must change), then clicks
"Run fedora-bpf now" and checks the model's fresh run equals the committed 8 GiB row.
A screenshot goes to tests/artifacts/dashboard.png.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from pathlib import Path

import pytest
from local_server import CHROMIUM, CHROMIUM_FLAGS, free_port, serving

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
RESULTS_CSV = ROOT / "data" / "results" / "fedora-bpf-by-ram.csv"
START_TIMEOUT = 60
# What "paints in a few seconds" means on CI's 2 shared cores: kernel start, imports, the two
# explorers' first runs. Measured ~5 s here.
PAINT_BUDGET = 30
FEDORA_TIMEOUT = 120
NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"!!! BROWSER TEST NOT RUN: no Chromium at {CHROMIUM} "
                    "(apt-get install -y chromium; .ci/run does this) !!!")
    return CHROMIUM


@pytest.fixture
def dashboard(tmp_path: Path):
    port = free_port()
    args = f"--no-browser --port={port} --Voila.ip=127.0.0.1"
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "dashboard", "NO_INSTALL=1",
           f"VENV={sys.prefix}", f"DASHBOARD_ARGS={args}"]
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("MPLBACKEND", None)
    base = f"http://127.0.0.1:{port}"
    # /voila/static answers without starting a kernel (the page itself would start one).
    with serving(cmd, f"{base}/voila/static/voila.js", tmp_path / "voila.log", START_TIMEOUT,
                 env=env):
        yield base


def _numbers(text: str) -> list[str]:
    return NUMBER_RE.findall(text)


def test_dashboard_in_chromium(chromium: Path, dashboard: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                     args=CHROMIUM_FLAGS)
        try:
            # Tall enough to show every panel in one screenshot (Voila scrolls inside a div).
            page = browser.new_page(viewport={"width": 1400, "height": 3400})
            try:
                _drive(page, dashboard)
            finally:
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()


def _drive(page, base: str) -> None:
    with RESULTS_CSV.open(newline="") as f:
        committed = {row["node_mem"]: row for row in csv.DictReader(f)}["8G"]
    page.set_default_timeout(30_000)
    t0 = time.monotonic()
    page.goto(base + "/")
    pressure = page.locator(".jp-Cell-outputArea",
                            has_text="Memory pressure and the grouped cache")
    table_re = re.compile(r"free memory after it \(MB\)")
    pressure.get_by_text(table_re).wait_for(timeout=PAINT_BUDGET * 1000)
    page.locator(".jp-Cell-outputArea", has_text="NUMA: where grouped pages come from") \
        .locator(".widget-slider").first.wait_for()
    page.get_by_text(f"{committed['reduction_pct']} %").first.wait_for()
    painted = time.monotonic() - t0
    print(f"dashboard painted in {painted:.1f} s")
    assert painted < PAINT_BUDGET

    # The experiment dashboard before Run: its checkbox label is whole, and no image shows
    # (an empty Image widget would be a broken-image icon).
    experiment = page.locator(".jp-Cell-outputArea", has_text="Experiment: bpf-load")
    label = experiment.locator(".widget-checkbox").first
    label.wait_for()
    assert "fedora-bpf" in label.inner_text()
    assert label.evaluate("el => [...el.querySelectorAll('*')].every("
                          "e => e.scrollWidth <= e.clientWidth + 1)"), "checkbox label cut off"
    assert experiment.locator("img").evaluate_all(
        "imgs => imgs.filter(i => i.offsetParent !== null).length") == 0

    # The pressure slider: one step right re-runs the explorer; its numbers must change.
    numbers = pressure.locator(".widget-html").filter(has_text=table_re)
    before = numbers.inner_text()
    handle = pressure.locator(".widget-slider .noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_function(
        "([el, before]) => el.innerText !== before",
        arg=[numbers.element_handle(), before], timeout=30_000)
    after = numbers.inner_text()
    assert _numbers(after) != _numbers(before), f"before: {before}\nafter: {after}"
    assert "refused" not in pressure.inner_text()

    # fedora-bpf on demand: the fresh run reproduces the committed 8 GiB row (seed 0).
    page.get_by_role("button", name="Run fedora-bpf now").click()
    fresh = page.get_by_text("computed now (seed 0)")
    fresh.wait_for(timeout=FEDORA_TIMEOUT * 1000)
    row = page.locator("tr", has=fresh).inner_text()
    assert _numbers(row)[1:] == [f"{int(committed['baseline_4k_kb']):,}",
                                 f"{int(committed['grouped_4k_kb']):,}",
                                 committed["reduction_pct"]], row
    assert page.get_by_role("button", name="Run fedora-bpf now").is_enabled()

    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
