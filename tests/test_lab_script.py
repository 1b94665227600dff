"""The README's commands: ./lab.sh sets up and serves the lessons, and refuses what it cannot do."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import AS_NOBODY, REPO
from tests.lab_server import serving

LAB = str(REPO / "lab.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int:
    """The HTTP status of ``url``, waiting a little for a server that is still binding."""
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError):
                raise
            time.sleep(0.2)
    raise AssertionError(f"nothing answers at {url}")


@pytest.fixture
def lab_server(tmp_path):
    """``./lab.sh start`` on a free port; yields (base URL, token); stops it whole afterwards."""
    port = _free_port()
    env = {**os.environ, "LAB_PORT": str(port), "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    server = subprocess.Popen([LAB, "start"], env=env, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        for line in server.stderr:
            found = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", line)
            if found or time.monotonic() > deadline:
                break
        assert found, "lab.sh start printed no URL with a token"
        yield f"http://127.0.0.1:{port}", found.group(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()


def test_start_serves_jupyterlab_on_loopback_behind_a_token(lab_server):
    base, token = lab_server
    assert _status(f"{base}/api/status?token={token}") == 200
    assert _status(f"{base}/api/status") == 403


def test_lab_refuses_a_user_without_root_in_one_line(public_lab):
    lab = public_lab / "lab.sh"
    result = subprocess.run([*AS_NOBODY, lab, "test"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"lab: the lab needs root: run 'sudo {lab} test' "
        "(inside the lab VM, or on a machine you can break)"]


def test_lab_names_its_verbs_when_given_none():
    result = subprocess.run([LAB], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"lab: usage: {LAB} start | test | setup | lock\n"


def test_with_a_token_file_lab_sh_says_where_the_token_is(tmp_path):
    """The VM's unit gives Jupyter its token in a file, and Jupyter then prints the URL with
    ``token=...``: the line above it must not promise a token below."""
    with serving(tmp_path) as server:
        log = server.log.read_text()
    token_file = tmp_path / "token"
    assert (f"serving the lessons; the URL below hides its token, which is in {token_file}"
            in log)
    assert "token printed below" not in log
