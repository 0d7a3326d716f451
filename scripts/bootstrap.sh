#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: Debian packages, the Python venv with the core and
# every plugin distribution, the wshd binary and the default rootfs. Fast when nothing changed.
set -euo pipefail
shopt -s nullglob
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

[ "$(id -u)" = 0 ] || { echo "bootstrap: must run as root (containers need it)" >&2; exit 1; }

apt_packages=(busybox-static bash iptables iproute2 gcc make libc6-dev libseccomp-dev e2fsprogs
              btrfs-progs quota kmod cpio qemu-system-x86 linux-image-amd64 tar python3)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
stamp=.venv/.bootstrap-stamp
want=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: building .venv"
    "$python" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    editables=(-e ".[test]")
    for p in plugins/*/pyproject.toml; do
        editables+=(-e "$(dirname "$p")")
    done
    .venv/bin/pip install -q "${editables[@]}"
    echo "$want" > "$stamp"
fi

if [ -f native/wshd/Makefile ]; then
    make -s -C native/wshd
fi
if [ -x scripts/build-rootfs.sh ]; then
    scripts/build-rootfs.sh build/rootfs
fi

# The group the shipped config gives the server's socket to (server.unix_domain_group):
# members may talk to the server, everyone else may not.
getent group warden >/dev/null || groupadd --system warden
