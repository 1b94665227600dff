"""The one kind of failure a learner can cause and fix, and docker's exit codes for it.

A ``LabError`` carries one line that says what was wrong and what to do, and the exit code the
command line gives for it: by default 125, docker's code for a failure of the engine itself,
which a script can tell from any code of the command a container ran. Anything else that
escapes is a bug in the lab, not the learner's.
"""

LAB_ERROR = 125  # the lab failed: a bad name, a bad spec, a step that failed
NOT_EXECUTABLE = 126  # the command exists but cannot be executed
NOT_FOUND = 127  # no such command

# The one remedy every command and ``labkit doctor`` give for a missing root.
NEEDS_ROOT = ("labkit needs root: run it inside the lab VM (vagrant ssh, then sudo -i), "
              "or with sudo on a machine you can break")


class LabError(Exception):
    """A failure with a one-line explanation and remedy, and its exit code."""

    def __init__(self, message: str, exit_code: int = LAB_ERROR):
        super().__init__(message)
        self.exit_code = exit_code
