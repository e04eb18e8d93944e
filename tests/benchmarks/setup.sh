#!/bin/sh
# Installs what tests/benchmarks/bench_transfer.py compares against: nginx (the Range server),
# aria2 (aria2c) and curl, from Debian. Idempotent; run as root.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v aria2c >/dev/null 2>&1 || missing="$missing aria2"
command -v curl >/dev/null 2>&1 || missing="$missing curl"

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y --no-install-recommends $missing
fi

# The benchmark runs nginx as its own non-daemon child on 127.0.0.1; the packaged service is
# not needed (and would hold port 80), so it is stopped when the package just started it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl stop nginx || true
fi

/usr/sbin/nginx -v
aria2c --version | head -n 1
curl --version | head -n 1
