"""The engine: docker's and conmon's part. Containers over time, and the images they come from.

``store.py`` keeps images and containers on disk under one lock; ``layers.py``, ``digest.py`` and
``baseimage.py`` make and read layers; ``builds.py`` compiles the C programs the lab runs;
``containers.py`` is docker's verbs as Python calls, ``monitor.py`` the process that looks after
one container (conmon's job), ``frames.py`` how clients talk to it and ``relay.py`` how a
terminal does; ``commit.py``, ``rmi.py``, ``reconcile.py`` (``labkit gc``) and ``reset.py``
change the store. It asks the runtime for each container, and renders nothing.
"""
