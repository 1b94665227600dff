"""The host guard catches what it promises to catch: run it on tests that do leak."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytest run in a subprocess, guarded by this suite's own conftest and host guard."""
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return pytester


def _notebook(source: str) -> str:
    cell = {"cell_type": "code", "id": "leak", "metadata": {}, "source": source,
            "outputs": [], "execution_count": None}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_guard_catches_a_mount_leaked_into_the_host(inner, tmp_path):
    """The inner run's "host" is a private copy of the mount namespace, so the leak it makes
    stays out of the real host's table, where other test runs would see it too."""
    target = tmp_path / "leak"
    target.mkdir()
    inner.makepyfile(f"""
        import subprocess
        def test_leaks_a_mount():
            subprocess.run(["mount", "-t", "tmpfs", "leak", "{target}"], check=True)
    """)
    result = inner.run("unshare", "--mount", "--propagation", "private",
                       sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*mount left on the host: {target} / tmpfs leak*"])


def test_guard_catches_a_leaked_process_even_a_daemonised_one(inner):
    inner.makepyfile("""
        import subprocess, time
        def test_leaks_a_daemon():
            subprocess.run(["sh", "-c", "setsid sleep 987654 & true"], check=True)
            while subprocess.run(["pgrep", "-fx", "sleep 987654"]).returncode:
                time.sleep(0.01)  # until the daemon has exec'd sleep, so the guard can name it
    """)
    result = inner.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*process left running: pid * sleep 987654 (mnt:[[]*[]])*"])


def test_guard_passes_a_test_that_cleans_up(inner, tmp_path):
    inner.makepyfile(f"""
        import subprocess
        def test_mounts_and_unmounts():
            subprocess.run(["mount", "-t", "tmpfs", "clean", "{tmp_path}"], check=True)
            subprocess.run(["umount", "{tmp_path}"], check=True)
            subprocess.run(["sleep", "0"], check=True)
    """)
    inner.runpytest_subprocess().assert_outcomes(passed=1)


def test_guard_wraps_a_whole_notebook(inner):
    (inner.path / "leaky.ipynb").write_text(_notebook(
        "import subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)"))
    result = inner.runpytest_subprocess("--nbval-lax", "leaky.ipynb")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*leaky.ipynb leaked into the host:*",
                                 "*process left running: pid * sleep 1000*"])


def test_guard_catches_a_published_port_and_a_claim_left_behind(inner, tmp_path, monkeypatch):
    """In a network namespace of the inner run's own, with its own claims directory: the port
    it publishes and the address it claims stay out of the real host's."""
    monkeypatch.setenv("LABKIT_RUN", str(tmp_path / "run"))
    inner.makepyfile("""
        import ipaddress
        from labkit.engine import leases, nat, store
        from labkit.engine.ports import Port

        def test_leaks_a_port_and_a_claim():
            nat.create(ipaddress.IPv4Network("10.87.0.0/24"), "labkit0", only_the_bridge=False)
            nat.publish([Port("127.0.0.1", 18080, 80)], "10.87.0.9")
            leases.take_address(store.Store(store.home()), "0" * 64,
                                ipaddress.IPv4Network("10.87.0.8/29"),
                                ipaddress.IPv4Address("10.87.0.14"))
    """)
    result = inner.run("unshare", "--net", "--mount", sys.executable, "-m", "pytest",
                       "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*port left published: tcp . 127.0.0.1 . 18080*",
                                 "*claim left on the host: addresses/10.87.0.9*"])


def test_guard_ignores_what_systemd_logind_mounts_for_a_user_logging_in(inner):
    """/run/user/UID comes and goes with logins, whatever the tests do: not a leak."""
    user_dir = Path("/run/user/4242")
    made = [path for path in (user_dir.parent, user_dir) if not path.exists()]
    for path in made:
        path.mkdir()
    try:
        inner.makepyfile(f"""
            import subprocess
            def test_a_user_logs_in_meanwhile():
                subprocess.run(["mount", "-t", "tmpfs", "logind", "{user_dir}"], check=True)
        """)
        result = inner.run("unshare", "--mount", "--propagation", "private",
                           sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
    finally:
        for path in reversed(made):
            path.rmdir()
