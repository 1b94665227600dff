"""Lesson 06: images and containers. docker's commands re-read with the lab's own, then
``chroot`` against ``pivot_root``.

The notebook drives real containers through ``labkit.engine.containers`` and the ``labkit`` command;
this module holds what it needs besides: a replayed terminal for the command line, a look at a
container's root mount, a chroot jail to escape from, the claims and the exercise.

Everything the lesson makes is named so it can be found again: containers ``l06-...``, images
``lab06/...``. ``clean_up()`` removes them, at the start (what an interrupted run left) and at
the end. The claims take plain data (mount options, namespace pairs, layer listings, output),
so the tests can run each one on the real thing and on a wrong input, and see it fail.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from labkit.engine import containers, layers, store
from labkit.errors import LabError
from labkit.kernel import process, procfs
from labkit.kernel.procfs import Mount, NamespacePair
from labkit.lessons import samples
from labkit.lessons import workspace as workspace_files
from labkit.lessons.checks import Exercise, expect
from labkit.lessons.terminal import Transcript, replay
from labkit.lessons.union_filesystems import busybox_image, lowers_of
from labkit.runtime.steps.hardening import last_capability
from labkit.show import Table

CONTAINER_PREFIX = "l06-"
REPOSITORY_PREFIX = "lab06/"
ISOLATED = ("ipc", "mnt", "net", "pid", "uts")  # docker run --network none: loopback only
ESCAPE = "06_chroot_escape"  # the C sample that climbs out of a chroot
ESCAPE_SOURCE = samples.SAMPLES_DIR / f"{ESCAPE}.c"
SESSION_SECONDS = 60
CURSOR_QUERY = "\x1b[6n"


def clean_up() -> list[str]:
    """Remove the lesson's containers (``l06-...``, even running) and then its images
    (``lab06/...``); return what was removed, and what was kept and why."""
    removed = []
    for container in containers.ps(all=True):
        if container.name.startswith(CONTAINER_PREFIX):
            containers.rm(container.id, force=True)
            removed.append(container.name)
    for image in store.reading().images():
        if image.repository.startswith(REPOSITORY_PREFIX):
            try:
                containers.rmi(image.reference)
            except LabError as refusal:  # a container not named l06-... uses it
                removed.append(f"kept {image.reference}: {refusal}")
                continue
            removed.append(image.reference)
    return removed


def tidy_earlier_run() -> str:
    """At the start: remove what an interrupted earlier run of the notebook left, and say so."""
    removed = clean_up()
    return (f"removed what an earlier run left: {', '.join(removed)}" if removed
            else "an earlier run left nothing: the lesson starts clean")


def finish(workspace: Path) -> str:
    """At the end: the lesson's containers and images (the exercise's included), then its
    files; what each removed, safe to run twice."""
    removed = clean_up()
    return "\n".join([f"removed {', '.join(removed)}" if removed
                       else "no container or image of the lesson is left",
                       workspace_files.remove(workspace)])


def session(typed: Sequence[str]) -> Transcript:
    """A shell on a terminal, with ``labkit`` on its PATH, ``typed`` a line at a prompt."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', os.defpath)}"
    return replay(["env", f"PATH={path}", "PS1=$ ", "sh"], typed, timeout=SESSION_SECONDS)


def root_mount(container: containers.Container) -> Mount:
    """The mount that is ``/`` for the container's processes, as its PID 1 sees it."""
    table = procfs.mounts(container.state.init_pid)
    return next(mount for mount in reversed(table) if mount.mount_point == "/")


def base_image() -> store.Image:
    """busybox, built first if this lab has none yet (lesson 05 built it already, usually)."""
    return busybox_image()[1]


def layer_dirs(image: store.Image) -> list[Path]:
    """The image's layer directories, top first: the order of overlay's lowerdir=."""
    return lowers_of(store.reading(), image)


def upper_dir(container: containers.Container) -> Path:
    return store.reading().container_dir(container.id) / store.UPPER


