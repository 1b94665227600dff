#!/usr/bin/env bash
# Namespace Lab in one script. Run it as root, from anywhere:
#   ./lab.sh start   set up whatever is missing, then serve the lessons in JupyterLab
#   ./lab.sh test    set up whatever is missing, then lint and run the whole test suite
#   ./lab.sh setup   set up only (the Vagrant VM provisions with this)
#   ./lab.sh lock    remake requirements.txt, the lock, from requirements.in (no root needed);
#                    add --upgrade to move every package to its newest release
# LAB_IP and LAB_PORT say where start listens (127.0.0.1:8888), LAB_NOTEBOOKS what it serves.
# Every step checks before it acts, so running it again costs seconds and changes nothing.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

APT_PACKAGES=(gcc make busybox-static iproute2 util-linux python3-venv libseccomp2 nftables)
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
    say "Debian packages: reading the package lists"
    apt-get update -qq
    say "Debian packages: installing ${missing[*]} (and what they need)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$recommends" "${missing[@]}" >/dev/null
}

python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# make_venv: .venv holds exactly what the lock names, so every learner gets the same versions.
# A changed lock (or pyproject.toml) remakes it from scratch rather than upgrading it in place.
make_venv() {
    python_ok python3 || die "Python 3.11 or newer is needed as python3 (Debian 12 and Ubuntu 24.04 have it)"
    local stamp="$VENV/.requirements.sha256" wanted
    wanted=$(cat requirements.txt pyproject.toml | sha256sum)
    if ! python_ok "$VENV/bin/python" || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        say "Python packages: a new $VENV for $(python3 -V)"
        python3 -m venv --clear "$VENV"
        "$VENV/bin/pip" install --require-hashes --progress-bar off -r requirements.txt | pip_progress
        # The lab itself, editable (the notebooks see a change at once): a .pth line naming
        # this directory, built by flit_core from the lock, so nothing is fetched for it.
        "$VENV/bin/pip" install -q --no-deps --no-build-isolation --no-index -e .
        echo "$wanted" > "$stamp"
    fi
    # Compile the lab's modules now, so that no command compiles them as it starts: where
    # PYTHONDONTWRITEBYTECODE is set, each `labkit` command would otherwise do it again.
    "$VENV/bin/python" -m compileall -q labkit >/dev/null
}

# pip_progress < pip's output: one line per phase; on a terminal, a counter that rewrites itself.
pip_progress() {
    local line count=0 tty=
    [ -t 2 ] && tty=1
    while IFS= read -r line; do
        case $line in
            Collecting\ *|Processing\ *)  # from an index, or from a file pip.conf points to
                count=$((count + 1))
                line=${line%% (from *}
                [ -n "$tty" ] && printf '\r\033[KPython packages: %d fetched, now %s' \
                    "$count" "${line##*[ /]}" >&2 ;;
            Installing\ collected\ packages:*)
                [ -n "$tty" ] && printf '\r\033[K' >&2
                say "Python packages: installing the $count that the lock names for this machine" ;;
        esac
    done
}

setup() {
    need_root "$1"
    install_packages --install-recommends "${APT_PACKAGES[@]}"
    make_venv
    "$VENV/bin/labkit" image build-base
}

# lock [--upgrade]: resolve requirements.in and pyproject.toml's dependencies, for every Python
# from 3.11 and every platform, into requirements.txt with each file's hash. uv does it, from a
# throw-away venv; it keeps the versions the lock has unless told to --upgrade.
lock() {
    LOCK_WORK=$(mktemp -d)
    trap 'rm -rf "$LOCK_WORK"' EXIT
    say "lock: fetching uv into a throw-away venv"
    python3 -m venv "$LOCK_WORK/venv"
    "$LOCK_WORK/venv/bin/pip" install -q uv
    cp requirements.txt "$LOCK_WORK/requirements.txt"
    "$LOCK_WORK/venv/bin/uv" pip compile --quiet --universal --generate-hashes \
        --python-version 3.11 --custom-compile-command "./lab.sh lock" "$@" \
        pyproject.toml requirements.in -o "$LOCK_WORK/requirements.txt"
    cp "$LOCK_WORK/requirements.txt" requirements.txt.new
    mv requirements.txt.new requirements.txt
    say "lock: requirements.txt pins $(grep -c '^[^ #].*==' requirements.txt) packages"
}

case "${1:-}" in
    setup)
        setup setup ;;
    lock)
        shift
        lock "$@" ;;
    start)
        setup start
        # The terminals JupyterLab opens inherit this PATH, with the lab's labkit first, so
        # that `labkit ps` works there as the lessons type it.
        export PATH="$PWD/$VENV/bin:$PATH"
        # The lab's kernels load labkit.lessons.kernel_help: one line, not a traceback, for a
        # name lost to a kernel restart and for an interrupted cell.
        export IPYTHONDIR="$PWD/jupyter/ipython"
        # The lab's server settings (terminals, lessons that open unmodified, no news popup).
        export JUPYTER_CONFIG_PATH="$PWD/jupyter/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
        if [ -n "${JUPYTER_TOKEN_FILE:-}" ]; then  # the VM's unit: Jupyter prints token=...
            say "serving the lessons; the URL below hides its token, which is in $JUPYTER_TOKEN_FILE"
        else
            say "serving the lessons; open the URL with its token printed below"
        fi
        exec "$VENV/bin/jupyter" lab --allow-root --no-browser \
            --ip "${LAB_IP:-127.0.0.1}" --port "${LAB_PORT:-8888}" \
            --ServerApp.root_dir="${LAB_NOTEBOOKS:-notebooks}" ;;
    test)
        setup test
        install_packages --no-install-recommends "${TEST_PACKAGES[@]}"
        shift
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/pytest" "$@" ;;
    *)
        die "usage: $0 start | test | setup | lock" ;;
esac
