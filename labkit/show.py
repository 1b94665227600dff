"""Rendering: rich in a terminal, HTML in Jupyter, plain deterministic text for tests.

Every view the lab draws is a ``Table`` or a ``Tree``: one object that knows all three forms, so
the code that gathers facts never decides how they look. ``LABKIT_PLAIN=1`` switches every view
to plain text (no colour, no HTML), which is what tests compare and what nbval records. Pictures
are ``Mermaid`` sources, which JupyterLab 4 draws from a Markdown output.

A cell is a string, or a ``Mark``: a verdict shown green when good and red when bad, so "same
namespace" and "check passed" read at a glance.

The second part turns the kernel's facts (``labkit.kernel.procfs``) into views: namespaces side by
side, process trees, mount tables and their diffs, and pictures of the first two; the third, the
engine's: layer stacks and diffs, images and containers as docker lists them. The engine and the
runtime render nothing themselves: they hand facts up, and the lessons and commands show them.
"""

from __future__ import annotations

import html
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.engine.containers import Container, ContainerStats
    from labkit.engine.layers import LayerDiff
    from labkit.engine.store import Store
    from labkit.kernel.procfs import Mount, MountDiff, NamespacePair, ProcessNode


def plain() -> bool:
    """True when output must be plain deterministic text (tests, pipes, ``LABKIT_PLAIN=1``)."""
    return os.environ.get("LABKIT_PLAIN") == "1"


@dataclass(frozen=True)
class Mark:
    """A cell with a verdict: ``good`` True is green, False is red, None is neutral."""

    text: str
    good: bool | None = None

    def __str__(self) -> str:
        return self.text


_COLOURS = {True: "green", False: "red", None: ""}


