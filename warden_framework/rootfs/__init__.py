"""`warden-rootfs [DEST]`: build the default rootfs (busybox-static, bash-static and libc6,
unpacked from Debian packages that apt downloads) for a server installed with pip or from
the Debian packages. The build is build-rootfs.sh's, shipped beside this module; it is
idempotent (a stamp of package versions) and swaps a new tree in by rename."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

BUILDER = Path(__file__).with_name("build-rootfs.sh")
DEFAULT_DEST = "/var/lib/warden/rootfs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warden-rootfs", description=__doc__)
    parser.add_argument("dest", nargs="?", default=DEFAULT_DEST,
                        help=f"where the rootfs goes (default {DEFAULT_DEST}, the packaged "
                             f"config's server.container_rootfs_path)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("warden-rootfs: must run as root (the tree is root's)", file=sys.stderr)
        return 1
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        print(f"warden-rootfs: needs Debian's apt and dpkg ({', '.join(missing)} not found)",
              file=sys.stderr)
        return 1
    return subprocess.run(["bash", str(BUILDER), args.dest]).returncode


if __name__ == "__main__":
    sys.exit(main())
