#!/usr/bin/env bash
# Replace the files beside this script with the real ones of a lab VM. Inside the VM, as root:
#   /lab/tests/data/ubuntu-24.04/capture.sh
# then run the tests that read them (tests/test_ubuntu_2404.py) and commit what changed.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")

FILES=(
    proc/self/mountinfo
    proc/self/status
    proc/version
    proc/sys/kernel/osrelease
    proc/sys/kernel/apparmor_restrict_unprivileged_userns
    proc/sys/kernel/unprivileged_userns_clone
    proc/sys/user/max_user_namespaces
    proc/1/cgroup
    proc/1/environ
)

for file in "${FILES[@]}"; do
    mkdir -p "$here/$(dirname "$file")"
    cat "/$file" > "$here/$file"  # /proc/self is cat's own: a root process in the host's namespaces
done
. /etc/os-release
echo "captured by capture.sh on $(date -u +%F) from $PRETTY_NAME, kernel $(uname -r)" > "$here/SOURCE"
