"""The C samples build clean, do what their lessons claim, and never outlive their timeout."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from labkit.engine import builds, store
from labkit.errors import LabError
from labkit.lessons import samples, terminal
from tests.conftest import LABKIT

LESSONS = ["01_plain_clone", "02_uts", "03_pid", "04_mount_proc", "04_mount_proc_naive",
           "06_chroot_escape", "07_net", "08_cgroup"]
# The samples that run a command: not the naive one, which may only run inside the sandbox
# (see test_sandbox.py), nor lesson 06's escape or lesson 08's eater.
HOST_SAFE = [*LESSONS[:4], "07_net"]
TAG = "LABKIT_TEST_TAG"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


@pytest.fixture
def tag(monkeypatch) -> str:
    """A unique mark in the environment that every process a sample starts inherits."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(TAG, value)
    return value


def _tagged(value: str) -> list[int]:
    """Every live process carrying the mark, found through /proc/PID/environ."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    if f"{TAG}={value}".encode() in environ.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:  # ended meanwhile, or a process root may not read (PID 1 here)
                continue
    return found


@pytest.fixture
def samples_dir(tmp_path, monkeypatch) -> Path:
    """A samples directory of our own, to edit and break (the shared header and sample 01),
    built into a store of our own."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "store"))
    directory = tmp_path / "c_samples"
    directory.mkdir()
    for name in ("common.h", "01_plain_clone.c"):
        shutil.copy(samples.SAMPLES_DIR / name, directory / name)
    return directory


# Building.


def test_the_samples_are_the_lessons_in_order():
    assert samples.names() == LESSONS


@pytest.mark.parametrize("name", LESSONS)
def test_every_sample_builds_without_a_warning(name):
    assert {"-Wall", "-Wextra", "-Werror"} <= set(builds.CFLAGS)
    binary = samples.build(name)
    assert binary.parent == builds.cache_dir()
    assert os.access(binary, os.X_OK)


def test_a_build_is_cached_in_the_store(samples_dir):
    first = samples.build("01_plain_clone", samples_dir=samples_dir)
    again = samples.build("01_plain_clone", samples_dir=samples_dir)
    assert first == again
    assert first.stat().st_mtime_ns == again.stat().st_mtime_ns
    assert first.is_relative_to(store.home())
    store.reading()  # the cache made a proper store, one the image commands accept


def test_editing_the_source_or_the_header_or_the_flags_rebuilds(samples_dir, monkeypatch):
    source, header = samples_dir / "01_plain_clone.c", samples_dir / "common.h"
    binaries = [samples.build("01_plain_clone", samples_dir=samples_dir)]
    source.write_text(source.read_text().replace("start a container", "start a box"))
    binaries.append(samples.build("01_plain_clone", samples_dir=samples_dir))
    header.write_text(header.read_text() + "\n/* an edit */\n")
    binaries.append(samples.build("01_plain_clone", samples_dir=samples_dir))
    monkeypatch.setattr(builds, "CFLAGS", (*builds.CFLAGS, "-O0"))
    binaries.append(samples.build("01_plain_clone", samples_dir=samples_dir))
    assert len(set(binaries)) == 4
    result = samples.run("01_plain_clone", ["true"], samples_dir=samples_dir)
    assert "Parent - start a box!" in result.stdout


# What each lesson claims.


def test_plain_clone_prints_once_each_even_through_a_pipe():
    result = samples.run("01_plain_clone", ["true"])
    assert (result.stdout, result.stderr, result.exit_code) == (
        "Parent - start a container!\nContainer - inside the container!\n"
        "Parent - container stopped!\n", "", 0)


def test_plain_clone_shares_the_hosts_hostname_and_processes():
    result = samples.run("01_plain_clone", ["sh", "-c", "hostname; echo $$; ps -e -o pid="])
    hostname, pid, *listed = _lines(result.stdout)[2:-1]
    assert hostname == socket.gethostname()
    assert pid != "1"
    assert str(os.getpid()) in listed


def test_uts_sample_renames_only_its_own_hostname():
    before = socket.gethostname()
    result = samples.run("02_uts", ["hostname"])
    assert "container" in _lines(result.stdout)
    assert socket.gethostname() == before != "container"


def test_pid_sample_child_is_pid_1_but_sees_the_hosts_processes():
    result = samples.run("03_pid", ["sh", "-c", "echo $$; ps -e -o pid="])
    lines = _lines(result.stdout)
    assert lines[lines.index("Container [    1] - inside the container!") + 1] == "1"
    assert str(os.getpid()) in lines  # ps reads the host's /proc: the host's pids show
    outside = [line for line in lines if "the container's PID 1 is pid" in line]
    assert len(outside) == 1 and not outside[0].endswith("pid 1 out here")


