"""Every kernel and tool call of this plugin: commands (setquota, quotaon, btrfs, mkfs.btrfs,
mount, losetup), quotactl_fd(2) through ctypes, and the /proc and /sys files read.

The seam unit tests replace with a recording fake. Commands go through `run`, so a fake sees
the exact argv the drivers send. Limits are SET with the `setquota` command, as Warden does
(facts §5.8), and READ with quotactl(Q_GETQUOTA): it gives space used in bytes and every limit
as numbers, where `quota`/`repquota` print rounded, padded and flagged columns (Warden read
them with its own quotactl helper for the same reason, facts §11.6).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
KALLSYMS = "/proc/kallsyms"
FILESYSTEMS = "/proc/filesystems"

# <linux/quota.h>
USRQUOTA = 0
Q_GETFMT = 0x800004
Q_GETQUOTA = 0x800007
SYS_QUOTACTL_FD = 443  # same number on every architecture (asm-generic table, Linux 5.14)


class CommandFailed(Exception):
    """A command exited non-zero (or could not start); the text is its argv and stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv, self.returncode, self.stderr = argv, returncode, stderr.strip()
        super().__init__(f"{' '.join(argv)}: {self.stderr or f'exit status {returncode}'}")


def run(argv: list[str]) -> str:
    """Run a command, return its stdout; raise CommandFailed with its stderr otherwise."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandFailed(argv, 127, f"{argv[0]}: command not found") from None
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr or done.stdout)
    return done.stdout


def read_mountinfo() -> str:
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def read_filesystems() -> str:
    with open(FILESYSTEMS, encoding="ascii") as f:
        return f.read()


def have_command(name: str) -> bool:
    return shutil.which(name) is not None


def kernel_release() -> str:
    return os.uname().release


def kernel_has_symbol(names: tuple[str, ...]) -> bool:
    """True if /proc/kallsyms lists one of `names` (built in, or in a loaded module)."""
    wanted = set(names)
    try:
        with open(KALLSYMS, encoding="ascii", errors="replace") as f:
            return any(line.split()[2] in wanted for line in f if len(line.split()) >= 3)
    except OSError:
        return False


def module_available(name: str) -> bool:
    """True if modules.dep of the running kernel lists `name` (modprobe could load it)."""
    dep = Path("/lib/modules") / kernel_release() / "modules.dep"
    try:
        text = dep.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f"/{name}.ko" in line.split(":", 1)[0] for line in text.splitlines())


# ------------------------------------------------------------------------------ quotactl

@dataclass(frozen=True)
class Dqblk:
    """A user's quota as the kernel keeps it: limits in 1 KiB blocks, space in bytes."""

    block_soft: int
    block_hard: int
    space_used: int
    inode_soft: int
    inode_hard: int
    inodes_used: int


class _IfDqblk(ctypes.Structure):
    _fields_ = [("bhardlimit", ctypes.c_uint64), ("bsoftlimit", ctypes.c_uint64),
                ("curspace", ctypes.c_uint64), ("ihardlimit", ctypes.c_uint64),
                ("isoftlimit", ctypes.c_uint64), ("curinodes", ctypes.c_uint64),
                ("btime", ctypes.c_uint64), ("itime", ctypes.c_uint64), ("valid", ctypes.c_uint32)]


def _quotactl(mount_point: str, cmd: int, qid: int, buffer: ctypes._CData) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        result = libc.syscall(ctypes.c_long(SYS_QUOTACTL_FD), ctypes.c_long(fd),
                              ctypes.c_long((cmd << 8) | USRQUOTA), ctypes.c_long(qid),
                              ctypes.byref(buffer))
    finally:
        os.close(fd)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), mount_point)


def quota_format(mount_point: str) -> int:
    """Q_GETFMT: the quota format in use (2 vfsv0, 4 vfsv1); OSError ESRCH when quotas are off."""
    fmt = ctypes.c_uint32(0)
    _quotactl(mount_point, Q_GETFMT, 0, fmt)
    return fmt.value


def get_user_quota(mount_point: str, uid: int) -> Dqblk:
    """Q_GETQUOTA for `uid` on the filesystem mounted at `mount_point`."""
    dq = _IfDqblk()
    _quotactl(mount_point, Q_GETQUOTA, uid, dq)
    return Dqblk(block_soft=dq.bsoftlimit, block_hard=dq.bhardlimit, space_used=dq.curspace,
                 inode_soft=dq.isoftlimit, inode_hard=dq.ihardlimit, inodes_used=dq.curinodes)


# ------------------------------------------------------------------------------ btrfs and files

def loop_backing_file(device: str) -> str | None:
    """The file behind /dev/loopN, or None when `device` is not an attached loop device."""
    name = os.path.basename(device)
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def loop_devices_of(path: str) -> list[str]:
    """The /dev/loopN devices whose backing file is `path`."""
    real = os.path.realpath(path)
    found = []
    for dev in sorted(Path("/sys/block").glob("loop*")):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:  # no backing file: a free loop device
            continue
        if os.path.realpath(backing.removesuffix(" (deleted)")) == real:
            found.append(f"/dev/{dev.name}")
    return found


def make_sparse_file(path: Path, size: int) -> None:
    """Create `path` (which must not exist) as a sparse file of `size` bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def make_directory(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def remove_empty_directory(path: Path) -> bool:
    """rmdir `path`; False (and nothing done) when it is not empty, True when gone."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            return False
        raise
    return True


def count_inodes(path: str) -> int:
    """Distinct inodes under `path` (itself included), not crossing into other filesystems.

    btrfs qgroups count bytes only; this walk gives Info its inodes_used.
    """
    top = os.lstat(path)
    seen = {top.st_ino}
    pending = [path]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):  # changed while we walked
            continue
        for entry in entries:
            seen.add(entry.inode())
            if entry.is_dir(follow_symlinks=False) and _same_device(entry, top.st_dev):
                pending.append(entry.path)
    return len(seen)


def _same_device(entry: os.DirEntry, device: int) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_dev == device
    except FileNotFoundError:  # removed while we walked: a running container
        return False
