#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: Debian packages, the Python venv with the core and
# every plugin distribution, the wshd binary and the default rootfs. Fast when nothing changed.
set -euo pipefail
shopt -s nullglob
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

[ "$(id -u)" = 0 ] || { echo "bootstrap: must run as root (containers need it)" >&2; exit 1; }

apt_packages=(busybox-static bash iptables iproute2 gcc make libc6-dev libseccomp-dev e2fsprogs
              btrfs-progs quota kmod cpio qemu-system-x86 linux-image-amd64 tar python3
              # debian/: the build tools, and what the built packages depend on from Debian
              # (tests/integration/test_debian_packages.py installs them over this host's /)
              build-essential debhelper dh-python python3-all pybuild-plugin-pyproject
              python3-setuptools protobuf-compiler
              python3-yaml python3-pluggy python3-stevedore python3-protobuf)
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

# --- Wheelhouse for tests/integration/test_example_plugin.py --------------------------------
# That test installs the core, the plugins a server needs and examples/warden-tmpfs-rootfs
# into a fresh venv with `pip install --no-index`, so it never reaches a registry. Here, once:
# the third-party dependencies those pyproject files declare (warden-* are built from the
# checkout, never downloaded), pytest, and setuptools and wheel to build them with, as wheels
# (`pip wheel` builds python-iptables' sdist here once, not in every test run). Refilled only
# when one of those pyproject files changes.
wheelhouse=build/wheelhouse
wheelhouse_sources=(pyproject.toml examples/warden-tmpfs-rootfs/pyproject.toml
                    plugins/{wshd_exec,iptables_net,cgroup_v1,cgroup_v2}/pyproject.toml)
wheelhouse_want=$(cat "${wheelhouse_sources[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$wheelhouse_want" ]; then
    echo "bootstrap: filling $wheelhouse"
    mapfile -t third_party < <(.venv/bin/python - "${wheelhouse_sources[@]}" <<'EOF'
import sys, tomllib
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        for requirement in tomllib.load(f)["project"].get("dependencies", []):
            if not requirement.startswith("warden-"):
                print(requirement)
EOF
    )
    .venv/bin/pip wheel -q --wheel-dir "$wheelhouse" "${third_party[@]}" pytest setuptools wheel
    echo "$wheelhouse_want" > "$wheelhouse/.stamp"
fi
# ---------------------------------------------------------------------------------------------

if [ -f native/wshd/Makefile ]; then
    make -s -C native/wshd
fi
if [ -x scripts/build-rootfs.sh ]; then
    scripts/build-rootfs.sh build/rootfs
fi

# The group the shipped config gives the server's socket to (server.unix_domain_group):
# members may talk to the server, everyone else may not.
getent group warden >/dev/null || groupadd --system warden
