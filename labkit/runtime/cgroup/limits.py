"""What a container may take: memory, swap, CPU time and weight, and processes.

The same limits, whichever version of cgroups enforces them; docker's flags give them:
``--memory``, ``--memory-swap`` (memory *plus* swap, -1 for no limit), ``--cpus`` (cores'
worth of CPU time in each period), ``--cpu-shares`` (a weight against other groups, felt only
when the CPU is busy), ``--pids-limit`` (-1 for none). None leaves a limit unset.
"""

from __future__ import annotations

from dataclasses import dataclass

PERIOD_US = 100_000  # the CFS period: --cpus 0.5 is 50 ms of CPU time in every 100 ms
UNLIMITED = -1


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory and swap together; -1: no limit
    cpus: float | None = None
    cpu_shares: int | None = None  # docker's weight, 2 to 262144, 1024 being one share
    pids: int | None = None  # -1: no limit

    def swap_total(self) -> int | None:
        """memory+swap as docker sets it: twice the memory when only --memory is given."""
        if self.memory_swap is not None:
            return self.memory_swap
        return None if self.memory is None else 2 * self.memory

    def cpu_quota_us(self) -> int | None:
        return None if self.cpus is None else round(self.cpus * PERIOD_US)
