"""A container spec: what to run and which isolation steps to apply, as plain data.

The caller (the Jupyter kernel, pytest, the CLI) must never create namespaces itself
(docs/safety.md rule 1). So it does not build a container; it *describes* one, and hands the
description to a launcher process (``launch.py``) that builds it. A launcher forked from a
process of the lab's own gets the ``Spec`` object itself; one that an exec or a socket separates
from its caller gets it as JSON. Everything here is therefore data: a spec is a command, a list
of steps, an environment and a timeout, and it survives the trip ``to_json`` -> ``from_json``
unchanged.

A bad spec is refused here, in the caller, with a ``LabError`` (docker's exit code 125), before
any process or namespace exists.
"""

from __future__ import annotations

import dataclasses
import importlib
import json

from labkit.errors import LabError

# docker's default PATH. A container starts from a clean environment, not the caller's: the
# kernel's variables (a venv, LABKIT_HOME, tokens) are none of the command's business.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Only step classes from here can be named in a spec: the launcher imports what a spec names.
STEPS_PACKAGE = "labkit.runtime.steps"


@dataclasses.dataclass(frozen=True)
class Step:
    """One isolation step: the namespaces it needs, and what it does inside them.

    ``namespaces`` holds the CLONE_NEW* flags the step needs; the launcher unshares the union
    of all steps' flags at once, then forks. ``apply`` runs in the container's first process
    after that fork and before the command starts, in the order the spec lists the steps.
    A step's fields must be JSON values: the spec crosses to the launcher as JSON.

    ``init_program`` is for the step that puts a static init in the container: the path, as
    the container sees it, of the program that becomes PID 1 in place of the lab's Python init.
    """

    namespaces = 0
    init_program = None

    def apply(self) -> None:
        """Change the new namespaces from inside; a step that only needs one does nothing."""


def default_env() -> dict[str, str]:
    return {"PATH": DEFAULT_PATH}


@dataclasses.dataclass
class Spec:
    """Everything the launcher needs to build one container and run its command."""

    command: list[str]
    steps: list[Step] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=default_env)
    timeout: float | None = None

    def __post_init__(self) -> None:
        """Refuse a bad spec here, in the caller, before any process or namespace exists."""
        if (not isinstance(self.command, list) or not self.command
                or not all(isinstance(word, str) and word and "\0" not in word
                           for word in self.command)):
            raise LabError(f"a command is a non-empty list of words such as ['hostname'], "
                              f"not {self.command!r}")
        for step in self.steps:
            if not isinstance(step, Step):
                raise LabError(f"{step!r} is not a step; steps come from {STEPS_PACKAGE}")
        for name, value in self.env.items():
            if (not isinstance(name, str) or not isinstance(value, str) or not name
                    or "=" in name or "\0" in name + value):
                raise LabError(f"bad environment variable {name!r}={value!r}: names are "
                                  f"non-empty and without '=', values are strings")
        if self.timeout is not None and not (
                isinstance(self.timeout, int | float) and self.timeout > 0):
            raise LabError(f"a timeout is a positive number of seconds, not {self.timeout!r}")

    @property
    def namespaces(self) -> int:
        """The CLONE_NEW* flags of every step, for one unshare() call."""
        flags = 0
        for step in self.steps:
            flags |= step.namespaces
        return flags

    @property
    def init_program(self) -> str | None:
        """The static init a step put in the container, if any; else the Python init runs."""
        programs = [step.init_program for step in self.steps if step.init_program]
        return programs[-1] if programs else None

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields["steps"] = [_step_to_data(step) for step in self.steps]
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """The spec ``to_json`` wrote; a LabError (exit code 125) for anything else."""
        try:
            fields = json.loads(text)
            fields["steps"] = [_step_from_data(data) for data in fields.get("steps", [])]
            return cls(**fields)
        except LabError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, ImportError) as error:
            raise LabError(f"not a container spec: {type(error).__name__}: {error}") from None


def _step_to_data(step: Step) -> dict:
    kind = type(step)
    return {"step": f"{kind.__module__}:{kind.__qualname__}", "args": dataclasses.asdict(step)}


def _step_from_data(data: dict) -> Step:
    module, _, name = data["step"].partition(":")
    kind = None
    if module.startswith(STEPS_PACKAGE + "."):
        kind = getattr(importlib.import_module(module), name, None)
    if not (isinstance(kind, type) and issubclass(kind, Step)):
        raise LabError(f"{data['step']!r} is not a step; steps come from {STEPS_PACKAGE}")
    return kind(**data["args"])
