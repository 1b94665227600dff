"""``rmi``: remove an image, and the layers nothing else stands on.

An image is a name for a stack of layers (``labkit.engine.store``), and layers are shared: every
image committed from busybox stands on busybox's layer. So removing an image removes its name, and
of its layers only those that no other image lists and no container was made from.

As docker does, the lab refuses to remove an image while a container made from it exists,
running or stopped: ``labkit ps -a`` would name an image that is gone, and the container's
changes would lose the layers they mean something on top of. Remove the container first. When
another name points at the very same image, only this name goes (docker's "Untagged"), and the
containers keep their image under the other name.
"""

from __future__ import annotations

from labkit.engine import names, store
from labkit.errors import LabError


def rmi(reference: str) -> list[str]:
    """Remove the image ``reference``; return the digests of the layers that went with it."""
    store.parse_reference(reference)
    with store.writing() as lab:
        image = lab.image(reference)
        if image is None:
            raise LabError(f"no such image: {reference} (labkit images lists them)")
        _refuse_if_used(lab, image)
        lab.remove_image(image)
        unused = set(lab.unused_layers())
        removed = [digest for digest in image.layers if digest in unused]
        for digest in removed:
            lab.remove_layer(digest)
    return removed


def _refuse_if_used(lab: store.Store, image: store.Image) -> None:
    """A LabError if a container was made from ``image`` and no other name keeps it."""
    if any(other.digest == image.digest and other.reference != image.reference
           for other in lab.images()):
        return
    users = [config for config in lab.container_configs()
             if config.image_digest == image.digest]
    if users:
        first, more = users[0], len(users) - 1
        others = f" and {more} more" if more else ""
        raise LabError(f"image {image.reference} is used by container {first.name} "
                       f"({names.short(first.id)}){others}: remove it first "
                       f"(labkit rm {first.name})")
