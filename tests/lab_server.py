"""JupyterLab started the README's way, ``./lab.sh start``, for the tests that talk to it.

The token comes from a file (``JUPYTER_TOKEN_FILE``), as in the lab VM's service, so the test
knows it without reading the log. The server runs in its own session and is stopped whole.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

LAB = str(REPO / "lab.sh")
STARTUP_SECONDS = 120  # lab.sh checks the setup first; a first run may install requirements


@dataclass(frozen=True)
class Server:
    port: int
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str, token: str | None = None) -> int:
        """The HTTP status of ``path`` (``/api/status``) asked with ``token`` (default: the
        server's own; "" for none)."""
        token = self.token if token is None else token
        query = f"?token={token}" if token else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(workdir: Path, *, unset: tuple[str, ...] = (), **env: str) -> Iterator[Server]:
    """``lab.sh start`` on a free port, with ``env`` added and ``unset`` removed from this
    process's environment; stopped, kernels too, on exit."""
    token_file = workdir / "token"
    token_file.write_text(secrets.token_hex(16))
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if name not in unset}
    environment.update(LAB_PORT=str(port), JUPYTER_TOKEN_FILE=str(token_file),
                       JUPYTER_RUNTIME_DIR=str(workdir / "runtime"), **env)
    log = workdir / "jupyterlab.log"
    with log.open("w") as output:
        process = subprocess.Popen([LAB, "start"], env=environment, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(port, token_file.read_text(), log)
    try:
        _wait_until_answering(server, process)
        yield server
    finally:
        _stop(process)


def _wait_until_answering(server: Server, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"lab.sh start exited {process.returncode}:\n"
                                 f"{server.log.read_text()}")
        try:
            if server.status("/api/status") == 200:
                return
        except urllib.error.URLError:
            pass  # not listening yet
        time.sleep(0.25)
    raise AssertionError(f"JupyterLab did not answer at {server.url}:\n{server.log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM: JupyterLab shuts its kernels down, then exits; SIGKILL if it hangs."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
