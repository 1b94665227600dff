"""A fake systemd host to break things in: a mount namespace whose ``/`` is shared.

On a systemd host every mount is *shared*: a mount made in one namespace propagates to every
namespace that copied it. That is how the article's ``mount -t proc proc /proc`` reaches out of
its container and hides the host's ``/proc``. To show that safely, whatever the host's own
propagation, the experiment runs in a sandbox built in this order:

1. a new mount namespace, at once made *private* (``unshare --propagation private``): from here
   on nothing done inside can reach the real host, even if its ``/`` is shared;
2. then ``/`` made *shared* again (``mount --make-rshared /``), but inside the sandbox only: new
   peer groups, shared with the sandbox's own copies and nothing else. The sandbox is now a host
   like systemd's, and an experiment in it can break it, and only it.

The sandbox lives exactly as long as the command it runs; its mounts vanish with it.
"""

from __future__ import annotations

MAKE_ROOT_SHARED = 'mount --make-rshared / && exec "$@"'


def shared_root(argv: list[str]) -> list[str]:
    """The argv that runs ``argv`` in a fresh sandbox as above (util-linux's unshare and mount).

    A command that cannot be run exits 127 (not found) or 126 (not executable), as in a shell.
    """
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", MAKE_ROOT_SHARED, "sandbox", *argv]
