"""End to end in a real browser: JupyterLab + headless Chromium (Selenium) on notebooks 03, 04 and 05.

Reads the page as a person sees it, never JupyterLab's JavaScript internals: for each notebook it waits for the
notebook toolbar's kernel indicator to show idle (answering a "Select Kernel" dialog with Select, as a person
would), clicks Run > Run All Cells, and waits until every code cell has run with no error output. Then:

* ``03_train_dual_reward``: checks the headless run cell's status, sets the panel's steps to 2, clicks **Train**,
  and checks that the progress bar completes, the status says done and the live figure was redrawn during the
  run (counted by the panel's redraw counter in the DOM, so the check does not depend on timing).
* ``04_verify`` (it trains its own smoke checkpoint, notebook 03 has not run in its server): on the lens
  explorer, the prompt the dropdown shows is the prompt the figure's title names (the slot's hidden
  ``data-title``: a PNG's title cannot be read from the page), after Run All, after picking another canonical
  prompt in the dropdown, and after typing a prompt in the text box and pressing Enter (the dropdown then shows
  no selection); the grid tab says its grid is computed when the tab is opened, and once it is opened shows the
  typed prompt's grid as a PNG at its own width, wider than the tab, which scrolls sideways instead of shrinking
  it.
* ``05_sweeps``: the sweep panel's status says the grid is done and its table has one row per run, no run
  twice; then typing seeds ``0 1`` and clicking **Run sweep** trains the two new runs only: the status line
  changes as the run goes (at least two progress texts between the click and the end), ends with "done" naming 2
  runs trained now and 2 with rows from earlier, and the table lists the 4 runs, none twice.

Each test has its own server and run directory (``lab``), so notebook 04 never sees notebook 03's checkpoint
(unless ``LAZARUS_NB_BROWSER_RUN_DIR`` says otherwise).
The server serves a *copy* of ``notebooks/`` (JupyterLab autosaves executed notebooks, and the stored
notebooks must stay without outputs). Needs the Debian packages ``chromium`` and ``chromium-driver``;
skipped when they are missing or ``LAZARUS_NB_SKIP_BROWSER=1``.

Environment:

* ``LAZARUS_NB_SCREENSHOTS=DIR``: save the screenshots (``03_train_panel.png``, ``04_explorer.png``,
  ``04_grid.png``, ``05_sweep.png``, and ``<notebook>_failure.png`` when a notebook fails) in ``DIR`` to look
  at them; by default they go to each test's tmp directory.
* ``LAZARUS_NB_BROWSER_PROFILE=full``: serve the notebooks with the full profile instead of ``smoke``, for a
  manual full-size run (waits of up to 3 hours). The checks that depend on smoke sizes are then skipped: the
  headless run's step count in 03, and adding seeds in 05 (the full grid already has seeds 0 and 1; another
  seed would train six more 500-step runs), and 03 does not retrain with the panel's button (it keeps the
  full checkpoint for 04).
* ``LAZARUS_NB_BROWSER_RUN_DIR=DIR``: one run directory for every test instead of one each, so 04 verifies the
  checkpoint 03 trained (with the full profile, run 03 before 04).
"""

from __future__ import annotations

import ast
import os
import re
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
PROFILE = os.environ.get("LAZARUS_NB_BROWSER_PROFILE", "").strip() or "smoke"
SMOKE = PROFILE == "smoke"
LONG = 900 if SMOKE else 3 * 3600  # seconds for the long waits: Run All, a Train click, a sweep

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
    if PROFILE not in ("smoke", "full"):
        pytest.fail(f"LAZARUS_NB_BROWSER_PROFILE must be 'smoke' or 'full', got {PROFILE!r}")
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
    runs = Path(os.environ.get("LAZARUS_NB_BROWSER_RUN_DIR", "").strip() or tmp_path / "runs")
    env = {**os.environ, "LAZARUS_NB_PROFILE": PROFILE, "LAZARUS_NB_RUN_DIR": str(runs),
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
        yield {"base": base, "token": token, "dir": served, "runs": runs,
               "log": tmp_path / "jupyter.log"}
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where the screenshots go: ``$LAZARUS_NB_SCREENSHOTS`` when set, else the test's tmp directory."""
    chosen = os.environ.get("LAZARUS_NB_SCREENSHOTS", "").strip()
    folder = Path(chosen).expanduser() if chosen else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def _open_and_run_all(d, lab: dict, notebook: str, shots: Path) -> float:
    """Open ``notebook``, click Run All Cells and wait until every code cell has run with no error output and the
    kernel is idle; the seconds it took. On failure the page is saved as ``<notebook>_failure.png``."""
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    d.get(f"{lab['base']}/lab/tree/{notebook}?token={lab['token']}")
    try:
        _wait(lambda: d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell"), 120,
              "JupyterLab to open the notebook")
        _wait_for_idle_kernel(d, 120)
        _run_all_from_menu(d)

        def all_ran():
            prompts = d.execute_script(PROMPTS_JS)
            errors = d.execute_script(ERRORS_JS)
            if errors:
                raise AssertionError("a cell failed:\n" + "\n".join(errors))
            return prompts and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in prompts)

        _wait(all_ran, LONG, f"all cells of {notebook} to run", interval=1.0)
        _wait_for_idle_kernel(d, 60)
    except AssertionError:
        d.save_screenshot(str(shots / f"{Path(notebook).stem}_failure.png"))
        raise
    return time.monotonic() - t0


