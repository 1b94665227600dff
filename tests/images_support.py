"""What the commit, rmi and gc tests share: a clean-up of the images a test made, a refusal that
leaves the store as it was, and a container's directories."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from containers_support import assert_one_line, labkit, store_files

from labkit.engine import containers, store


@contextmanager
def removing_new_images() -> Iterator[None]:
    """Remove every image that appears during the block, and the layers only it used. Wrap
    it around ``removing_new_containers``: an image goes only once its containers have."""
    before = {image.reference for image in store.reading().images()}
    try:
        yield
    finally:
        for image in store.reading().images():
            if image.reference not in before:
                containers.rmi(image.reference)


def assert_refused_and_nothing_made(args: list[str], exit_code: int, *words: str) -> None:
    """``labkit ARGS`` fails in one line naming ``words``, and the store is as it was."""
    before = store_files()
    assert_one_line(labkit(*args), exit_code, *words)
    assert store_files() == before


def container_dir(reference: str) -> Path:
    return store.home() / "containers" / containers.inspect(reference).id
