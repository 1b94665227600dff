"""Launchers forked from the calling process (``forked.py``), as a container's monitor forks them.

pytest's own process must not fork itself (docs/safety.md rule 1), so each test runs its calls in a
fresh single-threaded Python process, as the monitor is, which prints what it saw as JSON; the
same containers started cold from here are the reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from labkit.runtime import api
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace
from tests.conftest import REPO

LESSON = [Hostname("forked"), PidNamespace(), PrivateProc()]

_PRELUDE = """
import dataclasses, fcntl, json, os, subprocess
from labkit.runtime import api
from labkit.runtime.spawn import forked
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace
LESSON = [Hostname("forked"), PidNamespace(), PrivateProc()]
"""


def in_fresh_process(body: str) -> dict:
    """Run ``body`` (after the imports above) in a new interpreter; what it printed, as JSON."""
    done = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(body)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_container_gives_the_same_result_forked_as_cold():
    command = ["sh", "-c", "hostname; echo $$; cat; echo oops >&2; exit 3"]
    seen = in_fresh_process(f"""
        result = api.run({command!r}, LESSON, input="typed\\n", spawn=forked.spawn)
        print(json.dumps(dataclasses.asdict(result)))
    """)
    cold = api.run(command, LESSON, input="typed\n")
    assert (seen["exit_code"], seen["stdout"], seen["stderr"], seen["error"]) == (
        cold.exit_code, cold.stdout, cold.stderr, cold.error) == (
        3, "forked\n2\ntyped\n", "oops\n", None)
    assert seen["namespaces"]["uts"] != os.stat("/proc/self/ns/uts").st_ino


def test_the_launcher_keeps_none_of_its_caller_s_descriptors(tmp_path):
    """The caller holds an flock, as the CLI holds the store's lock when it forks; once the
    caller lets go of it, nobody holds it, though the container still runs."""
    lock = tmp_path / "lock"
    seen = in_fresh_process(f"""
        held = open({str(lock)!r}, "w")
        fcntl.flock(held, fcntl.LOCK_EX)
        sleeper = api.start(["sleep", "60"], LESSON, spawn=forked.spawn)
        held.close()
        with open({str(lock)!r}) as again:
            try:
                fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free = True
            except BlockingIOError:
                free = False
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{{sleeper.pid}}/fd"))
        targets = [os.readlink(f"/proc/{{sleeper.pid}}/fd/{{fd}}") for fd in fds]
        sleeper.kill()
        print(json.dumps({{"free": free, "fds": fds, "targets": targets,
                          "exit_code": sleeper.wait()}}))
    """)
    assert seen["free"], "the forked launcher still holds its caller's lock"
    assert str(lock) not in seen["targets"]
    assert seen["fds"][:3] == [0, 1, 2] and len(seen["fds"]) <= 4, seen  # and the report pipe
    assert seen["exit_code"] == 137


def test_wait_with_a_timeout_says_so_and_a_signal_then_stops_the_container():
    seen = in_fresh_process("""
        sleeper = api.start(["sleep", "60"], LESSON, spawn=forked.spawn)
        try:
            sleeper.wait(timeout=0.2)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        sleeper.terminate()
        print(json.dumps({"timed_out": timed_out, "exit_code": sleeper.wait(timeout=60)}))
    """)
    assert seen == {"timed_out": True, "exit_code": 143}


def test_the_spec_s_timeout_kills_the_container_with_137_and_says_so():
    seen = in_fresh_process("""
        result = api.run(["sleep", "60"], LESSON, timeout=0.3, spawn=forked.spawn)
        print(json.dumps({"exit_code": result.exit_code, "error": result.error}))
    """)
    assert seen["exit_code"] == 137 and "timeout" in seen["error"]
