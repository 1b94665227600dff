"""Lesson 02: its checks hold in a UTS namespace and fail without the Hostname step."""

import socket
import subprocess
import sys

import pytest

from labkit.lessons import probe, samples, supervisor
from labkit.lessons import uts_namespace as lesson
from labkit.lessons.checks import ClaimFailed
from labkit.runtime import api
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.pid import PidNamespace

# Played by a throw-away UTS namespace (made by `unshare --uts`, never in pytest's own process):
# the runtime starts a command that renames its namespace, and the stand-in host reports its
# own name before and after. Without the Hostname step the rename would reach the real host.
_STAND_IN_HOST = """
import socket, sys
from labkit.runtime.api import run
from labkit.runtime.steps.hostname import Hostname
steps = [Hostname("container")] if sys.argv[1] == "with-step" else []
before = socket.gethostname()
run(["hostname", "renamed-by-the-command"], steps=steps)
print(before, socket.gethostname())
"""


def _host_names_around_a_rename(steps: str) -> tuple[str, str]:
    done = subprocess.run(["unshare", "--uts", sys.executable, "-c", _STAND_IN_HOST, steps],
                          capture_output=True, text=True, check=True, timeout=30)
    before, after = done.stdout.split()
    return before, after


def test_the_sample_renames_only_its_own_namespace():
    before = socket.gethostname()
    lesson.expect_hostname_inside(samples.run("02_uts", ["hostname"]).stdout.splitlines()[2],
                               "container")
    lesson.expect_host_keeps_its_name(before, socket.gethostname())
    run = samples.run("02_uts", probe.NS_PROBE)
    lesson.expect_only_uts_differs(probe.versus_host(probe.printed_ids(run.stdout)))


def test_the_hostname_check_passes_with_the_step_and_fails_without_it():
    lesson.expect_hostname_inside(
        api.run(["hostname"], steps=[Hostname("container")]).stdout.strip(), "container")
    with pytest.raises(ClaimFailed, match=socket.gethostname()):
        lesson.expect_hostname_inside(api.run(["hostname"], steps=[]).stdout.strip(), "container")


def test_the_host_keeps_its_name_only_when_the_step_gives_the_command_a_namespace():
    lesson.expect_host_keeps_its_name(*_host_names_around_a_rename("with-step"))
    with pytest.raises(ClaimFailed, match="renamed-by-the-command"):
        lesson.expect_host_keeps_its_name(*_host_names_around_a_rename("without-step"))


def test_exactly_the_uts_link_differs_with_the_step():
    lesson.expect_only_uts_differs(
        probe.versus_host(api.run(["true"], steps=[Hostname("container")]).namespaces))


@pytest.mark.parametrize("steps", [[], [Hostname("container"), PidNamespace()]],
                         ids=["without-the-step", "with-a-pid-namespace-too"])
def test_the_only_uts_check_fails_when_other_links_are_new_or_none_is(steps):
    pairs = probe.versus_host(api.run(["true"], steps=steps).namespaces)
    with pytest.raises(ClaimFailed):
        lesson.expect_only_uts_differs(pairs)


def test_without_cap_sys_admin_the_sample_is_refused_and_with_it_the_check_fails():
    binary = str(samples.build("02_uts"))
    refused = supervisor.run(["setpriv", "--bounding-set=-sys_admin", binary, "true"])
    lesson.expect_refused_without_cap_sys_admin(refused.exit_code, refused.stderr)
    allowed = supervisor.run([binary, "true"])
    with pytest.raises(ClaimFailed):
        lesson.expect_refused_without_cap_sys_admin(allowed.exit_code, allowed.stderr)


def test_the_uname_fields_differ_in_the_node_name_alone():
    inside = lesson.printed_fields(samples.run("02_uts", lesson.UNAME_PROBE).stdout)
    host = lesson.hosts_fields()
    assert inside.keys() == host.keys() == lesson.UNAME_FIELDS.keys()
    assert {field for field in host if host[field] != inside[field]} == {"hostname"}
    assert inside["hostname"] == "container"
    verdicts = {row[0]: row[-1].good for row in lesson.uname_table(inside).rows}
    assert verdicts.pop("nodename (hostname)") is False
    assert all(verdicts.values())


def _reason(answer) -> str:
    verdict = lesson.EXERCISE.check(answer)
    assert not verdict
    return verdict.message


def test_the_exercise_accepts_a_name_of_the_learners_own():
    assert lesson.EXERCISE.check(api.run(["hostname"], steps=[Hostname("my-box")]))


def test_the_exercise_rejects_a_run_without_the_step():
    assert "Hostname step" in _reason(api.run(["hostname"], steps=[]))


@pytest.mark.parametrize("wrong", ["my-box", None, {"uts"}])
def test_the_exercise_rejects_what_is_not_a_result(wrong):
    assert "Result that api.run" in _reason(wrong)


@pytest.mark.parametrize(("name", "why"), [("container", "lesson's name"),
                                           (socket.gethostname(), "machine's own hostname")])
def test_the_exercise_rejects_a_name_that_is_not_the_learners(name, why):
    assert why in _reason(api.run(["hostname"], steps=[Hostname(name)]))


def test_the_exercise_rejects_a_run_that_does_not_print_the_hostname():
    assert "['hostname']" in _reason(api.run(["true"], steps=[Hostname("my-box")]))


def test_the_exercise_rejects_a_failed_container():
    failed = api.run(["no-such-command"], steps=[Hostname("my-box")])
    assert "exit code 127" in _reason(failed)
