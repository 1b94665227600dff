"""``labkit reset``: after a messy lab, one command, and ``labkit doctor`` passes again.

The mess is real, made with the lab's own commands in a store of the test's own (reset empties
the store it is pointed at): containers running detached, one whose monitor was killed with -9
(its container runs on, unwatched), an image build killed half-way, and an overlay mount left on
a container's directory. That mount is made in a throw-away mount namespace, private first, and
reset runs in the same one: the host never holds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labkit.engine import bridge, nat
from labkit.errors import NEEDS_ROOT
from labkit.kernel.process import stat
from tests.conftest import AS_NOBODY, LABKIT

STORE_ENTRIES = ["containers", "images", "labkit-store", "layers", "lock", "tmp"]

# In a fresh mount namespace: leave an overlay mounted on a container's directory, as a runtime
# killed mid-way would, check it is there, reset, and count the mounts left under the store.
LEAK_THEN_RESET = """
store=$1 layer=$2 container=$3
mkdir -p "$container/merged"  # the runtime made it, if the container ever ran
mount -t overlay overlay \
    -o "lowerdir=$layer,upperdir=$container/upper,workdir=$container/work" "$container/merged"
grep -q " $container/merged " /proc/self/mountinfo || exit 99
"$LABKIT" reset || exit
echo "mounts left under the store: $(grep -c " $store/" /proc/self/mountinfo)"
"""


@pytest.fixture
def env(tmp_path) -> Iterator[dict[str, str]]:
    """The environment of a lab whose store is the test's; whatever it left running is killed."""
    store = tmp_path / "store"
    yield {**os.environ, "LABKIT_HOME": str(store), "LABKIT": LABKIT}
    for process in psutil.process_iter(["cmdline"]):
        if any(str(store) in arg for arg in process.info["cmdline"] or ()):
            process.kill()


def labkit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LABKIT, *args], env=env, capture_output=True, text=True, timeout=120)


def ok(env: dict[str, str], *args: str) -> str:
    result = labkit(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def state(env: dict[str, str], container_id: str) -> dict:
    return json.loads((Path(env["LABKIT_HOME"]) / "containers" / container_id / "state.json")
                      .read_text())


def running(pid: int, start: int) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (not a reused pid), and
    not dead already, a zombie waiting for its parent to collect its exit status."""
    try:
        return stat(pid).start_time == start and psutil.Process(pid).status() != "zombie"
    except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
        return False


def images(env: dict[str, str]) -> list[list[str]]:
    """``labkit images`` as [repository, tag] pairs."""
    return [line.split()[:2] for line in ok(env, "images").splitlines()[1:]]


def kill_build_half_way(env: dict[str, str]) -> None:
    """Build the base image anew and SIGKILL the build once its root filesystem is made: no
    layer, no image config, the half-made tree left in tmp/."""
    store = Path(env["LABKIT_HOME"])
    (store / "images/busybox/latest.json").unlink()  # or the build would find nothing to do
    build = subprocess.Popen([LABKIT, "image", "build-base"], env=env, stdout=subprocess.PIPE,
                             text=True)
    for line in build.stdout:
        if "hash the root filesystem" in line:
            build.kill()
            break
    build.communicate()
    assert build.returncode == -signal.SIGKILL
    assert list((store / "tmp").iterdir())
    assert "No images yet" in ok(env, "images")


def test_reset_after_a_messy_lab_leaves_a_clean_one_and_doctor_passes(env):
    ok(env, "image", "build-base")
    web = ok(env, "run", "-d", "--name", "web", "busybox", "sleep", "600").strip()
    loose = ok(env, "run", "-d", "--name", "loose", "busybox", "sh", "-c", "sleep 600").strip()
    ok(env, "run", "--name", "done", "busybox", "true")
    [exited] = json.loads(ok(env, "inspect", "done"))
    done = Path(env["LABKIT_HOME"]) / "containers" / exited["id"]
    inits = [(state(env, cid)["init_pid"], state(env, cid)["init_start"]) for cid in (web, loose)]
    os.kill(state(env, loose)["monitor_pid"], signal.SIGKILL)  # its container runs on, unwatched
    assert " Dead " in ok(env, "ps", "-a")
    assert all(running(*init) for init in inits)
    layer = next((Path(env["LABKIT_HOME"]) / "layers").iterdir()) / "diff"
    kill_build_half_way(env)

    sandbox = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                              LEAK_THEN_RESET, "sandbox", env["LABKIT_HOME"], str(layer),
                              str(done)],
                             env=env, capture_output=True, text=True, timeout=120)

    assert sandbox.returncode == 0, sandbox.stdout + sandbox.stderr
    lines = sandbox.stdout.splitlines()
    assert lines[0] == "stopped 2 containers: loose, web"
    assert lines[1] == f"unmounted 1 mount: {done}/merged"
    assert lines[2] == (f"emptied the store {env['LABKIT_HOME']} "
                        f"(cache, containers, images, layers, tmp)")
    assert {"removed the nftables table inet labkit", "removed the bridge labkit0"} <= set(
        lines[3:-3])  # the containers made them; the killed one's address is released
    assert not bridge.SYSFS.exists() and not nat.exists()
    assert not [path for cid in (web, loose) for path in Path("/sys/fs/cgroup").glob(
        f"*/labkit/{cid}")]  # the groups went with the containers, the killed one's too
    assert lines[-3].startswith("built busybox:latest ")
    assert lines[-2:] == ["the lab is as new; labkit doctor checks the machine",
                          "mounts left under the store: 0"]
    assert not any(running(*init) for init in inits)
    assert sorted(os.listdir(env["LABKIT_HOME"])) == STORE_ENTRIES
    assert ok(env, "ps", "-a").splitlines()[1:] == []
    assert images(env) == [["busybox", "latest"]]
    assert labkit(env, "doctor").returncode == 0
    assert ok(env, "run", "--rm", "busybox", "echo", "a fresh lab") == "a fresh lab\n"


def test_reset_of_a_clean_lab_keeps_the_same_base_image(env):
    first = ok(env, "image", "build-base").splitlines()[-1]
    output = ok(env, "reset").splitlines()
    assert output[0] == "no container was running"
    assert output[1] == f"emptied the store {env['LABKIT_HOME']} (containers, images, layers, tmp)"
    digest = first.split()[2]  # built busybox:latest DIGEST (SIZE)
    assert output[-2].startswith(f"built busybox:latest {digest} ")


def test_reset_refuses_a_directory_that_is_not_a_store_and_removes_nothing(tmp_path, env):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    result = labkit({**env, "LABKIT_HOME": str(precious)}, "reset")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"labkit: LABKIT_HOME={precious} is a directory that is "
                                    "neither empty nor a labkit store")
    assert len(result.stderr.splitlines()) == 1
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_reset_needs_root_and_touches_nothing_without_it(env, public_lab):
    ok(env, "image", "build-base")
    before = sorted(os.listdir(env["LABKIT_HOME"]))
    result = subprocess.run([*AS_NOBODY, public_lab / "labkit-command", "reset"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"labkit: {NEEDS_ROOT}"]
    assert sorted(os.listdir(env["LABKIT_HOME"])) == before
    assert images(env) == [["busybox", "latest"]]
