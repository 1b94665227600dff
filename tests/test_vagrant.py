"""The lab VM, checked as far as a machine without a hypervisor can: Vagrant and systemd read it.

``vagrant validate -p`` checks the core settings but skips every provider block, so each
provider's block is also read by that provider's own Vagrant config class
(``tests/vagrant_config.rb``), which names a setting it does not know, as ``vagrant up`` would.
The systemd unit is verified by ``systemd-analyze verify`` against a root where ``/lab`` is this
repository, as it is inside the VM. What needs the VM itself is docs/vm-checklist.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.lab_server import serving

UNIT = REPO / "vagrant" / "namespace-lab.service"
PROVISION = REPO / "vagrant" / "provision.sh"
CONFIG_READER = Path(__file__).with_name("vagrant_config.rb")


@pytest.fixture(scope="module")
def vagrant_env(tmp_path_factory) -> dict[str, str]:
    """Vagrant's own state (boxes, plugins' data, .vagrant) kept out of $HOME and the repository,
    and the Vagrantfile's defaults: no LAB_HOST_PORT of the caller's."""
    state = tmp_path_factory.mktemp("vagrant")
    env = {name: value for name, value in os.environ.items() if name != "LAB_HOST_PORT"}
    return {**env, "VAGRANT_HOME": str(state / "home"),
            "VAGRANT_DOTFILE_PATH": str(state / "dotfile"), "VAGRANT_CHECKPOINT_DISABLE": "1"}


def validate(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", "validate", "-p"], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120)


def read_config(directory: Path, env: dict[str, str]) -> dict:
    """What the Vagrantfile in ``directory`` configures, as Vagrant's own classes read it."""
    result = subprocess.run(["ruby", str(CONFIG_READER)], cwd=directory, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def edited_copy(directory: Path, old: str, new: str) -> Path:
    """A copy of the Vagrantfile (and the script it provisions with) with one edit."""
    text = (REPO / "Vagrantfile").read_text()
    assert text.count(old) == 1, f"{old!r} is not in the Vagrantfile exactly once"
    (directory / "Vagrantfile").write_text(text.replace(old, new))
    shutil.copytree(REPO / "vagrant", directory / "vagrant")
    return directory


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> its values, in order: systemd allows a key more than once."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def unit_environment(settings: dict[str, list[str]]) -> dict[str, str]:
    return dict(item.split("=", 1) for line in settings["Service.Environment"]
                for item in line.split())


def shell_variable(script: Path, name: str) -> str:
    found = re.search(rf"^{name}=(\S+)", script.read_text(), re.MULTILINE)
    assert found, f"{script.name} sets no {name}"
    return found.group(1)


# --- vagrant validate -------------------------------------------------------------------------


def test_vagrant_validate_passes(vagrant_env):
    had_dotfile = (REPO / ".vagrant").exists()  # a `vagrant up` in this clone makes one
    result = validate(REPO, vagrant_env)
    assert result.returncode == 0, result.stderr
    assert "Vagrantfile validated successfully." in result.stdout
    assert (REPO / ".vagrant").exists() == had_dotfile  # Vagrant's state went to the tmp dir


@pytest.mark.parametrize(("old", "new", "complaint"), [
    ("config.vm.box_version =", "config.vm.box_versoin =",
     "The following settings shouldn't exist: box_versoin"),
    ('path: "vagrant/provision.sh", args: ["install"]',
     'path: "vagrant/provison.sh", args: ["install"]',
     "`path` for shell provisioner does not exist on the host system"),
    ('config.vm.network "forwarded_port", id: "jupyterlab", guest: LAB_PORT, host: HOST_PORT,',
     'config.vm.network "forwarded_port", id: "jupyterlab", guest: LAB_PORT,',
     'Forwarded port definitions require a "host" and "guest" value'),
])
def test_a_broken_core_setting_fails_validate(tmp_path, vagrant_env, old, new, complaint):
    result = validate(edited_copy(tmp_path, old, new), vagrant_env)
    assert result.returncode == 1
    assert complaint in result.stderr


# --- the provider blocks, read by each provider's own config class ----------------------------


@pytest.fixture(scope="module")
def config(vagrant_env) -> dict:
    return read_config(REPO, vagrant_env)


def test_the_box_is_bento_ubuntu_24_04_at_one_pinned_version(config):
    assert config["box"] == "bento/ubuntu-24.04"
    assert re.fullmatch(r"\d{6}\.\d{1,2}\.\d+", config["box_version"]), config["box_version"]
    assert config["errors"] == []


def test_both_providers_get_two_cpus_and_4_gib_with_no_unknown_setting(config):
    virtualbox, libvirt = config["providers"]["virtualbox"], config["providers"]["libvirt"]
    assert virtualbox["errors"] == libvirt["errors"] == []
    modifyvm = {tuple(command[2:]) for when, command in virtualbox["settings"]["customizations"]
                if when == "pre-boot" and command[:2] == ["modifyvm", "id"]}
    assert modifyvm == {("--cpus", 2), ("--memory", "4096")}
    assert libvirt["settings"] == {"memory": 4096, "cpus": 2}


def test_jupyterlab_is_forwarded_to_the_host_s_loopback_only(config):
    forwarded = [options for kind, options in config["networks"]
                 if kind == "forwarded_port" and options["id"] != "ssh"]
    guest_port = unit_environment(unit_settings(UNIT.read_text()))["LAB_PORT"]
    assert forwarded == [{"id": "jupyterlab", "guest": int(guest_port), "host": 8888,
                          "host_ip": "127.0.0.1", "protocol": "tcp"}]
    assert [kind for kind, _ in config["networks"]] == ["forwarded_port"] * 2  # no public network


def test_the_repository_is_synced_to_where_the_service_runs_it(config):
    assert unit_settings(UNIT.read_text())["Service.WorkingDirectory"] == ["/lab"]
    for provider, report in config["providers"].items():
        folders = report["synced_folders"]
        assert folders["/vagrant"]["disabled"] is True, provider
        assert (folders["/lab"]["hostpath"], folders["/lab"]["disabled"]) == (".", False)
    libvirt = config["providers"]["libvirt"]["synced_folders"]["/lab"]
    assert libvirt["type"] == "rsync"
    assert ".venv/" in libvirt["rsync__exclude"]
    assert "--delete" not in libvirt["rsync__args"]  # what a learner saved in the VM stays
    assert "type" not in config["providers"]["virtualbox"]["synced_folders"]["/lab"]


def test_provisioning_runs_the_readme_setup_then_prints_the_url_on_every_up(config):
    provisioners = [(p["name"], p["type"], p["run"], p["path"], p["args"][0], p["env"])
                    for p in config["provisioners"]]
    assert provisioners == [
        ("lab", "shell", None, "vagrant/provision.sh", "install", {"LAB_DIR": "/lab"}),
        ("url", "shell", "always", "vagrant/provision.sh", "url", {"LAB_DIR": "/lab"})]
    assert config["provisioners"][1]["args"] == ["url", "8888"]
    assert '"$LAB_DIR/lab.sh" setup' in PROVISION.read_text()


@pytest.mark.parametrize(("provider", "old", "new", "unknown"), [
    ("virtualbox", "vb.cpus = CPUS", "vb.cpu = CPUS", "cpu"),
    ("libvirt", "lv.memory = MEMORY_MB", "lv.memroy = MEMORY_MB", "memroy"),
])
def test_a_mistyped_provider_setting_fails_the_reading_though_validate_passes(
        tmp_path, vagrant_env, provider, old, new, unknown):
    directory = edited_copy(tmp_path, old, new)
    report = read_config(directory, vagrant_env)
    assert report["providers"][provider]["errors"] == [
        f"The following settings shouldn't exist: {unknown}"]
    assert validate(directory, vagrant_env).returncode == 0  # why the reading above is needed


# --- the systemd unit -------------------------------------------------------------------------


def verify(unit_text: str, root: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` of the unit in a root where /usr is the host's and /lab is
    this repository, bind-mounted in a throw-away mount namespace made private first."""
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / UNIT.name).write_text(unit_text)
    (root / "usr").mkdir()
    (root / "lab").mkdir()
    script = (f'mount --bind /usr "$1/usr" && mount --bind {REPO} "$1/lab" && '
              f'exec systemd-analyze verify --root="$1" {UNIT.name}')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                           "sh", "-c", script, "verify", str(root)],
                          capture_output=True, text=True, timeout=60)


def passes(result: subprocess.CompletedProcess) -> bool:
    """Verified, and without a word: verify only warns about an unknown key, and exits 0."""
    return (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path):
    result = verify(UNIT.read_text(), tmp_path)
    assert passes(result), result.stderr


@pytest.mark.parametrize(("old", "new", "complaint"), [
    ("Restart=on-failure", "Restrat=on-failure", "Unknown key 'Restrat' in section [Service]"),
    ("ExecStart=/lab/lab.sh start", "ExecStart=/lab/lab.sh.orig start",
     "Command /lab/lab.sh.orig is not executable"),
    ("WantedBy=multi-user.target", "WantedBy=multi-user.target\n[Servce]", "Unknown section"),
])
def test_a_broken_unit_fails_verify(tmp_path, old, new, complaint):
    text = UNIT.read_text()
    assert text.count(old) == 1
    result = verify(text.replace(old, new), tmp_path)
    assert not passes(result)
    assert complaint in result.stderr


def test_the_unit_runs_the_readme_command_as_root():
    settings = unit_settings(UNIT.read_text())
    assert settings["Service.ExecStart"] == ["/lab/lab.sh start"]
    assert settings["Service.User"] == ["root"]
    environment = unit_environment(settings)
    assert environment["LAB_PORT"] == shell_variable(PROVISION, "GUEST_PORT")
    assert environment["JUPYTER_TOKEN_FILE"] == shell_variable(PROVISION, "TOKEN_FILE")


def test_with_the_unit_s_environment_lab_sh_listens_on_all_addresses_behind_the_token(tmp_path):
    environment = unit_environment(unit_settings(UNIT.read_text()))
    assert environment["LAB_IP"] == "0.0.0.0"
    with serving(tmp_path, LAB_IP=environment["LAB_IP"]) as server:
        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port}
        assert "0.0.0.0" in listening
        assert server.status("/api/status") == 200
        assert server.status("/api/status", token="") == 403
        assert server.status("/api/status", token="not-the-token") == 403
