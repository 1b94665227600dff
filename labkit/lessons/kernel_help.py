"""One line, not a traceback, for the two errors every learner meets in a notebook.

- **A kernel restarted mid-lesson** forgets every name the cells above defined, and the next
  cell fails with a bare ``NameError``. The learner needs to hear that, and what to do.
- **An interrupted cell** (the square button) stops an experiment half-way: the traceback runs
  through subprocess's internals for forty lines. The experiment ran in processes of its own,
  which the lab stops with the cell; the learner needs to hear that nothing was left running.

An IPython extension (lab.sh starts JupyterLab with ``IPYTHONDIR=jupyter/ipython``, whose
kernel config loads it). A ``NameError`` raised inside the lab's own code is a bug, not a
restart: it keeps its full traceback.
"""

from __future__ import annotations

import sys

RESTARTED = ("{error}: run the cells above this one first (a restarted kernel forgets them "
             "all: Run > Run All Above Selected Cell)")
INTERRUPTED = ("Interrupted: the cell stopped, and the experiment it ran was stopped with it, "
               "nothing left running; run the cell again to see it whole")


def load_ipython_extension(shell) -> None:
    shell.set_custom_exc((NameError, KeyboardInterrupt), _one_line)


def _one_line(shell, kind, error, traceback, tb_offset=None):
    """Say it in one line; a NameError raised deeper than the cell keeps its traceback. The
    traceback starts in IPython's own frame, then the cell's: a third is code the cell called."""
    if kind is NameError and _deeper_than_the_cell(traceback):
        return shell.showtraceback((kind, error, traceback), tb_offset=tb_offset)
    line = INTERRUPTED if kind is KeyboardInterrupt else RESTARTED.format(error=error)
    print(line, file=sys.stderr)
    return []


def _deeper_than_the_cell(traceback) -> bool:
    return traceback.tb_next is not None and traceback.tb_next.tb_next is not None
