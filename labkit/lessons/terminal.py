"""Replay a terminal session: type lines into an interactive program and keep what it showed.

The article's experiments are terminal sessions (start the sample, type ``hostname``, ``ps aux``,
``exit``). A notebook cell cannot type, so this module plays the learner: it gives the program a
pseudo-terminal (a pty, so a shell is interactive and prints its prompt), waits for each prompt,
types the next line, and returns the whole screen as text.

The Jupyter kernel is multithreaded, so it must not fork itself (``pty.fork`` would): the pty
comes from ``os.openpty`` and the program is started with ``subprocess``, under the supervisor,
which makes the pty its controlling terminal and leaves nothing running when the session ends.

The transcript looks in the notebook as it would in the learner's terminal: the pty has the size
of a terminal window of today (a fresh pty has none, and programs then assume 80 columns), and
the notebook shows it as a terminal draws it, lines never wrapped and box lines that touch.
"""

from __future__ import annotations

import errno
import fcntl
import html
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterable
from dataclasses import dataclass

from labkit import show
from labkit.lessons import supervisor

PROMPT_ENDINGS = (b"$ ", b"# ", b"> ")
# Type the next line anyway after this long without output and no prompt: a last resort, for a
# program that asks without one. A slow machine can take a second to print a prompt.
QUIET_SECONDS = 5.0
# A shell may ask the terminal where its cursor is (busybox ash 1.37 does, before its prompt),
# and waits for the answer; a terminal answers at once. The replay answers "row 1, column 1".
CURSOR_QUERY, CURSOR_ANSWER = b"\x1b[6n", b"\x1b[1;1R"
ROWS, COLUMNS = 40, 120  # the terminal's size: a window of today, not the 80 x 24 of old
# A terminal draws each line one character cell high, so that box lines (rich's tables) touch;
# a notebook's output spaces its lines wider, and wraps those longer than the page.
SCREEN_STYLE = "line-height: 1.15; white-space: pre; overflow-x: auto; font-family: monospace"


@dataclass(frozen=True)
class Transcript:
    """The screen of a replayed session, and how the program ended."""

    argv: list[str]
    text: str
    exit_code: int
    timed_out: bool = False

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str | None:
        if show.plain():
            return None
        return f'<pre style="{SCREEN_STYLE}">{html.escape(self.text)}</pre>'


def replay(argv: list[str], typed: Iterable[str], *,
           timeout: float = supervisor.DEFAULT_TIMEOUT) -> Transcript:
    """Run ``argv`` on a pty, type each line of ``typed`` at a prompt, return the transcript.

    A line is typed when the screen ends in a prompt (``$ ``, ``# ``, ``> ``), or, as a last
    resort, after QUIET_SECONDS without output. A cursor query is answered as a terminal
    would, and left out of the screen. The session ends when the program does, or after ``timeout``
    seconds; either way nothing it started is left running. TERM is ``dumb``: this terminal
    draws no colours and no cursor movements, and the programs know it. Its size is in COLUMNS
    and LINES too, where a shell such as bash would put it: a program that sees a dumb terminal
    (rich) believes only those.
    """
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    try:
        process = subprocess.Popen(supervisor.command(argv, terminal=True), stdin=terminal,
                                   stdout=terminal, stderr=terminal, start_new_session=True,
                                   env={**os.environ, "TERM": "dumb", "COLUMNS": str(COLUMNS),
                                        "LINES": str(ROWS)})
    except BaseException:
        os.close(controller)
        raise
    finally:
        os.close(terminal)  # the program holds it now; when it ends, reading gives EOF
    try:
        screen, finished = _play(controller, list(typed), time.monotonic() + timeout)
    finally:
        os.close(controller)
        supervisor.stop(process)  # after EOF it has ended already; if not, it ends everything
    text = screen.decode(errors="replace").replace("\r\n", "\n")
    return Transcript(argv, text, process.returncode, timed_out=not finished)


def _play(controller: int, typed: list[str], deadline: float) -> tuple[bytes, bool]:
    """Read the screen and type at each prompt until EOF (True) or the deadline (False)."""
    screen = bytearray()
    seen = 0  # how much of the screen was there when the last line was typed
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([controller], [], [], min(left, QUIET_SECONDS))
        if ready:
            chunk = _read(controller)
            if not chunk:
                return bytes(screen), True
            screen += chunk
            if CURSOR_QUERY in screen:  # whole, though it may have come in two reads
                os.write(controller, CURSOR_ANSWER * screen.count(CURSOR_QUERY))
                screen = bytearray(screen.replace(CURSOR_QUERY, b""))
        at_prompt = len(screen) > seen and screen.endswith(PROMPT_ENDINGS)
        if typed and (at_prompt or not ready):
            os.write(controller, typed.pop(0).encode() + b"\n")
            seen = len(screen)
    return bytes(screen), False


def _read(controller: int) -> bytes:
    """The next output; b"" once every program holding the terminal has closed it."""
    try:
        return os.read(controller, 65536)
    except OSError as error:  # Linux reports a pty whose other side is all closed as EIO
        if error.errno != errno.EIO:
            raise
        return b""
