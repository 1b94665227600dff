"""What a group has used, as both versions report it (``labkit stats``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    cpu_ns: int | None  # CPU time used since the group was made
    memory: int | None  # bytes in use now
    memory_limit: int | None  # None: no limit
    pids: int | None  # processes (tasks) in it now
    oom_kills: int | None  # how often the kernel's OOM killer killed in it
