"""labkit.show: exact plain text for small fixed facts, colours in HTML and in rich."""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from labkit import show
from labkit.kernel.procfs import (
    MountDiff,
    NamespacePair,
    ProcessNode,
    diff_mounts,
    mounts,
    namespaces,
    parse_mount,
    process_tree,
)

PAIRS = (NamespacePair("ipc", "ipc", 11, 11), NamespacePair("uts", "uts", 12, 99))


def _process(pid, name, cmdline, nested, new=(), children=(), state="sleeping"):
    return ProcessNode(pid, 0, name, cmdline, state, nested, new, children)


TREE = _process(100, "unshare", ("unshare", "--pid", "--fork", "sh"), (100,),
                new=("pid_for_children",), children=(
    _process(101, "sh", ("sh", "-c", "sleep 1 & wait"), (101, 1), new=("pid",), children=(
        _process(102, "sleep", ("sleep", "1"), (102, 2)),
        _process(103, "true", (), (103, 3), state="zombie"),
    )),
    _process(104, "cat", ("cat", "a b"), (104,)),
))

BEFORE = (parse_mount(b"1 0 254:0 / / rw,relatime - ext4 /dev/vda rw"),
          parse_mount(b"2 1 0:21 / /proc rw - proc proc rw"))
AFTER = (parse_mount(b"5 0 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw"),
         parse_mount(b"6 5 0:40 / /mnt/my\\040dir rw - tmpfs scratch rw"))


@pytest.fixture
def rich_html(monkeypatch):
    """Views as a person in Jupyter sees them, not as tests usually ask for them."""
    monkeypatch.delenv("LABKIT_PLAIN", raising=False)


def test_namespaces_side_by_side_in_plain_text():
    assert str(show.namespaces(PAIRS, ("host", "container"))) == (
        "namespaces: host vs container\n"
        "namespace  host  container  verdict\n"
        "ipc        11    11         same\n"
        "uts        12    99         different\n"
        "1 of 2 shared"
    )


def test_a_process_tree_in_plain_text():
    assert str(show.process_tree(TREE)) == (
        "processes under pid 100\n"
        "100  unshare --pid --fork sh  new pid_for_children\n"
        "├── 101  sh -c 'sleep 1 & wait'  (pid 1 inside)  new pid\n"
        "│   ├── 102  sleep 1  (pid 2 inside)\n"
        "│   └── 103  true <defunct>  (pid 3 inside)\n"
        "└── 104  cat 'a b'"
    )


def test_a_mount_table_with_propagation_in_plain_text():
    assert str(show.mounts(AFTER, "inside")) == (
        "inside\n"
        "mount point  type   source    propagation  options\n"
        "/            ext4   /dev/vda  shared:1     rw,relatime\n"
        "/mnt/my dir  tmpfs  scratch   private      rw"
    )


def test_a_mount_diff_in_plain_text():
    assert str(show.mount_diff(diff_mounts(BEFORE, AFTER), ("host", "container"))) == (
        "mounts: host -> container\n"
        "change   mount point  type   source    what changed\n"
        "added    /mnt/my dir  tmpfs  scratch\n"
        "removed  /proc        proc   proc\n"
        "changed  /            ext4   /dev/vda  propagation private -> shared:1"
    )


def test_an_empty_mount_diff_says_so():
    assert str(show.mount_diff(MountDiff((), (), ()))).endswith(
        "the two mount tables are the same")


def test_a_process_picture_in_mermaid():
    assert str(show.process_picture(TREE.children[1])) == (
        "flowchart TD\n"
        "  classDef same fill:#e8f5e9,stroke:#2e7d32\n"
        "  classDef different fill:#ffebee,stroke:#c62828\n"
        '  p104["104 cat"]'
    )
    source = str(show.process_picture(TREE))
    assert '  p101["101 sh<br/>pid 1 inside<br/>new pid"]\n  class p101 different' in source
    assert '  p103["103 true<br/>pid 3 inside"]' in source
    assert [line for line in source.splitlines() if "-->" in line] == [
        "  p100 --> p101", "  p100 --> p104", "  p101 --> p102", "  p101 --> p103"]


