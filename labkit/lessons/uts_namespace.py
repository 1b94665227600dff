"""Lesson 02: CLONE_NEWUTS gives the child a hostname of its own, and the host keeps its name.

The claims take plain data (names, namespace pairs, an exit code), so the same check verifies
the C sample, the Python runtime and, in the tests, a runtime without the Hostname step, where
it fails.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from labkit.lessons.checks import Exercise, expect
from labkit.lessons.probe import different
from labkit.runtime.api import Result
from labkit.show import Mark, Table

# The uname record as /proc/sys/kernel shows it to the reader's UTS namespace, and the name
# uname(2) gives each field.
UNAME_FIELDS = {"ostype": "sysname", "hostname": "nodename", "osrelease": "release",
                "version": "version", "domainname": "domainname"}

# A shell loop that prints each of those files as one line: "hostname container".
UNAME_PROBE = ["sh", "-c", f'for field in {" ".join(UNAME_FIELDS)}; do '
                           f'echo "$field $(cat /proc/sys/kernel/$field)"; done']


def expect_hostname_inside(seen: str, wanted: str) -> None:
    expect(f"the hostname inside is {wanted!r}", seen == wanted, seen)


def expect_host_keeps_its_name(before: str, after: str) -> None:
    expect(f"the host is still called {before!r}", after == before, after)


def expect_only_uts_differs(pairs) -> None:
    expect("the child has a UTS namespace of its own and shares every other one",
           different(pairs) == {"uts"}, sorted(different(pairs)))


def expect_refused_without_cap_sys_admin(exit_code: int, stderr: str) -> None:
    expect("without CAP_SYS_ADMIN the kernel refuses clone(CLONE_NEWUTS)",
           exit_code != 0 and "clone: Operation not permitted" in stderr, (exit_code, stderr))


def printed_fields(output: str) -> dict[str, str]:
    """The fields UNAME_PROBE printed; any other line (the sample's greeting) is skipped."""
    found = {}
    for line in output.splitlines():
        field, _, value = line.partition(" ")
        if field in UNAME_FIELDS:
            found[field] = value
    return found


def hosts_fields() -> dict[str, str]:
    """The same fields as this process sees them: the host's UTS namespace."""
    return {field: Path(f"/proc/sys/kernel/{field}").read_text().strip()
            for field in UNAME_FIELDS}


def uname_table(inside: dict[str, str], label: str = "container") -> Table:
    """The host's uname fields beside a child's: which of them did its namespace change?"""
    host = hosts_fields()
    rows = [[f"{name} ({field})", host[field], inside.get(field, "-"),
             Mark("same", True) if inside.get(field) == host[field] else Mark("different", False)]
            for field, name in UNAME_FIELDS.items()]
    return Table(f"uname: host vs {label}", ["field", "host", label, "verdict"], rows)


def _a_name_of_your_own(answer) -> str | None:
    if not isinstance(answer, Result):
        return f"give the Result that api.run(...) returned, not {answer!r}"
    if answer.error or answer.exit_code:
        return (f"that container failed with exit code {answer.exit_code}: "
                f"{answer.error or answer.stderr.strip()}")
    if answer.namespaces.get("uts") in (None, os.stat("/proc/self/ns/uts").st_ino):
        return "the command ran in the host's UTS namespace: give run() a Hostname step"
    name = answer.stdout.strip()
    if not name or "\n" in name:
        return f"run the command ['hostname'], so that it prints the name, not {answer.stdout!r}"
    if name == "container":
        return "'container' is the lesson's name: choose one of your own"
    if name == socket.gethostname():
        return f"{name!r} is this machine's own hostname: choose one the host does not have"
    return None


EXERCISE = Exercise(
    question="Run ['hostname'] in a container with a hostname you choose; pass its Result.",
    verify=_a_name_of_your_own,
    hint_text="api.run(command, steps=[...]) returns a Result; the Hostname step takes the name.",
    solution_text="answer = api.run(['hostname'], steps=[Hostname('my-box')])  # prints my-box, "
                  "in a new UTS namespace; socket.gethostname() still gives the host's name",
)
