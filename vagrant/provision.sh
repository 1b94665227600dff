#!/usr/bin/env bash
# Vagrant runs this as root inside the lab VM (see the Vagrantfile); LAB_DIR is the repository.
#   provision.sh install           set the lab up the README's way, install the JupyterLab service
#   provision.sh url HOST_PORT     start the service if it is not running, wait until it answers,
#                                  and print the URL to open on the host
set -euo pipefail

UNIT=namespace-lab.service
LAB_DIR=${LAB_DIR:?the Vagrantfile sets it to the repository inside the VM}
TOKEN_FILE=/etc/namespace-lab/token  # the unit's JUPYTER_TOKEN_FILE
GUEST_PORT=8888                      # the unit's LAB_PORT

say() { printf '%s\n' "$*"; }

install_service() {
    "$LAB_DIR/lab.sh" setup
    if [ ! -s "$TOKEN_FILE" ]; then
        # One token per VM, never in the repository: the forwarded port is on the host's
        # loopback only, but other users of the host could reach it.
        install -d -m 700 "$(dirname "$TOKEN_FILE")"
        # No newline after it: JupyterLab takes the file's whole content as the token.
        (umask 077
         python3 -c 'import secrets; print(secrets.token_hex(24), end="")' > "$TOKEN_FILE")
    fi
    install -m 644 "$LAB_DIR/vagrant/$UNIT" "/etc/systemd/system/$UNIT"
    systemctl daemon-reload
    systemctl enable "$UNIT"
    systemctl restart "$UNIT"
}

print_url() {
    local host_port=$1 token status
    token=$(cat "$TOKEN_FILE")
    systemctl start "$UNIT"
    for _ in $(seq 120); do
        status=$(curl -s -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$GUEST_PORT/api/status?token=$token" || true)
        if [ "$status" = 200 ]; then
            say "Namespace Lab is ready. Open this URL in a browser on your computer:"
            say ""
            say "    http://127.0.0.1:$host_port/lab?token=$token"
            say ""
            say "(vagrant provision --provision-with url prints it again)"
            return 0
        fi
        sleep 1
    done
    say "JupyterLab did not answer within 2 minutes; its log:"
    journalctl -u "$UNIT" -n 40 --no-pager
    return 1
}

case "${1:-}" in
    install) install_service ;;
    url) print_url "${2:?usage: $0 url HOST_PORT}" ;;
    *) say "usage: $0 install | url HOST_PORT" >&2; exit 2 ;;
esac
