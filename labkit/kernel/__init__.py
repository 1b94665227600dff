"""What the kernel says: the one ctypes layer (``syscalls.py``) and the readers of ``/proc``.

``procfs.py`` reads namespaces, processes and mount tables; ``mountinfo.py`` is the lean reader
of mount points that the run path uses; ``process.py`` reads ``/proc/PID/stat`` and turns a
wait status into a shell's exit code. Nothing here knows what a container is.
"""
