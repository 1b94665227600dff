"""Pytest wiring for every test and every notebook: a private store, plain output, the host guard.

It sits at the top of the repository so that its hooks reach the notebooks too: a conftest
inside tests/ only wraps the items collected below it.

The guard wraps each test through an autouse fixture. nbval turns each notebook cell into its own
test item, and fixtures do not wrap those, so for notebooks the guard hooks into the first cell's
setup and the last cell's teardown: it then covers the whole notebook, kernel start and shutdown
included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from tests import hostguard

_notebooks: dict[str, tuple[hostguard.Snapshot, float]] = {}
_notebook_times: list[tuple[str, float]] = []
_skipped: list[str] = []
_HAD_NETWORK = pytest.StashKey[bool]()
pytest_plugins = ["pytester"]


def pytest_configure(config):
    """Point the lab at a throw-away store before any kernel or subprocess starts; note
    whether the host has the lab's network already."""
    os.environ["LABKIT_HOME"] = tempfile.mkdtemp(prefix="labkit-test-")
    os.environ["LABKIT_PLAIN"] = "1"
    hostguard.become_subreaper()
    config.stash[_HAD_NETWORK] = hostguard.has_lab_network()


def pytest_unconfigure(config):
    """Remove the throw-away store, and the lab's network if the tests made it: the bridge,
    its table, and forwarding as it was."""
    shutil.rmtree(os.environ["LABKIT_HOME"], ignore_errors=True)
    if not config.stash.get(_HAD_NETWORK, True):
        from labkit.engine import networking

        networking.teardown()
    from labkit.engine import limiting

    limiting.remove_parent()  # the lab's parent cgroup, if no container's group is in it


def _check(before: hostguard.Snapshot, what: str) -> None:
    after = hostguard.take()
    found = hostguard.leaks(before, after)
    if found:
        hostguard.clear(before, after)
        pytest.fail(f"{what} leaked into the host:\n  " + "\n  ".join(found), pytrace=False)
    hostguard.reap_orphans()


@pytest.fixture(autouse=True)
def host_guard(request):
    """Fail the test that leaves a mount, process, netns, link or lab cgroup on the host."""
    before = hostguard.take()
    yield
    _check(before, request.node.nodeid)


def _is_cell(item) -> bool:
    return item.nodeid.split("::")[0].endswith(".ipynb")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    notebook = item.nodeid.split("::")[0]
    if _is_cell(item) and notebook not in _notebooks:
        _notebooks[notebook] = (hostguard.take(), time.monotonic())
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    notebook = item.nodeid.split("::")[0]
    last_cell = nextitem is None or nextitem.nodeid.split("::")[0] != notebook
    if _is_cell(item) and last_cell:
        before, started = _notebooks[notebook]
        _notebook_times.append((notebook, time.monotonic() - started))
        _check(before, notebook)
    return result


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under CI every prerequisite exists, so a skip hides a broken lesson: count it a failure."""
    if os.environ.get("CI") == "true" and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    for notebook, seconds in _notebook_times:
        terminalreporter.write_line(f"notebook time: {notebook} {seconds:.1f} s")
    if os.environ.get("CI") == "true" and _skipped:
        terminalreporter.write_line(f"CI=true: {len(_skipped)} skipped test(s) count as failures:")
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}")