def test_net_sample_sees_only_its_own_loopback_switched_off():
    result = samples.run("07_net", ["cat", "/proc/net/dev"])
    lines = result.stdout.splitlines()
    assert "Container - my interfaces: lo (DOWN)" in lines[1:3]  # the two print at once
    assert [line for line in lines[1:3] if re.fullmatch(r"Parent - the container's pid is \d+",
                                                         line)]
    devices = [line.split(":")[0].strip() for line in lines if ":" in line and "|" not in line
               and not line.startswith(("Container", "Parent"))]
    assert devices == ["lo"]  # /proc/net is the reader's namespace's: the host's eth0 is gone


def test_cgroup_sample_s_child_is_killed_by_the_oom_killer_and_the_group_goes():
    result = samples.run("08_cgroup", ["16"])
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    made = re.fullmatch(r"Parent - cgroup (\S+) made \((v1|v2)\), \S+ = 16 MB", lines[0])
    assert made, lines
    assert "Parent - the child was killed by signal 9 (Killed)" in lines
    assert re.fullmatch(r"Parent - memory\.\S+ says: oom_kill [1-9]\d*", lines[-1])
    assert not Path(made[1]).exists()


def test_mount_proc_sample_lists_only_the_containers_processes():
    result = samples.run("04_mount_proc", ["sh", "-c", "ps -e -o pid=,comm=; exit 0"])
    listed = [line.split() for line in _lines(result.stdout) if line[:1].isdigit()]
    assert listed == [["1", "sh"], ["2", "ps"]]
    assert os.readlink("/proc/self") == str(os.getpid())  # the host's /proc is untouched


def test_default_command_is_bash():
    transcript = samples.session("02_uts", ["echo $0", "exit"])
    assert "/bin/bash" in _lines(transcript.text)


def test_exit_status_is_passed_on_like_a_shell():
    assert samples.run("01_plain_clone", ["sh", "-c", "exit 7"]).exit_code == 7
    assert samples.run("01_plain_clone", ["sh", "-c", "kill -9 $$"]).exit_code == 128 + 9


# Replaying a terminal session.


def test_session_shows_each_typed_command_then_its_output():
    transcript = samples.session("02_uts", ["hostname", "echo typed-$((6 * 7))", "exit 3"])
    lines = _lines(transcript.text)
    typed_hostname = next(i for i, line in enumerate(lines) if line.endswith("# hostname"))
    typed_echo = next(i for i, line in enumerate(lines) if line.endswith("typed-$((6 * 7))"))
    assert lines[typed_hostname + 1] == "container"
    assert lines[typed_echo + 1] == "typed-42"
    assert (transcript.exit_code, transcript.timed_out) == (3, False)


def test_a_session_s_terminal_has_a_window_s_size_which_even_a_dumb_terminal_reports():
    transcript = terminal.replay(["sh", "-c", 'stty size; echo "$COLUMNS x $LINES"'], [])
    assert transcript.text.splitlines() == [f"{terminal.ROWS} {terminal.COLUMNS}",
                                            f"{terminal.COLUMNS} x {terminal.ROWS}"]
    assert terminal.COLUMNS > 80


def test_a_line_waits_for_a_prompt_that_comes_late():
    """A slow machine's shell may print its prompt seconds after its last output."""
    transcript = terminal.replay(["sh", "-c", 'sleep 2; printf "$ "; read line; '
                                              'echo "typed: $line"'], ["hello"])
    assert transcript.text == "$ hello\ntyped: hello\n"


def test_a_cursor_query_is_answered_as_a_terminal_would_and_left_out():
    transcript = terminal.replay(["bash", "-c", r'printf "\e[6n"; IFS= read -rs -d R pos; '
                                                r'echo "at ${pos#*[}"'], [])
    assert transcript.text == "at 1;1\n"


def test_session_ps_aux_in_mount_proc_sample_shows_only_the_container():
    text = samples.session("04_mount_proc", ["ps aux", "exit"]).text
    lines = text.splitlines()
    typed = next(i for i, line in enumerate(lines) if line.endswith("ps aux"))
    prompt = lines[typed].removesuffix("ps aux")
    rows = []
    for line in lines[typed + 2:]:  # after the header
        if line.startswith(prompt):
            break
        rows.append(line.split(None, 10))
    assert [row[10] for row in rows] == ["/bin/bash", "ps aux"]
    assert rows[0][1] == "1"


# Nothing outlives a run.


