"""Bad input to the container verbs: one clear line each, docker's exit code, and nothing made.

``run`` and ``exec`` exit 125 when the lab refuses (a bad name, image, volume, container), 126
and 127 when the command cannot be executed or found; the other verbs exit 1. A refusal leaves
the store exactly as it was: every check comes before the first write.
"""

from __future__ import annotations

import pytest
from containers_support import assert_one_line, labkit, removing_new_containers, store_files

from labkit.engine import containers, names, store
from labkit.errors import LabError


@pytest.fixture(autouse=True)
def _remove_what_the_test_made(base_image):
    with removing_new_containers():
        yield


def assert_refused_and_nothing_made(args: list[str], exit_code: int, *words: str) -> None:
    before = store_files()
    assert_one_line(labkit(*args), exit_code, *words)
    assert store_files() == before


BAD_NAMES = {"../x": "../x", "..": "..", ".": ".", "a/b": "a/b", "empty": "",
             "one character": "x", "300 characters": "n" * 300, "a space": "my web"}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_run_refuses_a_bad_container_name(name):
    assert_refused_and_nothing_made(["run", "--name", name, "busybox", "true"], 125,
                                    "invalid container name", repr(name))


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
@pytest.mark.parametrize("verb", ["start", "stop", "rm", "logs", "inspect", "attach"])
def test_a_bad_name_finds_no_container_and_never_a_path(verb, name):
    assert_refused_and_nothing_made([verb, name], 1, "no such container")


def test_exec_into_an_unknown_container_exits_125():
    assert_refused_and_nothing_made(["exec", "nothing-here", "true"], 125, "no such container")


def test_a_container_directory_is_only_ever_made_from_an_id():
    lab = store.reading()
    for reference in ["../x", "..", "web", "g" * 64, "0" * 63, "0" * 65]:
        with pytest.raises(LabError, match="is not a container id"):
            lab.container_dir(reference)
    assert lab.container_dir("0" * 64) == store.home() / "containers" / ("0" * 64)


@pytest.mark.parametrize("reference", ["BusyBox", "busybox/../etc", "../busybox", "..",
                                       "busybox:..", "busybox:a/b"])
def test_run_refuses_a_bad_image_reference(reference):
    assert_refused_and_nothing_made(["run", reference, "true"], 125, "invalid image reference")


def test_run_refuses_an_unknown_image():
    assert_refused_and_nothing_made(["run", "nosuch", "true"], 125, "no such image: nosuch")


def test_run_refuses_a_duplicate_name():
    first = containers.run("busybox", ["true"], name="twin")
    assert first.exit_code == 0
    assert_refused_and_nothing_made(["run", "--name", "twin", "busybox", "true"], 125,
                                    "'twin' is already in use", names.short(first.id))


@pytest.mark.parametrize(("volume", "says"), [
    ("/no/such/dir:/data", "volume source /no/such/dir does not exist"),
    ("relative/dir:/data", "the host path must be absolute"),
    ("/tmp", "invalid volume"),
    ("/tmp:/data:rx", "invalid volume"),
    ("/tmp:data", "the container path must be absolute"),
])
def test_run_refuses_a_bad_volume(volume, says):
    assert_refused_and_nothing_made(["run", "-v", volume, "busybox", "true"], 125, says)


@pytest.mark.parametrize(("flags", "says"), [
    (["-e", "=value"], "invalid environment variable"),
    (["-h", "bad_host!"], "bad hostname"),
])
def test_run_refuses_a_bad_environment_or_hostname(flags, says):
    assert_refused_and_nothing_made(["run", *flags, "busybox", "true"], 125, says)


@pytest.mark.parametrize(("command", "exit_code", "says"), [
    ("no-such-command", 127, "no-such-command: command not found in PATH=/bin"),
    ("/etc/passwd", 126, "/etc/passwd: cannot execute it: Permission denied"),
])
def test_a_command_that_cannot_run_exits_126_or_127_in_run_and_exec(command, exit_code, says):
    assert_one_line(labkit("run", "--name", "cannot", "busybox", command), exit_code, says)
    assert containers.inspect("cannot").exit_code == exit_code
    # Detached too, as docker run -d: the start is over only once the command was exec'd.
    assert_one_line(labkit("run", "-d", "--name", "cannot-d", "busybox", command), exit_code,
                    says)
    assert containers.inspect("cannot-d").exit_code == exit_code
    box = containers.run("busybox", ["sleep", "1000"], detach=True)
    assert_one_line(labkit("exec", box.name, command), exit_code, says)


def test_exec_refuses_a_stopped_container_with_125():
    stopped = containers.run("busybox", ["true"], name="done")
    assert stopped.exit_code == 0
    assert_refused_and_nothing_made(["exec", "done", "true"], 125, "is not running")


def test_rm_refuses_a_running_container_without_f_and_stop_twice_succeeds():
    box = containers.run("busybox", ["sleep", "1000"], detach=True, name="busy")
    assert_refused_and_nothing_made(["rm", "busy"], 1, "cannot remove running container busy",
                                    "rm -f")
    assert containers.inspect("busy").status == "running"
    assert labkit("stop", "-t", "0", "busy").returncode == 0
    assert labkit("stop", "busy").returncode == 0
    assert labkit("start", "busy").returncode == 0
    removed = labkit("rm", "-f", "busy")
    assert (removed.returncode, removed.stdout) == (0, "busy\n")
    with pytest.raises(LabError, match="no such container"):
        containers.inspect(box.id)


def test_a_prefix_two_ids_share_is_refused():
    made = [containers.run("busybox", ["true"]) for _ in range(17)]  # 16 digits: two share one
    first_digits = [container.id[0] for container in made]
    shared = next(digit for digit in first_digits if first_digits.count(digit) > 1)
    assert_refused_and_nothing_made(["rm", shared], 1, "starts the ids of")


USAGE_ERRORS = {
    "a flag that takes a value, given a flag": (["run", "--name", "-x", "busybox", "true"],
                                                "labkit: run: argument --name: expected one"),
    "no image": (["run"], "labkit: run: the following arguments are required: image"),
    "a flag of a later lesson": (["run", "--user", "1000", "busybox", "true"],
                                 "labkit: run: unrecognized arguments: --user"),
    "an unknown verb": (["pull", "busybox"], "labkit: argument VERB: invalid choice: 'pull'"),
    "no verb": ([], "labkit: the following arguments are required: VERB"),
    "a bad number": (["stop", "-t", "soon", "web"], "labkit: stop: argument -t/--time: invalid"),
    "a verb with no container": (["rm"], "labkit: rm: the following arguments are required"),
}


@pytest.mark.parametrize(("args", "says"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_a_usage_error_is_one_line_and_exit_125_as_docker_says_it(args, says):
    assert_refused_and_nothing_made(args, 125, says, "--help")


@pytest.mark.parametrize("verb", [[], ["run"], ["image", "build-base"]])
def test_help_is_still_argparse_s_and_exits_0(verb):
    done = labkit(*verb, "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"usage: {' '.join(['labkit', *verb])}")
