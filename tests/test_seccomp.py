"""The seccomp filter: what the container's root may no longer even ask the kernel for.

A static C probe makes each refused system call by number, inside a real container, and prints
the errno it got; a shell tries the escape the filter closes (a user namespace in which the
container's root has every capability again, and mounts). Each is seen to work, or to fail
differently, without the filter: the filter is what stops it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from containers_support import assert_one_line, labkit, removing_new_containers, store_files

from labkit.engine import seccomp, store
from labkit.engine.builds import static_init
from labkit.runtime.api import run
from labkit.runtime.container import steps_for

ESCAPE = ("unshare -U -r -m sh -c 'grep CapEff /proc/self/status; "
          "mount -t tmpfs probe /tmp && echo mounted'")

# Each call with arguments that would succeed, or fail for another reason than seccomp's EPERM.
PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s %s\n", name, result == -1 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    report("unshare", syscall(SYS_unshare, CLONE_NEWUSER));
    report("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    report("clone3", syscall(SYS_clone3, 0, 0));
    report("setns", syscall(SYS_setns, 0, 0));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -3));
    report("bpf", syscall(SYS_bpf, 0, 0, 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, 0, 0));
    report("mount", syscall(SYS_mount, "none", "/", 0, 0, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    pid_t child = fork();  /* a plain fork is a clone too: it must still work */
    if (child == 0) _exit(0);
    report("fork", child < 0 ? -1 : waitpid(child, 0, 0));
    return 0;
}
"""
REFUSED = ["unshare", "clone_newuser", "setns", "keyctl", "add_key", "bpf", "kexec_load",
           "open_by_handle_at", "mount", "perf_event_open", "userfaultfd"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("probe")
    (directory / "probe.c").write_text(PROBE)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(directory / "probe"),
                    str(directory / "probe.c")], check=True)
    return directory


def in_container(base_image, tmp_path: Path, command: list[str], *, filtered: bool,
                 volumes=()) -> subprocess.CompletedProcess:
    lab = store.reading()
    layers = [lab.layer_tree(digest) for digest in reversed(lab.image(base_image).layers)]
    for name in ("upper", "work"):
        (tmp_path / name).mkdir(parents=True)
    steps = steps_for(layers, tmp_path / "upper", tmp_path / "work", "filtered",
                      volumes=volumes, init=static_init(),
                      seccomp=seccomp.compile_profile() if filtered else None)
    return run(command, steps, env={"PATH": "/bin"}, timeout=60)


def test_every_refused_call_gets_eperm_and_clone3_enosys(base_image, tmp_path, probe):
    result = in_container(base_image, tmp_path, ["/probe/probe"], filtered=True,
                          volumes=[(probe, "/probe", True)])
    assert result.exit_code == 0, result.stderr
    answers = dict(line.split() for line in result.stdout.splitlines())
    assert {name: answers[name] for name in REFUSED} == dict.fromkeys(REFUSED, "EPERM")
    assert answers["clone3"] == "ENOSYS"  # so the C library falls back to clone, which is judged
    assert answers["fork"] == "ok"


def test_without_the_filter_the_same_calls_get_through(base_image, tmp_path, probe):
    result = in_container(base_image, tmp_path, ["/probe/probe"], filtered=False,
                          volumes=[(probe, "/probe", True)])
    answers = dict(line.split() for line in result.stdout.splitlines())
    assert answers["unshare"] == "ok" and answers["keyctl"] == "ok"
    assert answers["clone3"] != "ENOSYS"


def test_the_filter_closes_the_user_namespace_escape(base_image, tmp_path):
    escaped = in_container(base_image, tmp_path / "open", ["sh", "-c", ESCAPE], filtered=False)
    assert escaped.exit_code == 0 and "mounted" in escaped.stdout, escaped.stderr
    assert "CapEff:\t000001ffffffffff" in escaped.stdout  # every capability, in the new userns
    refused = in_container(base_image, tmp_path / "closed", ["sh", "-c", ESCAPE], filtered=True)
    assert refused.exit_code != 0 and "mounted" not in refused.stdout
    assert "Operation not permitted" in refused.stderr


@pytest.fixture
def tidy(base_image):
    with removing_new_containers():
        yield


def test_labkit_run_and_exec_are_filtered_unless_unconfined(tidy):
    assert labkit("run", "-d", "--name", "guarded", "busybox", "sleep", "1000").returncode == 0
    assert labkit("run", "-d", "--name", "open", "--security-opt", "seccomp=unconfined",
                  "busybox", "sleep", "1000").returncode == 0
    for name, filtered in (("guarded", True), ("open", False)):
        for verb in (["run", "--rm", *(["--security-opt", "seccomp=unconfined"]
                                       if not filtered else []), "busybox"], ["exec", name]):
            done = labkit(*verb, "sh", "-c", ESCAPE)
            assert ("mounted" in done.stdout) is not filtered, (verb, done)
    shown = json.loads(labkit("inspect", "guarded", "open").stdout)
    assert [container["config"]["seccomp"] for container in shown] == ["default", "unconfined"]


@pytest.mark.parametrize("option", ["seccomp=/etc/profile.json", "apparmor=unconfined",
                                    "seccomp", "label=disable"])
def test_an_unknown_security_option_is_one_line_and_makes_nothing(tidy, option):
    before = store_files()
    assert_one_line(labkit("run", "--security-opt", option, "busybox", "true"), 125,
                    "invalid --security-opt", option)
    assert store_files() == before
