"""End to end in a real browser: JupyterLab + headless Chromium (Selenium) on notebook 03.

Reads the page as a person sees it, never JupyterLab's JavaScript internals: waits for the notebook toolbar's
kernel indicator to show idle (answering a "Select Kernel" dialog with Select, as a person would), clicks
Run > Run All Cells on ``03_train_dual_reward`` (smoke profile, set in the Jupyter server's environment), then
sets the panel's steps to 2, clicks **Train**, and checks that the progress bar completes, the status says
done and the live figure was redrawn during the run (counted by the panel's redraw counter in the DOM, so
the check does not depend on timing). A screenshot is saved in the test's tmp directory.

The server serves a *copy* of ``notebooks/`` (JupyterLab autosaves executed notebooks, and the stored
notebooks must stay without outputs). Needs the Debian packages ``chromium`` and ``chromium-driver``;
skipped when they are missing or ``LAZARUS_NB_SKIP_BROWSER=1``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "03_train_dual_reward.ipynb"

pytestmark = pytest.mark.browser


def _chromedriver() -> str | None:
    found = shutil.which("chromedriver")
    if found:
        return found
    return "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None


def _skip_reason() -> str | None:
    if os.environ.get("LAZARUS_NB_SKIP_BROWSER") == "1":
        return "LAZARUS_NB_SKIP_BROWSER=1"
    if not CHROMIUM.exists():
        return "/usr/bin/chromium is missing (apt-get install chromium chromium-driver)"
    if _chromedriver() is None:
        return "chromedriver is missing (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (kernels): it runs in its own process group."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def lab(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    jupyter = Path(sys.executable).parent / "jupyter"
    served = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    # no "receive news?" toast over the page
    (config / "labconfig" / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}'
    )
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "LAZARUS_NB_PROFILE": "smoke", "LAZARUS_NB_RUN_DIR": str(tmp_path / "runs"),
           "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"), "JUPYTER_PLATFORM_DIRS": "1"}
    env.pop("LAZARUS_NB_MODEL", None)
    cmd = [str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
           f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0", "--notebook-dir", str(served),
           f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
           f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}", "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(cmd, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"base": base, "token": token, "dir": served, "runs": tmp_path / "runs",
               "log": tmp_path / "jupyter.log"}
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_chromedriver()))
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


PROMPTS_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
    .map(e => e.textContent.trim());
"""
ERRORS_JS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'))
    .filter(e => e.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
                 && /Error|Traceback/.test(e.textContent))
    .map(e => e.textContent.slice(0, 2000));