def still_running(container: containers.Container) -> bool:
    """Whether the container's PID 1, that very process (its start time tells), still runs."""
    try:
        init = process.stat(container.state.init_pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    return init.running and init.start_time == container.state.init_start


def options_table(mount: Mount) -> Table:
    """The directories an overlay stacks, one a row: its lowers top first, upper, work."""
    rows = []
    for option in mount.super_options:
        name, _, value = option.partition("=")
        if name == "lowerdir":
            rows += [[f"lowerdir {number}", lower]
                     for number, lower in enumerate(value.split(":"), 1)]
        elif name in ("upperdir", "workdir"):
            rows.append([name, value])
    return Table(f"{mount.fs_type} mounted on {mount.mount_point}", ["option", "directory"],
                 rows, note="lowerdir 1 is the top read-only layer")


def layers_table(image: store.Image, parent: store.Image) -> Table:
    """The image's layers, top first: which are its parent's, which is new, and where."""
    lab = store.reading()
    rows = [[store.short(digest), "its parent's" if digest in parent.layers else "new",
             str(lab.layer_tree(digest))] for digest in reversed(image.layers)]
    return Table(f"{image.reference}, top first", ["layer", "from", "directory"], rows,
                 note=f"the parent is {parent.reference}")


# ---------------------------------------------------------------------------------------------
# chroot against pivot_root


def escape_program() -> Path:
    """The chroot escape, compiled (static) once and cached like the C samples."""
    return samples.build(ESCAPE, static=True)


def make_jail(root: Path, escape: Path) -> Path:
    """A directory to chroot into: a copy of busybox as its shell, and the escape program."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    shutil.copy2(escape, root / "escape")
    return root


def chroot_session(jail: Path, typed: Sequence[str]) -> Transcript:
    """A shell chroot'ed into ``jail``, in a sandbox: a child in a mount namespace of its own,
    made private first, so nothing done in it can reach the host's mounts.

    At each prompt busybox's shell asks the terminal where its cursor is (``ESC [6n``); a
    replay has no cursor to tell, so the question is left out of the transcript.
    """
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "chroot", str(jail), "/bin/sh"]
    session = replay(argv, typed, timeout=SESSION_SECONDS)
    return replace(session, text=session.text.replace(CURSOR_QUERY, ""))


def escape_in_container(escape: Path, *paths: str) -> containers.Outcome:
    """The same program, bind-mounted read-only into a lab container, run there."""
    return containers.run("busybox", ["/escape", *paths], volumes=[f"{escape}:/escape:ro"],
                          remove=True)


# The escape a seccomp filter closes: a user namespace, in which root has every capability
# again, and there a mount.
USERNS_ESCAPE = ("unshare -U -r -m sh -c 'grep CapEff /proc/self/status; "
                 "mount -t tmpfs mine /tmp && echo mounted a tmpfs'")


def user_namespace_escape(profile: str) -> containers.Outcome:
    """Try the escape in a lab container whose seccomp profile is ``profile``."""
    return containers.run("busybox", ["sh", "-c", USERNS_ESCAPE], remove=True,
                          security_opt=[f"seccomp={profile}"])


# ---------------------------------------------------------------------------------------------
# The claims


def expect_layers_plus_upper(root: Mount, lowers: Sequence[Path], upper: Path) -> None:
    options = set(root.super_options)
    expect("the container's / is an overlay: the image's read-only layers, top first, under "
           "the container's own upper directory",
           root.fs_type == "overlay" and f"lowerdir={':'.join(map(str, lowers))}" in options
           and f"upperdir={upper}" in options, (root.fs_type, root.super_options))


def expect_own_process_space(pairs: Sequence[NamespacePair]) -> None:
    own = sorted(pair.name for pair in pairs if not pair.same)
    expect(f"its processes live in namespaces of their own: {', '.join(ISOLATED)}",
           set(ISOLATED) <= set(own), own)


def expect_pid_1(nested_pids: Sequence[int]) -> None:
    expect("its first process is PID 1 inside, another pid on the host",
           len(nested_pids) == 2 and nested_pids[-1] == 1, nested_pids)


def expect_stop_keeps_upper(still_running: bool, diff: layers.LayerDiff, added: str,
                            deleted: str) -> None:
    expect(f"after stop no process is left, and the upper still holds /{added} and the "
           f"deletion of /{deleted}",
           not still_running and added in diff.added and deleted in diff.deleted,
           (still_running, diff))


def expect_listed(statuses: Mapping[str, str], name: str, upper: Path) -> None:
    expect(f"ps -a lists {name} as exited, and its upper directory is there",
           statuses.get(name) == store.EXITED and upper.is_dir(),
           (statuses.get(name), upper.is_dir()))


def expect_one_more_layer(parent: Sequence[str], child: Sequence[str]) -> None:
    expect("the new image is its parent's very layers, plus exactly one",
           len(child) == len(parent) + 1 and list(child[:-1]) == list(parent),
           (list(parent), list(child)))


def expect_layer_is_upper(layer: Mapping[str, str], upper: Mapping[str, str],
                          deleted: str) -> None:
    expect(f"the new layer holds exactly what the upper held, the whiteout of /{deleted} "
           f"included", dict(layer) == dict(upper) and layer.get(deleted) == layers.WHITEOUT,
           (dict(layer), dict(upper)))


def expect_committed_view(output: str, text: str, deleted: str) -> None:
    lines = output.splitlines()
    expect(f"a container of the new image sees the change, and not /{deleted}",
           lines[:1] == [text] and os.path.basename(deleted) not in lines[1:], output)


def expect_escaped(output: str, outside: str) -> None:
    expect(f"in a chroot, the escape reaches {outside}, outside the jail",
           f"{outside}: reachable" in output.splitlines(), output)


def expect_confined(output: str, outside: str) -> None:
    expect(f"after pivot_root, the same escape cannot reach {outside}",
           f"{outside}: not reachable" in output.splitlines(), output)


def expect_seccomp_stops_the_escape(unconfined: containers.Outcome,
                                    default: containers.Outcome) -> None:
    expect("without a seccomp filter the container's root makes a user namespace, gets every "
           "capability back and mounts; the default filter refuses the first call",
           "mounted a tmpfs" in unconfined.stdout and _every_capability() in unconfined.stdout
           and "mounted" not in default.stdout and "Operation not permitted" in default.stderr,
           (unconfined.stdout, default.stdout, default.stderr))


def _every_capability() -> str:
    """``CapEff`` of a process with every capability this kernel knows, as /proc shows it."""
    return f"CapEff:\t{(1 << (last_capability() + 1)) - 1:016x}"


# ---------------------------------------------------------------------------------------------
# The exercise


def _verify(answer) -> str | None:
    """None if ``answer`` names an image whose top layer, the commit's, holds the changed file
    and the whiteout of the deleted one: then every container of it shows both (lesson 05)."""
    if not isinstance(answer, dict) or set(answer) != {"image", "changed", "deleted"}:
        return 'answer with a dict: {"image": ..., "changed": ..., "deleted": ...}'
    try:
        image = store.reading().image(answer["image"])
    except LabError as error:
        return str(error)
    if image is None:
        return f"there is no image {answer['image']}: commit your container first"
    top = layers.entries(store.reading().layer_tree(image.layers[-1]))
    changed, deleted = (str(answer[key]).strip("/") for key in ("changed", "deleted"))
    if top.get(changed) not in (layers.FILE, layers.SYMLINK):
        return f"the top layer of {image.reference} holds no file /{changed}"
    if top.get(deleted) != layers.WHITEOUT:
        return (f"the top layer of {image.reference} has no whiteout for /{deleted}: delete "
                f"a file the image below holds")
    return None


EXERCISE = Exercise(
    question="Run a container of busybox that changes (or adds) one file and deletes another "
             "that busybox has, commit it as an image named lab06/..., run the new image to "
             'see both, and answer {"image": "lab06/...", "changed": "/path", '
             '"deleted": "/path"}.',
    verify=_verify,
    hint_text="containers.run(image, [\"sh\", \"-c\", \"...\"], name=\"l06-...\") runs a "
              "script; rm deletes; containers.commit(container, image) commits it. The "
              "check looks in the new layer for the changed file and for a whiteout.",
    solution_text='containers.run("busybox", ["sh", "-c", "echo mine > /etc/motd && '
                  'rm /etc/group"], name="l06-mine"); containers.commit("l06-mine", '
                  '"lab06/mine:v1"); answer = {"image": "lab06/mine:v1", '
                  '"changed": "/etc/motd", "deleted": "/etc/group"}',
)