class Table:
    """A titled table with a plain, a rich and an HTML form. The columns named in ``whole`` are
    never cut short, however narrow the terminal (rich squeezes the others): a name or an id
    shown with "…" in it cannot be typed back."""

    def __init__(self, title: str, columns: list[str], rows: list[list[str | Mark]],
                 note: str = "", whole: Sequence[str] = ()):
        self.title = title
        self.columns = columns
        self.rows = rows
        self.note = note
        self.whole = tuple(whole)

    def __str__(self) -> str:
        cells = [self.columns, *[[str(cell) for cell in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        for row in cells:
            padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            lines.append("  ".join(padded).rstrip())
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table as RichTable

        table = RichTable(title=self.title or None, caption=self.note or None)
        for index, column in enumerate(self.columns):
            if column in self.whole:
                widest = max([len(column), *(len(str(row[index])) for row in self.rows)])
                table.add_column(column, no_wrap=True, min_width=widest)
            else:
                table.add_column(column)
        for row in self.rows:
            table.add_row(*[_rich_cell(cell) for cell in row])
        return table

    def _repr_html_(self) -> str | None:
        if plain():
            return None
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(_html_cell(cell) for cell in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"

    def __repr__(self) -> str:
        return str(self)


def _rich_cell(cell: str | Mark):
    """A rich Text, never markup: a cell such as ``[4026531838]`` must print as it is."""
    from rich.text import Text

    return Text(str(cell), style=_COLOURS[cell.good] if isinstance(cell, Mark) else "")


def _html_cell(cell: str | Mark) -> str:
    return f"<td>{_html_span(cell)}</td>"


def _html_span(cell: str | Mark) -> str:
    text = html.escape(str(cell))
    if isinstance(cell, Mark) and cell.good is not None:
        return f'<span style="color:{_COLOURS[cell.good]}">{text}</span>'
    return text


@dataclass(frozen=True)
class Branch:
    """A node of a ``Tree``: a label made of cells (so parts of it can be marked) and children."""

    label: tuple[str | Mark, ...]
    children: tuple[Branch, ...] = ()


class Tree:
    """A titled tree drawn with box-drawing lines, with a plain, a rich and an HTML form.

    All three forms come from the same lines, so what a test compares is what a person sees.
    """

    def __init__(self, title: str, root: Branch, note: str = ""):
        self.title = title
        self.root = root
        self.note = note

    def lines(self) -> Iterator[tuple[str, tuple[str | Mark, ...]]]:
        """Each node as (the drawing to its left, its label), top to bottom."""
        yield "", self.root.label
        yield from _branch_lines(self.root.children, "")

    def __str__(self) -> str:
        body = [guide + "  ".join(str(cell) for cell in label) for guide, label in self.lines()]
        return "\n".join(line for line in (self.title, *body, self.note) if line)

    def __rich__(self):
        from rich.text import Text

        body = [Text(guide) + Text("  ").join(_rich_cell(cell) for cell in label)
                for guide, label in self.lines()]
        title = [Text(self.title, style="bold")] if self.title else []
        note = [Text(self.note)] if self.note else []
        return Text("\n").join([*title, *body, *note])

    def _repr_html_(self) -> str | None:
        if plain():
            return None
        body = "\n".join(html.escape(guide) + "  ".join(_html_span(cell) for cell in label)
                         for guide, label in self.lines())
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"{title}<pre>{body}</pre>{note}"

    def __repr__(self) -> str:
        return str(self)


def _branch_lines(branches: tuple[Branch, ...], indent: str):
    for position, branch in enumerate(branches):
        last = position == len(branches) - 1
        yield indent + ("└── " if last else "├── "), branch.label
        yield from _branch_lines(branch.children, indent + ("    " if last else "│   "))


@dataclass(frozen=True)
class Mermaid:
    """A picture as Mermaid source: JupyterLab 4 draws it, tests compare its text.

    Shown as the last value of a cell it renders as a diagram (a ```mermaid fence in a
    Markdown output); under ``LABKIT_PLAIN=1`` and in a terminal it is just its source.
    """

    source: str

    def markdown(self) -> str:
        """The source inside a ```mermaid fence, for ``IPython.display.Markdown``."""
        return f"```mermaid\n{self.source}\n```"

    def _repr_markdown_(self) -> str | None:
        return None if plain() else self.markdown()

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return self.source


@dataclass(frozen=True)
class Source:
    """The source code of a piece of the lab, to read in a lesson beside what it does.

    In JupyterLab it renders as highlighted Python; in plain mode it is the bare text.
    """

    text: str

    def _repr_markdown_(self) -> str | None:
        return None if plain() else f"```python\n{self.text}\n```"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def source(obj) -> Source:
    """The source of a class, function or module, as a view."""
    import inspect as python_inspect

    return Source(python_inspect.getsource(obj).rstrip())


def echo(view) -> None:
    """Print a view to the terminal: rich when a person is watching, plain otherwise."""
    if plain() or not os.isatty(1):
        print(view)
        return
    from rich.console import Console

    Console().print(view)


# ---------------------------------------------------------------------------------------------
# Views of labkit.kernel.procfs's facts


def _verdict(same: bool) -> Mark:
    return Mark("same", True) if same else Mark("different", False)


def namespaces(pairs: Sequence[NamespacePair],
               labels: tuple[str, str] = ("left", "right")) -> Table:
    """Two processes' namespaces side by side: green where they share one, red where not."""
    rows = [[pair.name, _inode(pair.left), _inode(pair.right), _verdict(pair.same)]
            for pair in pairs]
    shared = sum(pair.same for pair in pairs)
    return Table(f"namespaces: {labels[0]} vs {labels[1]}",
                 ["namespace", *labels, "verdict"], rows,
                 note=f"{shared} of {len(pairs)} shared")


def _inode(inode: int | None) -> str:
    return "-" if inode is None else str(inode)


def process_tree(node: ProcessNode) -> Tree:
    """A process tree as text, each process with its pid inside and the namespaces it left."""
    return Tree(f"processes under pid {node.pid}", _process_branch(node))


def _process_branch(node: ProcessNode) -> Branch:
    label: list[str | Mark] = [str(node.pid), _command(node)]
    if len(node.nested_pids) > 1:
        label.append(f"(pid {node.nested_pids[-1]} inside)")
    if node.new_namespaces:
        label.append(Mark("new " + " ".join(node.new_namespaces), False))
    return Branch(tuple(label), tuple(_process_branch(child) for child in node.children))


COMMAND_WIDTH = 72


def _command(node: ProcessNode) -> str:
    """The command line as a shell would take it, cut to one line; a zombie only has its name."""
    if node.state == "zombie":
        return f"{node.name} <defunct>"
    line = shlex.join(node.cmdline) if node.cmdline else f"[{node.name}]"
    return line if len(line) <= COMMAND_WIDTH else line[:COMMAND_WIDTH - 1] + "…"


def mounts(table: Sequence[Mount], title: str = "mount table") -> Table:
    """A mount table with each mount's propagation, in the kernel's order."""
    rows = [[m.mount_point, m.fs_type, m.source, str(m.propagation), ",".join(m.options)]
            for m in table]
    return Table(title, ["mount point", "type", "source", "propagation", "options"], rows)


def mount_diff(diff: MountDiff, labels: tuple[str, str] = ("before", "after")) -> Table:
    """What changed between two mount tables: added green, removed red, changed neutral."""
    rows = [[Mark("added", True), m.mount_point, m.fs_type, m.source, ""] for m in diff.added]
    rows += [[Mark("removed", False), m.mount_point, m.fs_type, m.source, ""]
             for m in diff.removed]
    rows += [[Mark("changed"), c.after.mount_point, c.after.fs_type, c.after.source,
              "; ".join(_change(c.before, c.after, name) for name in c.fields)]
             for c in diff.changed]
    note = "the two mount tables are the same" if diff.empty else ""
    return Table(f"mounts: {labels[0]} -> {labels[1]}",
                 ["change", "mount point", "type", "source", "what changed"], rows, note)


def _change(before: Mount, after: Mount, name: str) -> str:
    return f"{name} {_field(before, name)} -> {_field(after, name)}"


def _field(mount: Mount, name: str) -> str:
    value = getattr(mount, name)
    return ",".join(value) if isinstance(value, tuple) else str(value)


# ---------------------------------------------------------------------------------------------
# Pictures


_MERMAID_STYLES = (
    "  classDef same fill:#e8f5e9,stroke:#2e7d32",
    "  classDef different fill:#ffebee,stroke:#c62828",
)


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: quotes and angle brackets as entity codes."""
    for char, code in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def process_picture(node: ProcessNode) -> Mermaid:
    """A process tree as a Mermaid flowchart; processes in new namespaces are drawn red."""
    lines = ["flowchart TD", *_MERMAID_STYLES]
    for process in node.walk():
        lines.append(f'  p{process.pid}["{_process_caption(process)}"]')
        if process.new_namespaces:
            lines.append(f"  class p{process.pid} different")
        lines += [f"  p{process.pid} --> p{child.pid}" for child in process.children]
    return Mermaid("\n".join(lines))


def _process_caption(node: ProcessNode) -> str:
    parts = [_mermaid_text(f"{node.pid} {node.name}")]
    if len(node.nested_pids) > 1:
        parts.append(f"pid {node.nested_pids[-1]} inside")
    if node.new_namespaces:
        parts.append("new " + " ".join(node.new_namespaces))
    return "<br/>".join(parts)


def namespace_picture(pairs: Sequence[NamespacePair],
                      labels: tuple[str, str] = ("left", "right")) -> Mermaid:
    """Two processes linked to their namespaces: a shared one is a single green node both
    point at, a separate one is two red nodes, one each."""
    lines = ["flowchart LR", *_MERMAID_STYLES,
             f'  left["{_mermaid_text(labels[0])}"]', f'  right["{_mermaid_text(labels[1])}"]']
    for number, pair in enumerate(pairs):
        if pair.same:
            lines += [f'  n{number}(["{pair.name} {pair.left}"])', f"  class n{number} same",
                      f"  left --- n{number}", f"  right --- n{number}"]
            continue
        for side, inode in (("left", pair.left), ("right", pair.right)):
            if inode is not None:
                node = f"n{number}{side[0]}"
                lines += [f'  {node}(["{pair.name} {inode}"])', f"  class {node} different",
                          f"  {side} --- {node}"]
    return Mermaid("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Views of the engine's facts: layers, images, containers


def layer_diff(diff: LayerDiff) -> Table:
    """What an upper layer does to its lowers, one row a path (``layers.diff``)."""
    rows = [[change, path] for change in ("added", "changed", "deleted", "opaque")
            for path in getattr(diff, change)]
    return Table("Layer diff", ["change", "path"], rows,
                 note="deleted = a whiteout (char device 0/0); "
                      "opaque = trusted.overlay.opaque=y, the lowers hidden inside")


def layer_stack(layer_dirs: Sequence[str | Path], names: Sequence[str] | None = None) -> Table:
    """The stack as a picture: each path, what every layer (top first) has there, who wins.

    A row for every path any layer holds, so what is hidden shows too; the cell of the layer
    the merged view takes it from is marked, and the last column names that layer.
    """
    from labkit.engine import layers

    names = list(names or [Path(layer).name for layer in layer_dirs])
    stack = [layers.entries(layer) for layer in layer_dirs]
    rows = []
    for path in sorted({path for layer in stack for path in layer}):
        winner = layers.origin(path, stack)
        cells = [Mark(layer[path], True) if index == winner else layer.get(path, "")
                 for index, layer in enumerate(stack)]
        rows.append([path, *cells, "(hidden)" if winner is None else names[winner]])
    return Table("Layer stack, top first", ["path", *names, "merged view"], rows,
                 note="a whiteout deletes a path of the layers below it; an opaque dir hides "
                      "everything they have inside it")


def images(lab: Store) -> Table:
    """The store's images, as ``docker images`` lists them."""
    from labkit.engine.store import human_size, short

    rows = [[image.repository, image.tag, short(image.digest), str(len(image.layers)),
             human_size(lab.image_size(image)), image.created] for image in lab.images()]
    note = "" if rows else "No images yet: labkit image build-base"
    return Table("", ["REPOSITORY", "TAG", "DIGEST", "LAYERS", "SIZE", "CREATED"], rows, note)


def containers(found: Sequence[Container]) -> Table:
    """The containers as ``docker ps`` shows them."""
    rows = [[c.short_id, c.config.image, _command_cell(c.config.command), _ago(c.config.created),
             _status_cell(c), _ports_cell(c), c.name] for c in found]
    return Table("", ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                 rows, whole=("CONTAINER ID", "PORTS", "NAMES"))


def _ports_cell(container: Container) -> str:
    """Its published ports as docker writes them: ``127.0.0.1:32768->80/tcp``."""
    published = container.lease.ports if container.lease else []
    return ", ".join(f"{p.host_ip}:{p.host_port}->{p.exposed}" for p in published)


def _command_cell(command: list[str]) -> str:
    """The command, quoted and cut to 20 characters as docker shows it; a control character
    (an escape sequence, say) is written out, never sent raw to the learner's terminal."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(command))
    return f'"{text if len(text) <= 20 else text[:19] + "…"}"'


def _status_cell(container: Container) -> str:
    from labkit.engine.store import EXITED, RUNNING

    state = container.state
    if container.status == RUNNING:
        return f"Up {_duration(state.started_at)}"
    if container.status == EXITED:
        killed = ", OOM killed" if state.oom_killed else ""
        return f"Exited ({state.exit_code}{killed}) {_ago(state.finished_at)}"
    return container.status.capitalize()


def stats(rows: Sequence[ContainerStats]) -> Table:
    """``docker stats``' table: CPU % of one core, memory use against the limit, processes."""
    return Table("", ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
                 [_stat_row(row) for row in rows], whole=("CONTAINER ID", "NAME"))


def _stat_row(row: ContainerStats) -> list[str]:
    from labkit.engine.store import human_size

    usage = row.usage
    limit = human_size(usage.memory_limit) if usage.memory_limit else "no limit"
    share = (f"{100 * usage.memory / usage.memory_limit:.2f}%"
             if usage.memory is not None and usage.memory_limit else "-")
    return [row.container.short_id, row.container.name,
            "-" if row.cpu_percent is None else f"{row.cpu_percent:.2f}%",
            f"{human_size(usage.memory or 0)} / {limit}", share,
            "-" if usage.pids is None else str(usage.pids)]


def live(render: Callable[[], object]) -> None:
    """Show ``render()`` again and again until Ctrl-C: in place on a terminal (rich's Live),
    one after the other otherwise. Each render takes its own time (stats measures for it)."""
    if plain() or not os.isatty(1):
        while True:
            print(render(), flush=True)
    from rich.live import Live

    with Live(render(), auto_refresh=False) as screen:
        while True:
            screen.update(render(), refresh=True)


def _ago(when: str) -> str:
    return f"{_duration(when)} ago"


def _duration(since: str) -> str:
    """How long ago ``since`` was, in docker's words: 5 seconds, About a minute, 3 hours."""
    from datetime import UTC, datetime

    seconds = (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
    minutes, hours = int(seconds // 60), int(seconds / 3600 + 0.5)
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} second{'' if int(seconds) == 1 else 's'}"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


class Progress:
    """Each step of a build as it starts: a rich spinner for people, plain lines for logs and
    tests. Use it in a ``with`` block, and call it with each step's text."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._status = None

    def __enter__(self) -> Progress:
        if not plain() and os.isatty(1):
            from rich.console import Console

            self._status = Console().status(self._what)
            self._status.start()
        return self

    def __call__(self, text: str) -> None:
        if self._status is None:
            print(f"  {text}", flush=True)
        else:
            self._status.update(f"{self._what}: {text}")
            self._status.console.print(f"  {text}", highlight=False)

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.stop()