"""
FIGURE_JS = "const i = document.querySelector('.lazarus-figure img'); return i ? i.getAttribute('src') : null;"
# The panel's hidden redraw counter (app.display.FigureSlot.renders): how often the live figure was replaced.
REDRAWS_JS = ("const e = document.querySelector('.lazarus-redraws[data-count]'); "
              "return e ? parseInt(e.getAttribute('data-count')) : null;")
# What a person sees of the kernel: the notebook toolbar's execution indicator, and dialogs over the page.
KERNEL_JS = """
const i = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
return i ? i.getAttribute('data-status') : null;
"""
DIALOG_JS = """
const d = document.querySelector('.jp-Dialog');
if (!d) return null;
const h = d.querySelector('.jp-Dialog-header');
return h ? h.textContent.trim() : d.textContent.trim().slice(0, 200);
"""


def _wait_for_idle_kernel(d, timeout: float) -> None:
    """Wait until the page shows an idle kernel. A "Select Kernel" dialog (JupyterLab shows it when the
    kernelspecs load after the notebook) is answered as a person would: Select, which takes the default
    kernel; any other dialog fails the test with its title."""
    from selenium.webdriver.common.by import By

    def ready():
        title = d.execute_script(DIALOG_JS)
        if title is not None:
            if "Select Kernel" not in title:
                raise AssertionError(f"unexpected JupyterLab dialog: {title!r}")
            d.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
            return False
        return d.execute_script(KERNEL_JS) == "idle"

    _wait(ready, timeout, "the notebook's kernel indicator to show idle")


def _click(d, css: str, text: str | None = None, timeout: float = 20) -> None:
    """Click the element matching ``css`` (and whose first line of text is ``text``), found afresh on every try:
    JupyterLab re-renders its menus while the page settles, so a found element can go stale before the click."""
    from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        for e in d.find_elements(By.CSS_SELECTOR, css):
            try:
                if text is None or (e.text.strip().splitlines() or [""])[0] == text:
                    if "lm-mod-disabled" in (e.get_attribute("class") or ""):
                        raise AssertionError(f"{text} is disabled in the menu")
                    e.click()
                    return True
            except (StaleElementReferenceException, ElementNotInteractableException):
                continue
        return False

    _wait(attempt, timeout, f"{text or css} to be clickable")


def _run_all_from_menu(d) -> None:
    """Run > Run All Cells, clicked in the menu bar as a person would (after clicking into the notebook)."""
    _click(d, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt")
    _click(d, ".lm-MenuBar-item", text="Run")
    _click(d, ".lm-Menu-item", text="Run All Cells")


def test_train_panel_in_jupyterlab(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    t0 = time.monotonic()
    d = browser
    d.get(f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
    _wait(lambda: d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell"), 120,
          "JupyterLab to open the notebook")
    try:
        _wait_for_idle_kernel(d, 120)
        _run_all_from_menu(d)

        def all_ran():
            prompts = d.execute_script(PROMPTS_JS)
            errors = d.execute_script(ERRORS_JS)
            if errors:
                raise AssertionError("a cell failed:\n" + "\n".join(errors))
            return prompts and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in prompts)

        _wait(all_ran, 600, "all cells of the notebook to run", interval=1.0)
    except AssertionError:
        d.save_screenshot(str(tmp_path / "failure.png"))
        raise
    ran = time.monotonic() - t0

    panel = d.find_element(By.CSS_SELECTOR, ".lazarus-train-panel")
    d.execute_script("arguments[0].scrollIntoView({block: 'start'});", panel)
    assert "done: 4 steps" in d.find_element(By.CSS_SELECTOR, ".lazarus-status").text  # the headless run cell
    before = _wait(lambda: d.execute_script(FIGURE_JS), 30, "the dashboard image")
    assert before.startswith("data:image/png;base64,")
    redraws_before = _wait(lambda: d.execute_script(REDRAWS_JS), 30, "the panel's redraw counter")

    steps = d.find_element(By.CSS_SELECTOR, ".lazarus-steps input")
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys("2", Keys.ENTER)
    button = d.find_element(By.CSS_SELECTOR, "button.lazarus-button")
    button.click()

    def finished():
        status = d.find_element(By.CSS_SELECTOR, ".lazarus-status").text
        log = d.find_element(By.CSS_SELECTOR, ".lazarus-output").text
        if "Error:" in log or "Traceback" in log:
            raise AssertionError(f"the panel reported an error (status: {status}):\n{log[-2000:]}")
        return button.is_enabled() and "done: 2 steps" in status

    try:
        _wait(finished, 600, "the Train button run to finish")
    finally:
        d.save_screenshot(str(tmp_path / "03_train_panel.png"))
    after = d.execute_script(FIGURE_JS)
    redraws = d.execute_script(REDRAWS_JS) - redraws_before

    bar = d.find_element(By.CSS_SELECTOR, ".lazarus-progress .progress-bar")
    width = d.execute_script("return arguments[0].style.width;", bar)
    assert width == "100%", f"progress bar at {width}"
    assert after != before, "the live figure was not redrawn"
    # The panel redraws when a run starts and at every lens snapshot (steps 0 and 2 of this run): events of
    # the run, not of the clock, so at least 3 redraws reach the page however slow the machine is.
    assert redraws >= 3, f"the live figure was redrawn {redraws} times during the run, expected at least 3"
    assert (tmp_path / "03_train_panel.png").stat().st_size > 10_000
    print(f"browser test: run-all {ran:.0f} s, total {time.monotonic() - t0:.0f} s, {redraws} redraws, "
          f"screenshot {tmp_path / '03_train_panel.png'}")
