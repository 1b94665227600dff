"""A lesson run the way a learner runs it: in a real browser, through JupyterLab's own menus.

JupyterLab is started by ``./lab.sh start`` (the session's temporary LABKIT_HOME, a free port, a
token) without LABKIT_PLAIN, so the page shows what a learner sees. Debian's headless chromium,
driven through Debian's chromedriver by selenium (no browser or driver is downloaded), opens the
notebook, clicks Run > Run All Cells, waits for the kernel, and reads the page. Every check cell
must show its ✔ and no ✘ and no traceback; a negative control, a notebook whose check is false,
must fail that very assertion. A screenshot of each finished notebook is kept in
artifacts/browser/. The lessons' folder is left as it was: autosave is off, and JupyterLab keeps
its checkpoints in the test's own directory.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome, ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import REPO
from tests.lab_server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "artifacts" / "browser"
NEGATIVE_CONTROL = Path(__file__).with_name("data") / "negative_control.ipynb.json"
# Ubuntu (the lab VM) ships chromium only as a snap; lab.sh test installs Debian's on Debian,
# where CI runs and counts a skip as a failure.
pytestmark = pytest.mark.skipif(not Path(CHROMEDRIVER).exists(),
                                reason="needs Debian's chromium and chromium-driver packages")
RUN_SECONDS = 180  # the most a notebook may take to open or to run before the test gives up
CHECK_CALL = re.compile(r"\bexpect\w*\(")  # checks.expect(...) and the lessons' expect_...(...)

# The browser's JupyterLab settings: never save the lesson (the repository keeps its notebooks
# without outputs), put every cell in the page at once (so all can be read). The news stay off
# by the lab's own settings (jupyter/lab-settings), which a test checks.
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

READ_CELLS = """
return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell')).map(cell => ({
  prompt: cell.querySelector('.jp-InputArea-prompt').textContent.trim(),
  source: Array.from(cell.querySelectorAll('.jp-InputArea-editor .cm-line'))
               .map(line => line.textContent).join('\\n'),
  outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output'))
                .map(output => [output.dataset.mimeType || '', output.innerText]),
}));
"""
KERNEL_STATUS = """
const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
return indicator ? indicator.dataset.status : null;
"""
SHOW_LAST_CELL = """
const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
cells[cells.length - 1].scrollIntoView({block: 'end'});
"""
ERROR_MIME = "application/vnd.jupyter.stderr"
TABS = """
return Array.from(document.querySelectorAll('.lm-TabBar-tab')).map(tab => ({
  title: tab.innerText.trim(), dirty: tab.classList.contains('jp-mod-dirty')}));
"""
DIALOGS = "return Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText);"
TOASTS = "return Array.from(document.querySelectorAll('.Toastify__toast')).map(t => t.innerText);"
NEWS_DEFAULT = """
const done = arguments[arguments.length - 1];
fetch('/lab/api/settings/@jupyterlab/apputils-extension:notification')
  .then(reply => reply.json()).then(plugin => done(plugin.schema.properties.fetchNews.default));
