"""The lab's container runtime, built lesson by lesson.

Read it in this order: ``spec.py`` (what a container is, as data), ``steps/`` (one isolation
step per module), ``launch.py`` (the fresh process that applies the steps and execs),
``init.py`` (the container's PID 1, and ``init.c``, the same in C for a container with a rootfs
of its own), ``report.py`` (how they tell the caller what happened), ``api.py`` (``run`` and
``start``, what the notebooks call), ``container.py`` (every step of a full container) and
``warm.py`` (the same calls through a helper kept warm: no interpreter to start each time).

This package imports nothing itself: the launcher imports it too, once per container.
"""
