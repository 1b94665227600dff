"""docker's resource flags, read and checked: ``--memory``, ``--memory-swap``, ``--cpus``,
``--cpu-shares``, ``--pids-limit``.

Every lab container gets a process limit, 1024 unless ``--pids-limit`` says otherwise
(``-1``: none): on a classroom machine, a student's fork bomb must stop at its container's
wall, not at the host's. docker sets none by default.

Bad values are refused before anything exists, in one line each: a size docker would not read
(``1x``, ``-5m``), a memory limit below 6 MB (docker's minimum: less kills the container
before its command runs), ``--cpus`` of 0 or more than the machine's cores, a ``--pids-limit``
of 0, or a limit whose controller this machine has not mounted.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace

from labkit.errors import LabError
from labkit.runtime.cgroup import driver
from labkit.runtime.cgroup.limits import UNLIMITED, Limits

DEFAULT_PIDS = 1024
MINIMUM_MEMORY = 6 * 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)


@dataclass(frozen=True)
class ResourceOptions:
    """The flags as given (text, as on the command line), None where not given."""

    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | float | None = None
    cpu_shares: str | int | None = None
    pids_limit: str | int | None = None

    def limits(self) -> dict:
        """The checked limits, as the container's config keeps them. The default process
        limit is left out on a machine without the pids controller; one asked for is not."""
        memory = _memory(self.memory)
        limits = Limits(memory=memory, memory_swap=_swap(self.memory_swap, memory),
                        cpus=_cpus(self.cpus), cpu_shares=_shares(self.cpu_shares),
                        pids=_pids(self.pids_limit))
        missing = driver().missing(limits)
        if missing == ["pids"] and self.pids_limit is None:
            return asdict(replace(limits, pids=None))
        if missing:
            raise LabError(f"this machine's cgroups have no {', '.join(missing)} controller, "
                           f"so that limit cannot be set: enable it (cgroup_enable=... on the "
                           f"kernel's command line), or run without the flag")
        return asdict(limits)


DEFAULTS = ResourceOptions()


def parse_size(text: str, flag: str) -> int:
    """``64m`` -> 67108864, as docker reads sizes (b, k, m, g; 1024s)."""
    found = _SIZE.fullmatch(text.strip())
    if not found:
        raise LabError(f"invalid {flag} {text!r}: use a size such as 64m or 1g (b, k, m, g)")
    return int(found[1]) * _UNITS[found[2].lower()]


def _memory(text: str | None) -> int | None:
    if text is None:
        return None
    size = parse_size(text, "--memory")
    if size < MINIMUM_MEMORY:
        raise LabError(f"invalid --memory {text!r}: the minimum is 6m, as docker's; less "
                       f"would kill the container before its command starts")
    return size


def _swap(text: str | None, memory: int | None) -> int | None:
    if text is None:
        return None
    if text.strip() == str(UNLIMITED):
        return UNLIMITED
    if memory is None:
        raise LabError("--memory-swap needs --memory: it is memory and swap together")
    total = parse_size(text, "--memory-swap")
    if total < memory:
        raise LabError(f"invalid --memory-swap {text!r}: it is memory and swap together, so "
                       f"at least --memory")
    return total


def _cpus(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        cpus = float(value)
    except ValueError:
        raise LabError(f"invalid --cpus {value!r}: use a number of cores such as 0.5") from None
    cores = os.cpu_count() or 1
    if not 0.01 <= cpus <= cores:
        raise LabError(f"invalid --cpus {value!r}: from 0.01 to this machine's {cores} cores")
    return cpus


def _shares(value: str | int | None) -> int | None:
    if value is None:
        return None
    if not str(value).isdigit() or not 2 <= int(value) <= 262144:
        raise LabError(f"invalid --cpu-shares {value!r}: a weight from 2 to 262144 "
                       f"(1024 is one share)")
    return int(value)


def _pids(value: str | int | None) -> int:
    if value is None:
        return DEFAULT_PIDS
    text = str(value).strip()
    if text == str(UNLIMITED):
        return UNLIMITED
    if not text.isdigit() or int(text) == 0:
        raise LabError(f"invalid --pids-limit {value!r}: a number of processes of at least 1, "
                       f"or -1 for no limit")
    return int(text)