"""


@dataclass(frozen=True)
class Cell:
    """A code cell as the page shows it."""

    prompt: str  # "[3]:" once run, "[ ]:" if it never ran, "[*]:" while it runs or waits
    source: str
    outputs: list[tuple[str, str]]  # (mime type, text as shown)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.outputs)

    @property
    def tracebacks(self) -> list[str]:
        return [text for mime, text in self.outputs if mime == ERROR_MIME and "Traceback" in text]


@dataclass(frozen=True)
class Page:
    cells: list[Cell]
    text: str  # everything the notebook shows, markdown included


def code_sources(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def assert_checks_report_success(page: Page, sources: list[str]) -> None:
    """The assertion a lesson must pass and the negative control must fail."""
    assert [cell.source for cell in page.cells] == sources, "the page shows other cells"
    checks = [cell for cell in page.cells if CHECK_CALL.search(cell.source)]
    assert checks, "the page shows no check cell"
    failed = [cell for cell in checks
              if "✔" not in cell.text or "✘" in cell.text or cell.tracebacks]
    assert not failed, "check cells that did not report success:\n" + "\n".join(
        f"{cell.prompt} {cell.source}\n{cell.text}" for cell in failed)
    assert all(re.fullmatch(r"\[\d+\]:", cell.prompt) for cell in page.cells), \
        [cell.prompt for cell in page.cells]
    assert not [cell.tracebacks for cell in page.cells if cell.tracebacks]


# --- the browser ------------------------------------------------------------------------------


def config_dir(workdir: Path) -> Path:
    """Jupyter's configuration: checkpoints (made when a notebook is opened) in ``workdir``.
    An absolute ``checkpoint_dir`` replaces the .ipynb_checkpoints beside each notebook."""
    directory = workdir / "config"
    directory.mkdir()
    checkpoints = {"FileCheckpoints": {"checkpoint_dir": str(workdir / "checkpoints")}}
    (directory / "jupyter_server_config.json").write_text(json.dumps(checkpoints))
    return directory


def settings_dir(workdir: Path) -> Path:
    directory = workdir / "settings"
    for plugin, values in SETTINGS.items():
        path = directory / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return directory


@contextmanager
def chromium(workdir: Path) -> Iterator[Chrome]:
    """Headless chromium with a fresh profile; it and chromedriver are gone on exit."""
    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", f"--user-data-dir={workdir / 'profile'}",
                 "--window-size=1280,2400",
                 "--no-sandbox"):  # chromium's own sandbox refuses to start as root
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
    driver = Chrome(options=options, service=service)  # a driver path given: nothing downloaded
    try:
        yield driver
    finally:
        driver.quit()


def run_all_cells(driver: Chrome, code_cells: int) -> None:
    """Wait for the notebook and its kernel, click Run > Run All Cells, wait until it is done."""
    wait = WebDriverWait(driver, RUN_SECONDS, poll_frequency=0.25)
    wait.until(lambda d: len(d.execute_script(READ_CELLS)) == code_cells
               and d.execute_script(KERNEL_STATUS) == "idle",
               message="the notebook and its kernel were not ready")
    wait.until(lambda d: choose(d, "Run", "runmenu:run-all", "Run All Cells"),
               message="Run > Run All Cells could not be clicked")
    wait.until(lambda d: any(prompt != "[ ]:" for prompt in prompts(d)),
               message="Run All Cells ran no cell")
    wait.until(lambda d: d.execute_script(KERNEL_STATUS) == "idle" and "[*]:" not in prompts(d),
               message="the cells did not finish")


def choose(driver: Chrome, menu: str, command: str, label: str) -> bool:
    """Open ``menu`` in the menu bar and click its item for ``command``, if enabled; if not (the
    notebook is not the current document yet), close the menu and say so, to be tried again."""
    [title] = [item for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")
               if item.text == menu]
    title.click()
    [item] = driver.find_elements(By.CSS_SELECTOR, f'.lm-Menu-item[data-command="{command}"]')
    assert item.text.startswith(label)
    if "lm-mod-disabled" in item.get_attribute("class"):
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        return False
    item.click()
    return True


def prompts(driver: Chrome) -> list[str]:
    return [cell["prompt"] for cell in driver.execute_script(READ_CELLS)]


@contextmanager
def lesson_in_browser(workdir: Path, served: Path, notebook: Path) -> Iterator[Chrome]:
    """Serve ``served`` and open ``notebook`` (inside it) in the browser; stop all on exit."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Jupyter's and IPython's own files in the test's directory: nothing shared with root's, or
    # with another test session's JupyterLab running at the same time.
    with serving(workdir, unset=("LABKIT_PLAIN",), LAB_NOTEBOOKS=str(served),
                 JUPYTER_CONFIG_DIR=str(config_dir(workdir)),
                 JUPYTER_DATA_DIR=str(workdir / "data"), IPYTHONDIR=str(workdir / "ipython"),
                 JUPYTERLAB_SETTINGS_DIR=str(settings_dir(workdir)),
                 JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces")) as server, \
            chromium(workdir) as driver:
        driver.get(f"{server.url}/lab/tree/{notebook.relative_to(served)}?token={server.token}")
        try:
            yield driver
        except TimeoutException as timeout:
            driver.save_screenshot(str(SCREENSHOTS / f"{notebook.stem}-timed-out.png"))
            log = server.log.read_text()[-4000:]
            raise AssertionError(f"{timeout.msg}; the page is in {SCREENSHOTS}, and "
                                 f"JupyterLab's log ends:\n{log}") from None
    assert_nothing_left(workdir, server.port)


def run_in_browser(workdir: Path, served: Path, notebook: Path) -> Page:
    """Run ``notebook`` in the browser, as Run > Run All Cells does, and read the page."""
    with lesson_in_browser(workdir, served, notebook) as driver:
        run_all_cells(driver, len(code_sources(notebook)))
        driver.execute_script(SHOW_LAST_CELL)
        driver.save_screenshot(str(SCREENSHOTS / f"{notebook.stem}.png"))
        cells = [Cell(c["prompt"], c["source"], [tuple(o) for o in c["outputs"]])
                 for c in driver.execute_script(READ_CELLS)]
        page = Page(cells, driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text)
    return page


def assert_nothing_left(workdir: Path, port: int) -> None:
    """No server, kernel, chromedriver or chromium: nothing runs with this test's files or port."""
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"])
            if any(str(workdir) in arg for arg in p.info["cmdline"] or ())]
    assert left == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize(("notebook", "lesson"), [("01_plain_clone.ipynb", "plain_clone"),
                                                  ("04_mount_namespace_and_proc.ipynb",
                                                   "mount_namespace_and_proc")])
