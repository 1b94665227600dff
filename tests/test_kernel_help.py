"""A kernel of the lab, as lab.sh starts them: one line for a restart's NameError and for an
interrupt, never forty lines of subprocess internals. Driven by a real kernel client."""

from __future__ import annotations

import os
import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

from labkit.lessons import kernel_help
from tests.conftest import REPO


@pytest.fixture
def kernel():
    env = {**os.environ, "IPYTHONDIR": str(REPO / "jupyter" / "ipython")}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client, code: str, *, then=None, seconds: float = 60) -> tuple[str, list]:
    """Run ``code``; what it wrote on stderr, and its error messages' tracebacks."""
    message_id = client.execute(code)
    if then:
        then()
    stderr, tracebacks, deadline = "", [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != message_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and content["name"] == "stderr":
            stderr += content["text"]
        elif kind == "error":
            tracebacks.append(content["traceback"])
        elif kind == "status" and content["execution_state"] == "idle":
            return stderr, tracebacks
    raise AssertionError(f"the cell did not finish within {seconds} s")


def test_a_name_lost_to_a_restart_is_one_line_saying_what_to_do(kernel):
    _, client = kernel
    stderr, tracebacks = run(client, "lesson.EXERCISE")
    assert stderr.splitlines() == [kernel_help.RESTARTED.format(
        error="name 'lesson' is not defined")]
    assert all(line == [] for line in tracebacks)


def test_an_interrupted_experiment_is_one_line_and_leaves_nothing_running(kernel):
    manager, client = kernel
    code = ("from labkit.lessons import supervisor\n"
            "supervisor.run(['sleep', '30'], timeout=60)")
    stderr, tracebacks = run(client, code, then=lambda: (time.sleep(2),
                                                          manager.interrupt_kernel()))
    assert stderr.splitlines() == [kernel_help.INTERRUPTED]
    assert all(line == [] for line in tracebacks)


def test_a_name_error_inside_the_lab_keeps_its_traceback(kernel):
    _, client = kernel
    stderr, tracebacks = run(client, "def broken():\n    return missing\n\nbroken()")
    assert stderr == ""
    assert tracebacks and any("missing" in line for line in tracebacks[0])
