"""The containers a lesson starts, named after it (``l07-...``), and their clean-up.

A lesson removes them at its start, where an interrupted earlier run left some, and at its
end; running ones too. Each time it says what it removed, and it can run twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.engine import containers
from labkit.lessons.union_filesystems import busybox_image


@dataclass(frozen=True)
class LessonContainers:
    prefix: str  # every container the lesson starts has a name that begins with it

    def remove(self) -> list[str]:
        """Remove the lesson's containers, even running; their names."""
        removed = []
        for container in containers.ps(all=True):
            if container.name.startswith(self.prefix):
                containers.rm(container.id, force=True)
                removed.append(container.name)
        return removed

    def tidy_earlier_run(self) -> str:
        """At the start: the base image (built if this lab has none yet), and what an
        interrupted earlier run left removed; say both."""
        _, image = busybox_image()
        removed = self.remove()
        return "\n".join([f"{image.reference} is ready",
                          f"removed what an earlier run left: {', '.join(removed)}" if removed
                          else "an earlier run left nothing: the lesson starts clean"])

    def finish(self) -> str:
        """At the end: the lesson's containers, the exercise's included."""
        removed = self.remove()
        return (f"removed {', '.join(removed)}" if removed
                else "no container of the lesson is left")


def running_answer(answer) -> containers.Container | str:
    """An exercise's answer as the running container it should be, or what is wrong with it."""
    if not isinstance(answer, containers.Container):
        return f"give the Container that containers.run(..., detach=True) returned, not {answer!r}"
    container = containers.inspect(answer.id)
    if container.status != "running":
        return f"{container.name} is {container.status}: run it with detach=True"
    return container