def test_a_lesson_run_in_the_browser_shows_every_check_ticked(tmp_path, notebook, lesson):
    path = REPO / "notebooks" / notebook
    committed = path.read_bytes()
    folder = sorted(path.parent.iterdir())
    page = run_in_browser(tmp_path, REPO / "notebooks", path)
    assert_checks_report_success(page, code_sources(path))
    # The exercise waits for the learner's answer, and its solution stays hidden until asked.
    [exercise] = [cell for cell in page.cells if ".check(answer)" in cell.source]
    assert exercise.text == "✘ Not yet: no answer yet"
    solution = importlib.import_module(f"labkit.lessons.{lesson}").EXERCISE.solution_text
    assert solution not in page.text
    assert path.read_bytes() == committed
    assert sorted(path.parent.iterdir()) == folder  # no .ipynb_checkpoints either


def test_the_negative_control_fails_the_same_assertion(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    notebook = served / "negative_control.ipynb"
    shutil.copy(NEGATIVE_CONTROL, notebook)
    page = run_in_browser(tmp_path, served, notebook)
    with pytest.raises(AssertionError, match="check cells that did not report success") as failure:
        assert_checks_report_success(page, code_sources(notebook))
    assert "this kernel is PID 1" in str(failure.value)
    assert "✔ this kernel is not PID 1" in page.cells[1].text  # the true check still ticked
    assert "ClaimFailed" in page.cells[2].tracebacks[0]  # the page showed the false one's error


def test_a_lesson_opened_and_closed_untouched_asks_nothing_and_no_news_pops_up(tmp_path):
    path = REPO / "notebooks" / "02_uts_namespace.ipynb"
    committed = path.read_bytes()
    with lesson_in_browser(tmp_path, path.parent, path) as driver:
        wait = WebDriverWait(driver, RUN_SECONDS, poll_frequency=0.25)
        wait.until(lambda d: d.execute_script(KERNEL_STATUS) == "idle",
                   message="the kernel did not start")
        # The kernel's language_info reaches the notebook right after its first reply; before
        # the lab filled it in as it served the file, the tab was marked modified by now.
        time.sleep(2)
        assert {"title": path.name, "dirty": False} in driver.execute_script(TABS)
        wait.until(lambda d: choose(d, "File", "application:close", "Close Tab"),
                   message="File > Close Tab could not be clicked")
        wait.until(lambda d: d.execute_script(DIALOGS) or
                   path.name not in [tab["title"] for tab in d.execute_script(TABS)],
                   message="the lesson's tab did not close")
        assert driver.execute_script(DIALOGS) == []  # no "Save your work?"
        assert driver.execute_async_script(NEWS_DEFAULT) == "false"
        assert not [toast for toast in driver.execute_script(TOASTS) if "news" in toast]
    assert path.read_bytes() == committed
