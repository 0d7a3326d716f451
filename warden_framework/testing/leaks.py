"""Lists the kernel objects a container server can leak, so a test can be failed for leaving
any behind: overlay/aufs/btrfs and idmapped mounts, cgroups, w-* links, named netns, legacy iptables
chains, loop devices and wshd processes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        lines = f.read().splitlines()
    found = set()
    for line in lines:
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        fields = left.split()
        # an idmapped layer is a bind of the lower rootfs, of its filesystem's type
        if fstype in ("overlay", "aufs", "btrfs") or "idmapped" in fields[5].split(","):
            found.add(f"{fstype} {fields[4]}")
    return found


def cgroups(root: Path = CGROUP_ROOT) -> set[str]:
    """Warden-named groups and their children in every hierarchy under `root`: each v1
    controller's, the hybrid layout's unified one (root/unified), or `root` itself when it is
    a pure cgroup v2 mount. systemd's named v1 hierarchy holds none of ours."""
    if (root / "cgroup.controllers").exists():
        return _warden_groups(root)
    found = set()
    for hierarchy in root.iterdir() if root.is_dir() else ():
        if hierarchy.name != "systemd" and hierarchy.is_dir():
            found |= _warden_groups(hierarchy)
    return found


def _warden_groups(hierarchy: Path) -> set[str]:
    found = set()
    for group in hierarchy.iterdir():
        if group.name.startswith(("warden", "wt", "instance-")) and group.is_dir():
            found.add(str(group))
            try:
                found.update(str(child) for child in group.iterdir() if child.is_dir())
            except FileNotFoundError:  # removed while we looked: a concurrent teardown
                pass
    return found


def links() -> set[str]:
    return {name for name in os.listdir("/sys/class/net") if name.startswith("w-")}


def named_netns() -> set[str]:
    path = Path("/run/netns")
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


def iptables_chains() -> set[str]:
    binary = shutil.which("iptables-legacy-save")
    if binary is None:
        return set()
    out = subprocess.run([binary], capture_output=True, text=True, check=False).stdout
    table = ""
    found = set()
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and not line.split()[0][1:].isupper():
            found.add(f"{table}:{line.split()[0][1:]}")
    return found


def loop_devices() -> set[str]:
    found = set()
    for dev in Path("/sys/block").glob("loop*"):
        try:  # a device detached between the glob and the read has no backing file
            found.add(f"{dev.name} {(dev / 'loop' / 'backing_file').read_text().strip()}")
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def wshd_processes() -> set[str]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm, _, rest = stat.partition("(")[2].rpartition(")")
        # a zombie holds nothing but its pid; whoever reaps orphans on the host takes it
        if comm == "wshd" and rest.split()[0] != "Z":
            found.add(pid)
    return found


CHECKS = {"mounts": mounts, "cgroups": cgroups, "links": links, "netns": named_netns,
          "iptables chains": iptables_chains, "loop devices": loop_devices,
          "wshd processes": wshd_processes}


def inventory() -> dict[str, set[str]]:
    return {name: check() for name, check in CHECKS.items()}


def leftovers(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: after[name] - before[name] for name in after if after[name] - before[name]}
