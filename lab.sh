#!/usr/bin/env bash
# Namespace Lab in one script. Run it as root, from anywhere:
#   ./lab.sh start   set up whatever is missing, then serve the lessons in JupyterLab
#   ./lab.sh test    set up whatever is missing, then lint and run the whole test suite
#   ./lab.sh setup   set up only (the Vagrant VM provisions with this)
# LAB_IP and LAB_PORT say where start listens (127.0.0.1:8888), LAB_NOTEBOOKS what it serves.
# Every step checks before it acts, so running it again costs seconds and changes nothing.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

APT_PACKAGES=(gcc make busybox-static iproute2 util-linux python3-venv libseccomp2)
# Only the test suite needs these: it validates the Vagrantfile and drives a real browser,
# Debian's chromium (Ubuntu ships chromium only as a snap: there the browser tests skip).
TEST_PACKAGES=(vagrant vagrant-libvirt)
if [ "$(. /etc/os-release 2>/dev/null; echo "${ID:-}")" = debian ]; then
    TEST_PACKAGES+=(chromium chromium-driver)
fi
VENV=.venv

say() { printf '\033[1mlab:\033[0m %s\n' "$*" >&2; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "the lab needs root: run 'sudo $0 ${1:-}' (inside the lab VM, or on a machine you can break)"
}

# install_packages --[no-]install-recommends PACKAGE...: apt-get install the missing ones.
install_packages() {
    local recommends=$1 missing=()
    shift
    command -v dpkg-query >/dev/null || die "not a Debian or Ubuntu system: install $* by hand"
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$recommends" "${missing[@]}" >/dev/null
}

python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

make_venv() {
    python_ok python3 || die "Python 3.11 or newer is needed as python3 (Debian 12 and Ubuntu 24.04 have it)"
    if ! python_ok "$VENV/bin/python"; then
        say "creating $VENV"
        python3 -m venv --clear "$VENV"
    fi
    local stamp="$VENV/.requirements.sha256" wanted
    wanted=$(cat requirements.txt pyproject.toml | sha256sum)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        say "installing Python requirements"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -r requirements.txt
        echo "$wanted" > "$stamp"
    fi
    # Compile the lab's modules now, so that no command compiles them as it starts: where
    # PYTHONDONTWRITEBYTECODE is set, each `labkit` command would otherwise do it again.
    "$VENV/bin/python" -m compileall -q labkit >/dev/null
}

setup() {
    need_root "$1"
    install_packages --install-recommends "${APT_PACKAGES[@]}"
    make_venv
    "$VENV/bin/labkit" image build-base
}

case "${1:-}" in
    setup)
        setup setup ;;
    start)
        setup start
        # The terminals JupyterLab opens inherit this PATH, with the lab's labkit first, so
        # that `labkit ps` works there as the lessons type it; and they run bash, not as a
        # login shell (Jupyter's default), whose /etc/profile would set PATH anew.
        export PATH="$PWD/$VENV/bin:$PATH"
        # The lab's kernels load labkit.lessons.kernel_help: one line, not a traceback, for a
        # name lost to a kernel restart and for an interrupted cell.
        export IPYTHONDIR="$PWD/jupyter/ipython"
        say "serving the lessons; open the URL with its token printed below"
        exec "$VENV/bin/jupyter" lab --allow-root --no-browser \
            --ServerApp.terminado_settings="{'shell_command': ['/bin/bash']}" \
            --ip "${LAB_IP:-127.0.0.1}" --port "${LAB_PORT:-8888}" \
            --ServerApp.root_dir="${LAB_NOTEBOOKS:-notebooks}" ;;
    test)
        setup test
        install_packages --no-install-recommends "${TEST_PACKAGES[@]}"
        shift
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/pytest" "$@" ;;
    *)
        die "usage: $0 start | test | setup" ;;
esac
