"""A terminal opened in the lab's JupyterLab: bash, with the lab's ``labkit`` on its PATH.

Lesson 06 has the learner type ``labkit ps`` in JupyterLab's terminal. The terminal is asked
for as JupyterLab's own page asks for one (the terminals API, then its websocket), from a
server started the README's way, with neither SHELL nor the venv on the server's PATH.
"""

from __future__ import annotations

import json
import time
import urllib.request

import websocket
from lab_server import serving

from tests.conftest import REPO

MARK = "__typed__"


def typed_in_a_terminal(server, line: str, seconds: float = 30) -> str:
    """Open a terminal, type ``line``, and return what it printed up to the marker echo."""
    request = urllib.request.Request(f"{server.url}/api/terminals?token={server.token}",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        name = json.load(response)["name"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/terminals/websocket/{name}?token={server.token}",
        timeout=seconds)
    try:
        ws.send(json.dumps(["stdin", f"{line}; echo {MARK}$((1+1))\r"]))
        seen, deadline = "", time.monotonic() + seconds
        while f"{MARK}2" not in seen and time.monotonic() < deadline:
            kind, *payload = json.loads(ws.recv())
            if kind == "stdout":
                seen += payload[0]
        return seen
    finally:
        ws.close()
        urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/api/terminals/{name}?token={server.token}", method="DELETE"),
            timeout=10).close()


def test_a_lab_terminal_is_bash_with_labkit_on_its_path(tmp_path):
    with serving(tmp_path, unset=("SHELL",), PATH="/usr/sbin:/usr/bin:/sbin:/bin") as server:
        seen = typed_in_a_terminal(server, "echo shell=$0; command -v labkit")
    assert "shell=bash" in seen or "shell=/bin/bash" in seen, seen
    assert f"{REPO}/.venv/bin/labkit" in seen, seen
