"""The container spec: it survives the trip to the launcher, and bad input is refused early.

These tests start no process: a spec is plain data, checked in the caller before any namespace
exists, so a mistake costs one clear line and nothing else.
"""

from __future__ import annotations

import json

import pytest

from labkit.errors import LabError
from labkit.kernel.syscalls import CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS
from labkit.runtime.spec import DEFAULT_PATH, Spec
from labkit.runtime.steps.hostname import Hostname
from labkit.runtime.steps.mounts import PrivateProc
from labkit.runtime.steps.pid import PidNamespace

ALL_STEPS = [Hostname("box-1.lab"), PidNamespace(), PrivateProc()]


def _refused(make) -> str:
    """The one-line message of the LabError ``make()`` raises, which must exit 125."""
    with pytest.raises(LabError) as raised:
        make()
    assert raised.value.exit_code == 125
    message = str(raised.value)
    assert message and "\n" not in message
    return message


def test_a_spec_survives_the_trip_through_json():
    spec = Spec(["sh", "-c", "echo hi"], ALL_STEPS, {"PATH": "/bin", "GREETING": "hi"}, 2.5)
    assert Spec.from_json(spec.to_json()) == spec


def test_a_spec_unshares_what_its_steps_need_and_nothing_else():
    assert Spec(["true"]).namespaces == 0
    assert Spec(["true"], ALL_STEPS).namespaces == CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS
    assert Spec(["true"], [PrivateProc()]).namespaces == CLONE_NEWNS


def test_a_container_starts_from_docker_s_path_not_the_caller_s_environment():
    assert Spec(["env"]).env == {"PATH": DEFAULT_PATH}


@pytest.mark.parametrize("command", [[], "hostname", ["ls", 3], [""], ["a\0b"], None])
def test_a_bad_command_is_refused(command):
    assert "command" in _refused(lambda: Spec(command))


def test_something_that_is_not_a_step_is_refused():
    assert "not a step" in _refused(lambda: Spec(["true"], ["Hostname('x')"]))


@pytest.mark.parametrize("env", [{"": "x"}, {"A=B": "x"}, {"A": 1}, {"A": "a\0b"}])
def test_a_bad_environment_is_refused(env):
    assert "environment variable" in _refused(lambda: Spec(["env"], env=env))


@pytest.mark.parametrize("timeout", [0, -1, "5"])
def test_a_bad_timeout_is_refused(timeout):
    assert "timeout" in _refused(lambda: Spec(["true"], timeout=timeout))


@pytest.mark.parametrize("name", ["", "a" * 65, "my host", "-lead", "a/b", "über", "dot\n"])
def test_a_bad_hostname_is_refused(name):
    assert "bad hostname" in _refused(lambda: Hostname(name))


def test_a_hostname_of_the_kernel_s_full_length_is_accepted():
    assert Hostname("a" * 64).name == "a" * 64


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"command": ["true"], "steps": [{}]}',
                                  '{"command": ["true"], "steps": [], "colour": "red"}'])
def test_text_that_is_not_a_spec_is_refused(text):
    assert "not a container spec" in _refused(lambda: Spec.from_json(text))


@pytest.mark.parametrize("step", [
    "os:system",                                          # outside the steps package
    "labkit.runtime.steps.mounts:make_mounts_private",    # inside it, but not a step
    "labkit.runtime.steps.mounts:Nothing",
])
def test_a_spec_names_only_step_classes(step):
    text = json.dumps({"command": ["true"], "steps": [{"step": step, "args": {}}]})
    assert "is not a step" in _refused(lambda: Spec.from_json(text))


def test_a_spec_s_steps_are_checked_again_on_arrival():
    text = Spec(["true"], [Hostname("ok")]).to_json().replace('"ok"', '"not ok"')
    assert "bad hostname" in _refused(lambda: Spec.from_json(text))
