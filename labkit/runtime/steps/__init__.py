"""The isolation steps: one kernel feature per module, read in the order the lessons add them.

1. ``hostname.py``: a UTS namespace, so the container has a hostname of its own (lesson 02).
2. ``pid.py``: a PID namespace, with the lab's init as its PID 1 (lesson 03).
3. ``mounts.py``: a mount namespace made private first, then a fresh ``/proc`` (lesson 04).

Later lessons add their steps here, each its own module. Every step is a small dataclass built
on ``labkit.runtime.spec.Step``: it names the namespaces it needs and what it does inside them.
"""
