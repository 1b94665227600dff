"""Faster ways to start the same launcher: outside the course path, for speed alone.

A cold launcher (``api.spawn_launcher``) is a fresh interpreter that imports the runtime before
it does anything. These start ``launch.py`` from a process whose imports are done: ``warm.py``
forks it from a helper kept warm (for the notebooks), ``forked.py`` from the caller itself (for a
container's monitor); ``handle.py`` is what their handles share with ``subprocess.Popen``.
"""
