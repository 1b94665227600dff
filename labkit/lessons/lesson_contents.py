"""Lessons open unmodified in JupyterLab: their metadata already says what the kernel will.

A lesson in the repository carries ``language_info`` as ``{"name": "python"}`` alone, because
the rest (the Python version above all) depends on the machine. JupyterLab writes the kernel's
whole ``language_info`` into a notebook once its kernel starts, and a notebook whose metadata
changed is a modified notebook: closing a lesson the learner never touched would ask to save it.
So the server fills it in as it reads the file, with what the kernel will report: ipykernel's
own ``language_info``, for this very Python, which the lab's kernels run on.
"""

from __future__ import annotations

from ipykernel.ipkernel import IPythonKernel
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


class LessonContents(AsyncLargeFileManager):
    """Jupyter's own file manager; a Python notebook is read with its kernel's language_info."""

    async def get(self, path, *args, **kwargs):
        model = await super().get(path, *args, **kwargs)
        if model["type"] == "notebook" and model["content"] is not None:
            metadata = model["content"]["metadata"]
            if metadata.get("kernelspec", {}).get("language") == "python":
                metadata["language_info"] = dict(IPythonKernel.language_info)
        return model
