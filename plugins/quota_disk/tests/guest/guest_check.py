"""Runs inside the qemu guest that run-guest.sh boots: drives the SetquotaDriver's own hooks
against an ext4 image mounted with usrquota on a kernel that has the vfs quota format, and
prints one `GUEST {json}` line per step for test_setquota_guest.py to check.

With --list-files (on the host) it only imports what the guest run needs and prints the file
of every module loaded, which is what run-guest.sh copies into the initramfs.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path

KiB, MiB = 1024, 2**20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True, help="colon-separated entries for sys.path")
    parser.add_argument("--list-files", action="store_true")
    parser.add_argument("--mount", default="/mnt")
    parser.add_argument("--device", default="/dev/loop0")
    parser.add_argument("--uid", type=int, default=10000)
    return parser.parse_args()


ARGS = parse_args()
sys.path[:0] = ARGS.path.split(":")

from warden_framework.config import settings_from_dict  # noqa: E402
from warden_framework.container import Container  # noqa: E402
from warden_framework.errors import DriverUnavailable, WardenError  # noqa: E402
from warden_quota_disk import kernel, userquota  # noqa: E402
from warden_quota_disk.setquota_driver import SetquotaDriver  # noqa: E402


def report(step: str, **data) -> None:
    print("GUEST " + json.dumps({"step": step, **data}, sort_keys=True), flush=True)


def as_uid(uid: int, action) -> dict:
    """Run `action()` in a child process with uid/gid `uid`; return the dict it returns."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            result = action()
        except BaseException as exc:  # the child reports everything, it must never return
            result = {"error": repr(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def write_file(path: Path, size: int):
    """An action: write `size` zero bytes to `path`; report bytes written and the errno."""
    def action() -> dict:
        written, err = 0, None
        try:
            with open(path, "wb", buffering=0) as f:
                while written < size:
                    written += f.write(bytes(min(64 * KiB, size - written)))
                os.fsync(f.fileno())
        except OSError as exc:
            err = errno.errorcode.get(exc.errno, str(exc.errno))
        return {"written": written, "errno": err}
    return action


def make_files(directory: Path, count: int):
    def action() -> dict:
        made, err = 0, None
        try:
            for i in range(count):
                (directory / f"f{i}").touch()
                made += 1
        except OSError as exc:
            err = errno.errorcode.get(exc.errno, str(exc.errno))
        return {"made": made, "errno": err}
    return action


def repquota_line(mount: str, uid: int) -> list[str]:
    """repquota's line for the uid: name, flags, KiB used, soft, hard, ..., inodes used."""
    for line in kernel.run(["repquota", "-u", "-n", mount]).splitlines():
        if line.split()[:1] == [f"#{uid}"]:
            return line.split()
    return []


def run_driver(mount: str, uid: int) -> None:
    depot = Path(mount) / "depot"
    depot.mkdir()
    settings = settings_from_dict({"server": {"container_depot_path": str(depot)}})
    SetquotaDriver.check_host(settings)
    report("check_host", ok=True, mount_point=userquota.depot_mount(depot).mount_point)
    driver = SetquotaDriver(settings)
    driver.setup_host(settings=settings)

    container = Container(id="guest000001", handle="guest", path=depot / "guest000001", uid=uid)
    kernel.run(["setquota", "-u", str(uid), "1", "2", "3", "4", mount])  # an earlier owner's
    container.records["disk"] = driver.setup_disk(container=container, settings=settings)
    report("setup_disk", record=container.records["disk"],
           read_back=driver.limit_disk(container=container, limits={}))

    report("limit_disk", response=driver.limit_disk(container=container, limits={"byte_limit": 2 * MiB}))
    upper = container.path / "upper"
    upper.mkdir(parents=True)
    os.chown(upper, uid, uid)
    report("write_1mib", **as_uid(uid, write_file(upper / "one", 1 * MiB)))
    report("write_4mib", **as_uid(uid, write_file(upper / "big", 4 * MiB)))
    report("info", info=driver.info(container=container), repquota=repquota_line(mount, uid))

    fields = driver.limit_disk(container=container, limits={"block_soft": 100, "inode_soft": 10,
                                                            "inode_hard": 20})
    report("limit_disk_aliases", response=fields)
    inodes_before = driver.info(container=container)["disk_stat"]["inodes_used"]
    report("inode_limit", inodes_before=inodes_before, **as_uid(uid, make_files(upper, 40)))

    before = (upper / "one").stat().st_size
    fields = driver.limit_disk(container=container, limits={"byte_limit": 512 * KiB, "inode": 0})
    report("below_usage", response=fields, size_before=before,
           size_after=(upper / "one").stat().st_size,
           **as_uid(uid, write_file(upper / "more", 64 * KiB)))

    try:
        driver.limit_disk(container=container, limits={"byte_limit": 2**64 - 1})
    except WardenError as exc:
        report("absurd_limit", error=str(exc), read_back=driver.limit_disk(container=container, limits={}))

    driver.teardown_disk(container=container, record=container.records["disk"])
    dq = kernel.get_user_quota(mount, uid)
    report("teardown_disk", limits=[dq.block_soft, dq.block_hard, dq.inode_soft, dq.inode_hard])


def check_refusal(mount: str, device: str) -> None:
    """The same filesystem mounted without usrquota: check_host must refuse and say so."""
    kernel.run(["umount", mount])
    kernel.run(["mount", "-t", "ext4", device, mount])
    settings = settings_from_dict({"server": {"container_depot_path": f"{mount}/depot"}})
    try:
        SetquotaDriver.check_host(settings)
        report("refusal", error=None)
    except DriverUnavailable as exc:
        report("refusal", error=str(exc))


def main() -> None:
    if ARGS.list_files:
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if path:
                print(os.path.abspath(path))
                cached = getattr(module, "__cached__", None)
                if cached and os.path.exists(cached):
                    print(os.path.abspath(cached))
        return
    try:
        run_driver(ARGS.mount, ARGS.uid)
        check_refusal(ARGS.mount, ARGS.device)
    except Exception as exc:  # everything the test should see goes out as a GUEST line
        report("error", error=repr(exc), traceback=traceback.format_exc())


if __name__ == "__main__":
    main()