def test_a_tagged_process_is_found_while_it_lives(tag):
    """The proof below is only as good as _tagged: it must see a process that is alive.

    Popen returns once the exec has closed its close-on-exec pipe, which the kernel does before
    it has set up the new program's environment: for a moment /proc/PID/environ is empty."""
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        deadline = time.monotonic() + 10
        while (found := _tagged(tag)) != [sleeper.pid] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert found == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()


JOBS = "sleep 1000 & setsid sleep 1000 & (sleep 1000 &); echo started"


@pytest.mark.parametrize("name", ["01_plain_clone", "04_mount_proc"])
def test_timeout_kills_every_process_the_sample_started(name, tag):
    result = samples.run(name, ["sh", "-c", f"{JOBS}; wait"], timeout=2)
    assert result.timed_out
    assert "started" in _lines(result.stdout)
    assert _tagged(tag) == []


def test_jobs_left_behind_are_killed_when_the_sample_ends(tag):
    result = samples.run("01_plain_clone", ["sh", "-c", JOBS])
    assert (result.exit_code, result.timed_out) == (0, False)
    assert _tagged(tag) == []


def test_session_jobs_are_killed_when_the_shell_exits(tag):
    transcript = samples.session("02_uts", ["sleep 1000 &", "setsid sleep 1000 &", "exit"])
    assert (transcript.exit_code, transcript.timed_out) == (0, False)
    assert _tagged(tag) == []


def test_session_that_never_exits_times_out_and_leaves_nothing(tag):
    transcript = samples.session("01_plain_clone", ["sleep 1000 &", "echo job $!"], timeout=2)
    assert transcript.timed_out
    assert any(line.startswith("job ") for line in _lines(transcript.text))
    assert _tagged(tag) == []


# Bad input: one clear line each.


def test_unknown_sample_names_the_known_ones():
    with pytest.raises(LabError) as error:
        samples.run("05_nope", ["true"])
    assert str(error.value) == f"no sample named '05_nope'; the samples are: {', '.join(LESSONS)}"


def test_missing_gcc_is_one_clear_line(samples_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LabError) as error:
        samples.build("01_plain_clone", samples_dir=samples_dir)
    assert str(error.value) == "gcc is not on PATH: install it (apt-get install gcc) and try again"
    assert not store.home().exists()  # found out before anything was written


def test_syntax_error_carries_gccs_message_and_leaves_no_binary(samples_dir):
    (samples_dir / "01_plain_clone.c").write_text('#include "common.h"\nint main(void) { }}\n')
    with pytest.raises(builds.BuildError) as error:
        samples.build("01_plain_clone", samples_dir=samples_dir)
    message = str(error.value)
    assert message.splitlines()[0] == "gcc could not compile 01_plain_clone.c:"
    assert "01_plain_clone.c:2:" in message and "error:" in message
    assert list(store.home().rglob("01_plain_clone*")) == []  # no binary, not even half of one


@pytest.mark.parametrize("name", HOST_SAFE)
def test_a_command_that_does_not_exist_exits_127_with_strerror(name):
    result = samples.run(name, ["no-such-command"])
    assert result.exit_code == 127
    assert "no-such-command: No such file or directory" in _lines(result.stderr)


def test_a_command_that_cannot_be_executed_exits_126(tmp_path):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    result = samples.run("02_uts", [str(script)])
    assert result.exit_code == 126
    assert f"{script}: Permission denied" in _lines(result.stderr)


def test_the_samples_verb_lists_builds_and_runs_them():
    listed = subprocess.run([LABKIT, "samples"], capture_output=True, text=True, check=True)
    assert "02_uts" in listed.stdout.split()
    built = subprocess.run([LABKIT, "samples", "build", "02_uts"], capture_output=True,
                           text=True, check=True)
    assert os.access(built.stdout.strip(), os.X_OK)
    ran = subprocess.run([LABKIT, "samples", "run", "02_uts", "sh", "-c", "hostname; exit 3"],
                         capture_output=True, text=True)
    assert ran.returncode == 3 and "container" in ran.stdout.splitlines()


def test_the_samples_verb_refuses_an_unknown_sample_in_one_line():
    ran = subprocess.run([LABKIT, "samples", "run", "99_nothing"], capture_output=True, text=True)
    assert ran.returncode == 1
    assert ran.stderr.count("\n") == 1 and "no sample named '99_nothing'" in ran.stderr


def test_the_naive_sample_runs_only_in_the_sandbox():
    with pytest.raises(LabError, match="only runs in the sandbox"):
        samples.run("04_mount_proc_naive", ["true"])
    assert samples.run("04_mount_proc_naive", ["true"], sandbox=True).exit_code == 0
