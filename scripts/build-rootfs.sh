#!/usr/bin/env bash
# The checkout's way to build the default rootfs: the packaged builder (warden-rootfs), with
# the .deb cache kept in build/debs. Usage: scripts/build-rootfs.sh DEST (as root).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
WARDEN_DEB_CACHE=${WARDEN_DEB_CACHE:-$top/build/debs} \
    exec bash "$top/warden_framework/rootfs/build-rootfs.sh" "$@"
