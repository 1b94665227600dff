"""The runtime: runc's part of the lab. It builds ONE container from a spec, and knows no store.

Read it in this order: ``spec.py`` (what a container is, as data), ``steps/`` (one isolation
step per module, in lesson order), ``launch.py`` (the parent's side: unshare, fork, watch),
``init.py`` (the container's first process: the steps, then PID 1; and ``init.c``, the same PID 1
in C for a container with a root filesystem of its own), ``report.py`` (how they tell the caller
what happened), ``api.py`` (``run`` and ``start``, what the notebooks call), ``container.py``
(every step of a full container), ``exec.py`` (joining a running container). ``forking.py``
holds the two rules of any forked Python process, and ``boot.py`` starts a labkit function in a
fresh interpreter.

``spawn/`` is outside that path: other ways to start the very same launcher sooner.

This package imports nothing itself: the launcher imports it too, once per container.
"""
