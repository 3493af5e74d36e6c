"""Real-browser check of notebook 05 and its experiment dashboard.

Starts JupyterLab from this interpreter's environment on a free 127.0.0.1 port
(serving a temp copy of notebooks/), opens notebook 05 in headless Debian
Chromium driven by Playwright, runs all cells, moves the dashboard's NUMA-nodes
slider with the keyboard and checks that the dashboard's numbers change and
that no cell shows an error. A screenshot is saved under tests/artifacts/.

Needs the `playwright` Python package (the `test` extra) and /usr/bin/chromium
(Debian's `chromium` package; .ci/run installs it). Never `playwright install`:
browser downloads are not possible here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_GLOB = "05_*.ipynb"
NOTEBOOK_NAME = "05_patch3_module_alloc_and_the_98_percent.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("GPALLOC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "gpalloc-browser-test"

# Budgets (seconds). Notebook 05 runs fedora-bpf twice (8 GiB and 64 GiB), ~60 s in all.
SERVER_START_TIMEOUT = 60
RUN_ALL_TIMEOUT = 200
DASHBOARD_TIMEOUT = 45

# JupyterLab user settings for the test server: render every cell (no
# windowing, so all outputs are in the DOM) and never ask about news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
DISABLED_LAB_PLUGINS = {"@jupyterlab/apputils-extension:announcements": True}


def _notebook_05() -> Path:
    found = sorted(NOTEBOOKS.glob(NOTEBOOK_GLOB))
    if not found:
        pytest.fail(
            f"notebook 05 is missing: no {NOTEBOOKS}/{NOTEBOOK_GLOB} "
            f"(expected {NOTEBOOK_NAME}); the browser test needs it",
            pytrace=False,
        )
    named = [p for p in found if p.name == NOTEBOOK_NAME]
    return named[0] if named else found[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _descendants(pid: int) -> list:
    """psutil.Process objects of pid's descendants (kernels), or [] without psutil."""
    try:
        import psutil  # ipykernel depends on it; optional here
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop_server(proc: subprocess.Popen, base: str) -> None:
    """Shut kernels down, then end the server's process group; SIGKILL leftovers."""
    children = _descendants(proc.pid)  # kernels run in their own sessions
    try:
        req = f"{base}/api/kernels?token={TOKEN}"
        for k in json.loads(_http_get(req)):
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/api/kernels/{k['id']}?token={TOKEN}", method="DELETE"
                ),
                timeout=5,
            ).close()
    except (OSError, ValueError):
        pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    for child in children:  # is_running() also guards against a reused pid
        try:
            if child.is_running():
                child.kill()
        except Exception:  # psutil.NoSuchProcess and friends: already gone
            pass


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"!!! BROWSER TEST NOT RUN: Chromium not found at {CHROMIUM} "
            "(install Debian's `chromium` package: apt-get install -y chromium; "
            ".ci/run does this) !!!"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(
            "the `playwright` Python package is missing: install the test extra "
            "(pip install -e '.[test]'); do not run `playwright install`",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """JupyterLab on a copy of notebooks/; yields (base_url, root_dir, notebook)."""
    source = _notebook_05()
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    notebook = root / source.name

    config_dir = tmp_path / "jupyter-config"
    (config_dir / "labconfig").mkdir(parents=True)
    (config_dir / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": DISABLED_LAB_PLUGINS})
    )
    settings_dir = tmp_path / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        f = settings_dir / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    env.pop("MPLBACKEND", None)  # conftest sets Agg; kernels should plot inline
    log = (tmp_path / "jupyter.log").open("wb")
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{_tail(tmp_path)}")
            try:
                _http_get(f"{base}/api/status?token={TOKEN}")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {base}:\n{_tail(tmp_path)}")
                time.sleep(0.25)
        yield base, root, notebook
    finally:
        _stop_server(proc, base)
        log.close()


def _tail(tmp_path: Path, n: int = 40) -> str:
    lines = (tmp_path / "jupyter.log").read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


# --- in-page helpers (JavaScript) ---------------------------------------------

# The kernel is done when the toolbar says idle and no code cell shows "[*]"
# (Run All leaves "[ ]" on the cells after one that raised).
JS_KERNEL_IDLE = """() => {
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) '
                                     + '.jp-Notebook-ExecutionIndicator');
  if (!ind || ind.getAttribute('data-status') !== 'idle') return false;
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
  return !prompts.some(p => p.textContent.includes('*'));
}"""

# Errors shown anywhere in the notebook: tracebacks, error outputs, widget failures.
JS_ERRORS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
    const mime = el.getAttribute('data-mime-type') || '';
    const text = el.innerText || '';
    if (mime === 'application/vnd.jupyter.stderr' && /Traceback|Error:/.test(text))
      out.push(text.slice(0, 2000));
    else if (/Error displaying widget|Failed to load model class|model not found/i.test(text))
      out.push(text.slice(0, 500));
  }
  return out;
}"""

# Index (among all widget sliders) of the slider whose label contains "nodes",
# preferring one in an output that also has a Run button (the experiment
# dashboard, rather than e.g. a NUMA explorer's own "nodes" slider).
JS_FIND_SLIDER = """() => {
  const sliders = [...document.querySelectorAll('.widget-slider')];
  const isNodes = (s) => {
    const lab = s.querySelector('.widget-label');
    return lab && /nodes/i.test(lab.textContent + ' ' + (lab.title || ''));
  };
  const hasRun = (s) => {
    const out = s.closest('.jp-OutputArea-output');
    return !!out && [...out.querySelectorAll('button')]
      .some(b => /\\brun\\b/i.test(b.textContent));
  };
  const withRun = sliders.findIndex(s => isNodes(s) && hasRun(s));
  return withRun >= 0 ? withRun : sliders.findIndex(isNodes);
}"""

# Text of the dashboard (all outputs of the cell holding the slider), without
# the slider itself (its readout changes trivially).
JS_PANEL_TEXT = """(slider) => {
  const cell = slider.closest('.jp-Cell');
  const panel = (cell && cell.querySelector('.jp-Cell-outputArea')) || slider.parentElement;
  const clone = panel.cloneNode(true);
  clone.querySelectorAll('.widget-slider, .widget-readout, .jp-OutputPrompt')
    .forEach(e => e.remove());
  // innerText of a detached node has no layout: use textContent, spaced per element.
  const parts = [];
  const walk = (n) => {
    if (n.nodeType === Node.TEXT_NODE) { parts.push(n.textContent); return; }
    if (n.nodeName === 'SCRIPT' || n.nodeName === 'STYLE') return;
    n.childNodes.forEach(walk);
    parts.push(' ');
  };
  walk(clone);
  return parts.join('').replace(/\\s+/g, ' ').trim();
}"""


# The Run button in the output holding the slider, or null.
JS_RUN_BUTTON = """(slider) => {
  const out = slider.closest('.jp-OutputArea-output');
  return (out && [...out.querySelectorAll('button')]
    .find(b => /\\brun\\b/i.test(b.textContent))) || null;
}"""

NUMBER_RE = r"-?\d[\d,_]*(?:\.\d+)?"
JS_NUMBER_RE = f"/{NUMBER_RE}/g"


def _numbers(text: str) -> list[str]:
    return re.findall(NUMBER_RE, text)


def test_notebook_05_dashboard_in_chromium(chromium_path: Path, lab_server) -> None:
    from playwright.sync_api import TimeoutError as PWTimeout
    from playwright.sync_api import sync_playwright

    base, root, notebook = lab_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "notebook05_dashboard.png"
    rel = notebook.relative_to(root).as_posix()
    url = f"{base}/lab/tree/{rel}?token={TOKEN}"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                _drive(page, url, PWTimeout)
            finally:
                try:
                    page.screenshot(path=str(shot), full_page=True)
                except Exception as exc:
                    print(f"screenshot failed: {exc}")
        finally:
            browser.close()
    print(f"screenshot: {shot}")


def _drive(page, url: str, PWTimeout) -> None:
    page.set_default_timeout(30_000)
    page.goto(url)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(state="visible", timeout=60_000)

    # "Select Kernel" dialog (shown when the notebook opens): accept it.
    try:
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        accept.wait_for(state="visible", timeout=5_000)
        accept.click()
    except PWTimeout:
        pass
    # Wait for a kernel to be connected and idle before running anything.
    page.wait_for_function(
        """() => { const i = document.querySelector('.jp-Notebook-ExecutionIndicator');
                   return i && i.getAttribute('data-status') === 'idle'; }""",
        timeout=60_000,
    )

    # Run → Run All Cells.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item:visible", has_text="Run All Cells").first.click()
    # Let execution start ([*] prompts), then wait until every code cell has run.
    t0 = time.monotonic()
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
            ".some(p => p.textContent.includes('*'))",
            timeout=10_000,
        )
    except PWTimeout:
        pass  # a very fast notebook may already be done
    page.wait_for_function(JS_KERNEL_IDLE, timeout=RUN_ALL_TIMEOUT * 1000, polling=500)
    print(f"run all: {time.monotonic() - t0:.1f} s")

    errors = page.evaluate(JS_ERRORS)
    assert not errors, "error output after Run All:\n\n" + "\n---\n".join(errors)

    # The dashboard's NUMA-nodes slider.
    try:
        page.wait_for_function(f"() => ({JS_FIND_SLIDER})() >= 0", timeout=15_000)
    except PWTimeout:
        labels = page.locator(".widget-slider .widget-label").all_inner_texts()
        pytest.fail(
            "no ipywidgets slider whose description contains 'nodes' "
            f"(slider labels seen: {labels})",
            pytrace=False,
        )
    slider = page.locator(".widget-slider").nth(page.evaluate(JS_FIND_SLIDER))
    slider.scroll_into_view_if_needed()
    panel = slider.element_handle()
    before = page.evaluate(JS_PANEL_TEXT, panel)
    assert _numbers(before), f"dashboard shows no numbers: {before!r}"

    handle = slider.locator(".noUi-handle, [role=slider]").first
    now = handle.get_attribute("aria-valuenow")
    vmax = handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if now is not None and now == vmax else "ArrowRight"
    handle.focus()
    handle.press(key)
    page.wait_for_function(
        "([h, v]) => h.getAttribute('aria-valuenow') !== v",
        arg=[handle.element_handle(), now],
        timeout=5_000,
    )

    # The dashboard's Run button, if it has one (moving a slider may only mark
    # the results stale).
    run = page.evaluate_handle(JS_RUN_BUTTON, panel).as_element()
    if run is not None:
        run.click()

    # Wait for the numbers to change (the re-run), then for the kernel to finish.
    try:
        page.wait_for_function(
            f"""([el, before]) => {{
                  const nums = ({JS_PANEL_TEXT})(el).match({JS_NUMBER_RE}) || [];
                  return nums.join(' ') !== before;
                }}""",
            arg=[panel, " ".join(_numbers(before))],
            timeout=DASHBOARD_TIMEOUT * 1000,
            polling=250,
        )
    except PWTimeout:
        pass  # asserted below, with both texts in the message
    page.wait_for_function(JS_KERNEL_IDLE, timeout=DASHBOARD_TIMEOUT * 1000, polling=500)
    if run is not None:
        page.wait_for_function("(b) => !b.disabled", arg=run, timeout=DASHBOARD_TIMEOUT * 1000)
    after = page.evaluate(JS_PANEL_TEXT, panel)
    print(f"dashboard before: {before}\ndashboard after:  {after}")
    assert _numbers(after) != _numbers(before), (
        f"dashboard numbers did not change after moving the nodes slider ({key}):\n"
        f"before: {before}\nafter:  {after}"
    )
    assert not re.search(r"refused|Traceback", after), f"dashboard shows an error: {after}"
    errors = page.evaluate(JS_ERRORS)
    assert not errors, "error output after using the dashboard:\n\n" + "\n---\n".join(errors)
