"""The lab's container runtime, built lesson by lesson.

Read it in this order: ``spec.py`` (what a container is, as data), ``steps/`` (one isolation
step per module), ``launch.py`` (the process that applies the steps and execs), ``init.py`` (the
container's PID 1, and ``init.c``, the same in C for a container with a rootfs of its own),
``report.py`` (how they tell the caller what happened), ``api.py`` (``run`` and ``start``, what
the notebooks call), ``container.py`` (every step of a full container); then the other ways to
start a launcher than a fresh interpreter: ``forking.py`` (the two rules of a forked Python
process), ``handle.py`` (a Popen-like handle for a launcher subprocess did not start),
``warm.py`` (forked by a helper kept warm, for the notebooks) and ``forked.py`` (forked by the
caller itself, for a container's monitor).

This package imports nothing itself: the launcher imports it too, once per container.
"""