def _scroll_to(d, css: str) -> None:
    from selenium.webdriver.common.by import By

    d.execute_script("arguments[0].scrollIntoView({block: 'start'});", d.find_element(By.CSS_SELECTOR, css))


def test_train_panel_in_jupyterlab(lab, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    t0 = time.monotonic()
    d = browser
    ran = _open_and_run_all(d, lab, "03_train_dual_reward.ipynb", shots)

    _scroll_to(d, ".lazarus-train-panel")
    status = d.find_element(By.CSS_SELECTOR, ".lazarus-status").text
    assert ("done: 4 steps" if SMOKE else "done: ") in status, status  # the headless run cell
    before = _wait(lambda: d.execute_script(FIGURE_JS), 30, "the dashboard image")
    assert before.startswith("data:image/png;base64,")
    redraws_before = _wait(lambda: d.execute_script(REDRAWS_JS), 30, "the panel's redraw counter")
    if not SMOKE:  # a full-size run: keep its checkpoint for notebook 04 rather than retrain it for 2 steps
        d.save_screenshot(str(shots / "03_train_panel.png"))
        print(f"browser test (full profile): run-all {ran:.0f} s, status {status!r}")
        return

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

    shot = shots / "03_train_panel.png"
    try:
        _wait(finished, LONG, "the Train button run to finish")
    finally:
        d.save_screenshot(str(shot))
    after = d.execute_script(FIGURE_JS)
    redraws = d.execute_script(REDRAWS_JS) - redraws_before

    bar = d.find_element(By.CSS_SELECTOR, ".lazarus-progress .progress-bar")
    width = d.execute_script("return arguments[0].style.width;", bar)
    assert width == "100%", f"progress bar at {width}"
    assert after != before, "the live figure was not redrawn"
    # The panel redraws when a run starts and at every lens snapshot (steps 0 and 2 of this run): events of
    # the run, not of the clock, so at least 3 redraws reach the page however slow the machine is.
    assert redraws >= 3, f"the live figure was redrawn {redraws} times during the run, expected at least 3"
    assert shot.stat().st_size > 10_000
    print(f"03: run-all {ran:.0f} s, total {time.monotonic() - t0:.0f} s, {redraws} redraws, screenshot {shot}")


# The lens explorer as the page shows it: the dropdown's shown option (ipywidgets writes its spaces as no-break
# spaces), the text box, and per tab (lens, grid) the slot's hidden counter and title (app.display.FigureSlot),
# its text (a "computing" line) and whether it shows a PNG; plus what the explorer's output area says.
EXPLORER_JS = r"""
const select = document.querySelector('.lazarus-explorer-dropdown select');
const figures = Array.from(document.querySelectorAll('.lazarus-explorer-tabs .lazarus-figure'));
const counters = Array.from(document.querySelectorAll('.lazarus-explorer-tabs .lazarus-redraws[data-count]'));
if (!select || figures.length !== 2 || counters.length !== 2) return null;
const slots = figures.map((f, i) => ({
    count: parseInt(counters[i].getAttribute('data-count')), title: counters[i].getAttribute('data-title'),
    text: f.textContent.trim(), png: f.querySelector('img[src^="data:image/png"]') !== null}));
const label = o => o.textContent.replace(/\u00a0/g, ' ');
return {dropdown: select.selectedIndex < 0 ? '' : label(select.options[select.selectedIndex]),
        options: Array.from(select.options).map(label),
        text: document.querySelector('.lazarus-explorer-text input').value,
        lens: slots[0], grid: slots[1],
        output: document.querySelector('.lazarus-explorer-output').textContent};
"""
# The grid tab's image: its own width, the width it is drawn at, the tab's width, and whether an element between
# the image and the tab scrolls sideways (what lets a person reach the grid's right-hand part).
GRID_SIZE_JS = """
const tabs = document.querySelector('.lazarus-explorer-tabs');
const img = tabs.querySelectorAll('.lazarus-figure')[1].querySelector('img');
let scrolls = false;
for (let e = img.parentElement; e && e !== tabs; e = e.parentElement) {
    const overflow = getComputedStyle(e).overflowX;
    if ((overflow === 'auto' || overflow === 'scroll') && e.scrollWidth > e.clientWidth + 1) scrolls = true;
}
return {natural: img.naturalWidth, drawn: img.getBoundingClientRect().width, tab: tabs.clientWidth, scrolls};
"""
_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
PICKED = "50 - 23 = "  # another canonical prompt, picked in the dropdown
TYPED = "What is 7 times 8? "  # a word prompt, typed in the text box


def _named_prompt(text: str) -> str | None:
    """The prompt a control or a figure's titles name (they write ``repr(prompt)``): their one Python string
    literal, or the one prompt all of them name (the grid's panels: base, adapted); None for none or several."""
    prompts = {ast.literal_eval(m) for m in _LITERAL.findall(text or "")}
    return prompts.pop() if len(prompts) == 1 else None


def _explorer(d) -> dict:
    state = d.execute_script(EXPLORER_JS)
    assert state is not None, "the lens explorer (dropdown, two tabs with a figure slot each) is not on the page"
    if "Error" in state["output"] or "Traceback" in state["output"]:
        raise AssertionError(f"the explorer reported an error:\n{state['output'][-2000:]}")
    return state


def _after_redraw(d, before: dict, slot: str, what: str) -> dict:
    """The explorer once ``slot`` ("lens" or "grid") was redrawn after ``before`` and the kernel, which answers
    the control that asked, is idle again (so every control it moved has reached the page)."""
    _wait(lambda: _explorer(d)[slot]["count"] > before[slot]["count"], 300 if SMOKE else LONG,
          f"the {slot} figure to be redrawn after {what}", interval=0.2)
    _wait_for_idle_kernel(d, 60)
    return _explorer(d)


def test_lens_explorer_in_jupyterlab(lab, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    d = browser
    ran = _open_and_run_all(d, lab, "04_verify.ipynb", shots)
    t0 = time.monotonic()
    _scroll_to(d, ".lazarus-explorer-dropdown")
    state = _explorer(d)
    # After Run All: the notebook's last explorer cell, show_grid("7 * 8 = ") (after show("81 / 9 = ")), shows
    # its prompt in both tabs, and the dropdown names it.
    assert _named_prompt(state["dropdown"]) == _named_prompt(state["lens"]["title"]) == "7 * 8 = ", state
    assert state["text"] == "" and state["lens"]["png"]
    assert state["grid"]["png"] and _named_prompt(state["grid"]["title"]) == "7 * 8 = ", state["grid"]

    select = d.find_element(By.CSS_SELECTOR, ".lazarus-explorer-dropdown select")
    index = [_named_prompt(o) for o in state["options"]].index(PICKED)
    select.click()
    Select(select).select_by_index(index)
    state = _after_redraw(d, state, "lens", f"picking {PICKED!r}")
    assert _named_prompt(state["dropdown"]) == _named_prompt(state["lens"]["title"]) == PICKED, state
    assert state["text"] == ""
    # the grid tab is closed: it says its grid is computed when opened rather than show another prompt's
    assert not state["grid"]["png"] and state["grid"]["title"] == "", state["grid"]
    assert "computed when this tab is opened" in state["grid"]["text"]
    assert _named_prompt(state["grid"]["text"]) == PICKED

    box = d.find_element(By.CSS_SELECTOR, ".lazarus-explorer-text input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(TYPED, Keys.ENTER)
    state = _after_redraw(d, state, "lens", f"typing {TYPED!r}")
    assert state["dropdown"] == "", f"the dropdown still shows {state['dropdown']!r} for a typed prompt"
    assert Select(select).all_selected_options == []
    assert state["text"] == TYPED and _named_prompt(state["lens"]["title"]) == TYPED, state
    assert "computed when this tab is opened" in state["grid"]["text"]
    assert _named_prompt(state["grid"]["text"]) == TYPED
    _scroll_to(d, ".lazarus-explorer-dropdown")
    d.save_screenshot(str(shots / "04_explorer.png"))

    _click(d, ".lazarus-explorer-tabs .lm-TabBar-tab", text="logit-lens grid")
    shown: list[str] = []  # what the grid tab says until its image arrives

    def grid_shown() -> dict | None:
        s = _explorer(d)
        if s["grid"]["text"] and s["grid"]["text"] not in shown:
            shown.append(s["grid"]["text"])
        return s if s["grid"]["png"] and s["grid"]["count"] > state["grid"]["count"] else None

    _wait(grid_shown, 300 if SMOKE else LONG, "the grid tab to show the typed prompt's grid", interval=0.2)
    _wait_for_idle_kernel(d, 60)
    state = _explorer(d)
    assert state["grid"]["png"] and _named_prompt(state["grid"]["title"]) == TYPED, state["grid"]
    assert state["dropdown"] == "" and _named_prompt(state["lens"]["title"]) == TYPED
    size = d.execute_script(GRID_SIZE_JS)
    # a grid shrunk to the page would be drawn narrower than its PNG and nothing would scroll
    assert size["natural"] > size["tab"], f"the grid is no wider than its tab, nothing to check: {size}"
    assert abs(size["drawn"] - size["natural"]) <= 1, f"the grid is shrunk: {size}"
    assert size["scrolls"], f"the grid's tab does not scroll sideways: {size}"
    _scroll_to(d, ".lazarus-explorer-dropdown")
    d.save_screenshot(str(shots / "04_grid.png"))
    print(f"04: run-all {ran:.0f} s, explorer {time.monotonic() - t0:.0f} s, grid tab said {shown}, "
          f"grid {size}, screenshots in {shots}")


SWEEP_JS = """
const panel = document.querySelector('.lazarus-sweep-panel');
if (!panel) return null;
const table = panel.querySelector('.lazarus-sweep-table pre');
return {status: panel.querySelector('.lazarus-sweep-status').textContent.trim(),
        table: table ? table.textContent : '',
        output: panel.querySelector('.lazarus-sweep-output').textContent,
        running: panel.querySelector('button.lazarus-sweep-button').disabled,
        bar: panel.querySelector('.lazarus-sweep-progress .progress-bar').style.width};
"""
_ALL_RUNS = re.compile(r"(?:done|nothing to train): all (\d+) runs have rows")


def _sweep(d) -> dict:
    state = d.execute_script(SWEEP_JS)
    assert state is not None, "the sweep panel is not on the page"
    if "Error" in state["output"] or "Traceback" in state["output"]:
        raise AssertionError(f"the sweep panel reported an error (status: {state['status']}):\n"
                             f"{state['output'][-2000:]}")
    return state


def _table_runs(table: str) -> list[str]:
    """The run names of the panel's table: a header, a rule, then one line per run starting with its name."""
    lines = [line for line in table.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[1].strip().startswith("---"):
        return []
    assert lines[0].split()[0] == "run", table
    return [line.split()[0] for line in lines[2:]]


def test_sweep_panel_in_jupyterlab(lab, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    ran = _open_and_run_all(d, lab, "05_sweeps.ipynb", shots)
    t0 = time.monotonic()
    _scroll_to(d, ".lazarus-sweep-panel")
    state = _sweep(d)
    m = _ALL_RUNS.match(state["status"])
    assert m, f"the status does not say the grid is done: {state['status']!r}"
    runs = _table_runs(state["table"])
    assert len(runs) == int(m[1]) and len(set(runs)) == len(runs), state["table"]
    if not SMOKE:  # the full grid already has seeds 0 and 1; another seed would train six 500-step runs
        d.save_screenshot(str(shots / "05_sweep.png"))
        print(f"05: run-all {ran:.0f} s, status {state['status']!r}, screenshot in {shots}")
        return
    assert state["status"].startswith("done: all 2 runs have rows (2 trained now)"), state["status"]

    weights = d.find_element(By.CSS_SELECTOR, ".lazarus-sweep-cls-weight input").get_attribute("value").split()
    seeds = d.find_element(By.CSS_SELECTOR, ".lazarus-sweep-seed input")
    seeds.click()
    seeds.send_keys(Keys.CONTROL, "a")
    seeds.send_keys("0 1")
    before = state["status"]
    _click(d, ".lazarus-sweep-panel button", text="Run sweep")
    statuses = [before]  # every status text seen, in order

    def finished() -> dict | None:
        s = _sweep(d)
        if s["status"] != statuses[-1]:
            statuses.append(s["status"])
        # the button comes back just before the final status: wait for a status that is not a run's progress
        return s if not s["running"] and s["status"] != before and not s["status"].startswith("run ") else None

    shot = shots / "05_sweep.png"
    try:
        _wait(finished, LONG, "the sweep to finish", interval=0.1)
        _wait_for_idle_kernel(d, 120)  # the table and the figure are redrawn after the final status
        state = _sweep(d)
    finally:
        _scroll_to(d, ".lazarus-sweep-panel")
        d.save_screenshot(str(shot))
    progress = statuses[1:-1]
    assert len(progress) >= 2, f"the status changed {len(statuses) - 1} times during the sweep: {statuses}"
    assert all(re.match(r"run [1-4] of 4: ", s) for s in progress), progress
    assert re.match(r"done: all 4 runs have rows \(2 trained now, 2 had rows from earlier\), ", state["status"]), \
        state["status"]
    runs = _table_runs(state["table"])
    assert sorted(runs) == sorted(f"cls_weight={w},seed={s}" for w in weights for s in "01"), state["table"]
    assert state["bar"] == "100%", f"progress bar at {state['bar']}"
    print(f"05: run-all {ran:.0f} s, sweep {time.monotonic() - t0:.0f} s, statuses {statuses}, screenshot {shot}")


PATCH_JS = r"""
const root = document.querySelector('.lazarus-patch-pair');
if (!root) return null;
const pair = document.querySelector('.lazarus-patch-pair select');
const position = document.querySelector('.lazarus-patch-position select');
const counter = document.querySelector('.lazarus-redraws[data-count]');
const figure = document.querySelector('.lazarus-figure');
const label = o => o.textContent.replace(/\u00a0/g, ' ');
return {pair: label(pair.options[pair.selectedIndex]), pairs: Array.from(pair.options).map(label),
        position: label(position.options[position.selectedIndex]), positions: Array.from(position.options).map(label),
        count: parseInt(counter.getAttribute('data-count')), title: counter.getAttribute('data-title'),
        png: figure.querySelector('img[src^="data:image/png"]') !== null,
        text: document.querySelector('.lazarus-patch-text').textContent,
        output: document.querySelector('.lazarus-patch-output').textContent};
"""


def _patch_explorer(d) -> dict:
    state = d.execute_script(PATCH_JS)
    assert state is not None, "the patching explorer (pair, position, figure) is not on the page"
    if "Error" in state["output"] or "Traceback" in state["output"]:
        raise AssertionError(f"the patching explorer reported an error:\n{state['output'][-2000:]}")
    return state


def _patched_line(text: str) -> str:
    """The explorer text's line for the patched run (its answer and both answers' probabilities)."""
    return next(line for line in text.splitlines() if line.startswith("patched"))


def test_patch_explorer_in_jupyterlab(lab, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    ran = _open_and_run_all(d, lab, "06_is_it_used.ipynb", shots)
    t0 = time.monotonic()
    _scroll_to(d, ".lazarus-patch-pair")
    state = _patch_explorer(d)
    # After Run All: the notebook's last explorer cell patched pair 0 at layer 1, at the operator position
    assert state["png"] and state["pair"] == state["pairs"][0], state
    assert "(operator)" in state["position"] and "patched at L1," in state["title"], state
    assert state["pair"] in state["title"] and state["pair"] in state["text"], state

    # pick another pair: the figure, its title and the patched run follow it
    select = d.find_element(By.CSS_SELECTOR, ".lazarus-patch-pair select")
    select.click()
    Select(select).select_by_index(1)
    _wait(lambda: _patch_explorer(d)["count"] > state["count"], 300 if SMOKE else LONG,
          "the patching figure to be redrawn for the second pair", interval=0.2)
    _wait_for_idle_kernel(d, 60)
    state = _patch_explorer(d)
    assert state["pair"] == state["pairs"][1] and state["pair"] in state["title"] and state["pair"] in state["text"]
    assert state["position"] == state["positions"][-1], "a new pair starts at its last prompt position"

    # move the patch to the operator position: the patched run is recomputed there
    last = _patched_line(state["text"])
    position = d.find_element(By.CSS_SELECTOR, ".lazarus-patch-position select")
    operator = next(i for i, p in enumerate(state["positions"]) if "(operator)" in p)
    Select(position).select_by_index(operator)
    _wait(lambda: _patch_explorer(d)["count"] > state["count"], 300 if SMOKE else LONG,
          "the patching figure to be redrawn at the operator position", interval=0.2)
    _wait_for_idle_kernel(d, 60)
    state = _patch_explorer(d)
    assert "(operator)" in state["position"] and f"position {operator} " in state["title"], state
    assert _patched_line(state["text"]) != last, "patching the operator instead of the last position changed nothing"
    _scroll_to(d, ".lazarus-patch-pair")
    d.save_screenshot(str(shots / "06_patch_explorer.png"))
    print(f"06: run-all {ran:.0f} s, explorer {time.monotonic() - t0:.0f} s, screenshots in {shots}")