def test_a_namespace_picture_in_mermaid():
    assert str(show.namespace_picture(PAIRS, ("host", 'the "box"'))) == (
        "flowchart LR\n"
        "  classDef same fill:#e8f5e9,stroke:#2e7d32\n"
        "  classDef different fill:#ffebee,stroke:#c62828\n"
        '  left["host"]\n'
        '  right["the #quot;box#quot;"]\n'
        '  n0(["ipc 11"])\n'
        "  class n0 same\n"
        "  left --- n0\n"
        "  right --- n0\n"
        '  n1l(["uts 12"])\n'
        "  class n1l different\n"
        "  left --- n1l\n"
        '  n1r(["uts 99"])\n'
        "  class n1r different\n"
        "  right --- n1r"
    )


def test_plain_mode_offers_no_html_and_no_markdown():
    assert show.namespaces(PAIRS)._repr_html_() is None
    assert show.process_tree(TREE)._repr_html_() is None
    assert show.process_picture(TREE)._repr_markdown_() is None


def test_html_colours_same_green_and_different_red(rich_html):
    table = show.namespaces(PAIRS)._repr_html_()
    assert '<span style="color:green">same</span>' in table
    assert '<span style="color:red">different</span>' in table
    tree = show.process_tree(TREE)._repr_html_()
    assert '<span style="color:red">new pid</span>' in tree
    assert "true &lt;defunct&gt;" in tree
    assert tree.startswith("<b>processes under pid 100</b><pre>100  unshare")


def test_markdown_fences_the_mermaid_source_for_jupyterlab(rich_html):
    picture = show.namespace_picture(PAIRS)
    assert picture._repr_markdown_() == f"```mermaid\n{picture.source}\n```"


def _rendered(view) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard",
                      width=100)
    console.print(view)
    return console.file.getvalue()


def test_rich_colours_same_green_and_different_red():
    table = _rendered(show.namespaces(PAIRS))
    assert "\x1b[32msame" in table and "\x1b[31mdifferent" in table
    tree = _rendered(show.process_tree(TREE))
    assert "\x1b[31mnew pid\x1b[0m" in tree
    assert "└── 104  cat 'a b'" in tree


def test_rich_prints_brackets_as_text_not_markup():
    view = show.Table("", ["cell"], [["[bold]not markup[/]"], [show.Mark("[4026531838]", True)]])
    printed = _rendered(view)
    assert "[bold]not markup[/]" in printed and "[4026531838]" in printed


def test_views_of_this_process_render_in_every_form(rich_html):
    me = os.getpid()
    views = [show.namespaces(tuple(NamespacePair(n.name, n.kind, n.inode, n.inode)
                                   for n in namespaces(me))),
             show.process_tree(process_tree(me)), show.mounts(mounts(me)),
             show.mount_diff(diff_mounts(mounts(me), mounts(me)))]
    for view in views:
        assert str(view) and view._repr_html_() and _rendered(view)


def test_echo_prints_plain_text_when_asked(capsys):
    show.echo(show.namespaces(PAIRS))
    assert capsys.readouterr().out == str(show.namespaces(PAIRS)) + "\n"


def test_on_a_narrow_terminal_ps_never_cuts_a_name_or_an_id():
    """rich squeezes a table into the terminal's width; a container's name and id must come
    through whole (``steady_sam…`` cannot be typed back), the other columns give way."""
    table = show.Table("", ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"],
                       [["0123456789ab", "busybox:latest", '"sleep 1000"', "2 minutes ago",
                         "Up 2 minutes", "steady_samarkand_explorer"]],
                       whole=("CONTAINER ID", "NAMES"))
    screen = io.StringIO()
    Console(file=screen, width=60, color_system=None).print(table)
    assert "steady_samarkand_explorer" in screen.getvalue()
    assert "0123456789ab" in screen.getvalue()
    unprotected = io.StringIO()
    Console(file=unprotected, width=60, color_system=None).print(
        show.Table("", table.columns, table.rows))
    assert "steady_samarkand_explorer" not in unprotected.getvalue()  # what it was before


def test_ps_s_table_keeps_names_and_ids_whole():
    assert show.containers([]).whole == ("CONTAINER ID", "PORTS", "NAMES")
