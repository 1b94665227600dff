"""The one kind of failure a learner can cause and fix.

A ``LabError`` carries one line that says what was wrong and what to do, and the exit code the
command line gives for it. Anything else that escapes is a bug in the lab, not the learner's.
"""


# The one remedy every command and ``labkit doctor`` give for a missing root.
NEEDS_ROOT = ("labkit needs root: run it inside the lab VM (vagrant ssh, then sudo -i), "
              "or with sudo on a machine you can break")


class LabError(Exception):
    """A failure with a one-line explanation and remedy, and its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
