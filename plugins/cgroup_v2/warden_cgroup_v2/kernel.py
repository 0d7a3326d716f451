"""Every system call of this plugin: control files, groups and signals (the core's cgroupfs,
named here), statfs, inotify, and the bpf(2) commands a cgroup device program needs (load,
attach, query).

Control files are plain files, so pure logic is tested on a tmp_path directory; what a plain
directory cannot imitate (populated, frozen, oom_kill, device programs) is tested on the real
kernel. inotify, statfs and bpf have no stdlib wrapper, so they go through libc with ctypes.
bpf(2)'s attr offsets are those of `union bpf_attr`, a stable ABI.
"""

import ctypes
import errno
import functools
import os
import platform
import select
import signal
import struct
import time
from collections.abc import Sequence
from pathlib import Path

# Control files, groups, kill and pids.max are the core's, named here too, where unit tests
# replace them.
from warden_framework.cgroupfs import (  # noqa: F401
    kill,
    make_group,
    pread_text,
    read_control,
    remove_group,
    set_pids_max,
    write_control,
)

from .bpf import Insn

IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK  # the inotify flags are the open(2) flags, by definition
_IN_CLOEXEC = os.O_CLOEXEC
# struct statfs is 120 bytes on 64-bit Linux; f_type (a long) comes first.
_STATFS_SIZE = 256

# enum bpf_cmd
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
# asm-generic numbers serve aarch64; an architecture missing here makes check_support say so.
BPF_SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280}
# Big enough for every field used below; the kernel reads min(size, its own size) and
# zero-fills the rest, so a newer kernel with a longer union is fine.
BPF_ATTR_SIZE = 128
BPF_LOG_SIZE = 1 << 16
BPF_OBJ_NAME_LEN = 16


def kill_all(pids: list[int]) -> None:
    """SIGKILL each pid; those already gone are skipped."""
    for pid in pids:
        kill(pid, signal.SIGKILL)


def filesystem_magic(path: Path) -> int:
    """statfs(2) f_type of the filesystem holding `path` (CGROUP2_SUPER_MAGIC for cgroup2)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def inotify_open(path: Path, mask: int = IN_MODIFY) -> int:
    """A non-blocking inotify descriptor watching `path`; kernfs signals IN_MODIFY on every
    change of a notifying control file (cgroup.events, memory.events)."""
    fd = _libc().inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "inotify_init1")
    if _libc().inotify_add_watch(fd, os.fsencode(path), mask) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, os.strerror(err), str(path))
    return fd


def inotify_drain(fd: int) -> bool:
    """Consume every queued inotify event; True if there was at least one."""
    seen = False
    while True:
        try:
            if not os.read(fd, 4096):
                return seen
        except BlockingIOError:
            return seen
        seen = True


def wait_readable(fd: int, deadline: float) -> bool:
    """Block until `fd` is readable or the monotonic `deadline` passes; True if readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    left_ms = max(0, int((deadline - time.monotonic()) * 1000))
    return bool(poller.poll(left_ms))


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.inotify_init1.argtypes = (ctypes.c_int,)
    libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    libc.syscall.restype = ctypes.c_long
    return libc


# ------------------------------------------------------------------------------ bpf(2)

class ProgramRejected(OSError):
    """BPF_PROG_LOAD failed; `log` holds what the verifier said (empty when it said nothing,
    e.g. for EPERM or ENOSYS)."""

    def __init__(self, errnum: int, log: str) -> None:
        super().__init__(errnum, os.strerror(errnum))
        self.log = log


def load_program(
    prog_type: int, insns: Sequence[Insn], license: str, name: str
) -> int:
    """Load a program and return its fd (O_CLOEXEC, as every bpf fd is).

    The first try asks for no verifier log, so a good program pays nothing for it; after a
    failure the load is repeated with a log to say why.
    """
    code = b"".join(insn.encode() for insn in insns)
    try:
        return _load(prog_type, code, license, name, log=None)
    except OSError as first:
        log = ctypes.create_string_buffer(BPF_LOG_SIZE)
        try:
            return _load(prog_type, code, license, name, log)
        except OSError:
            raise ProgramRejected(first.errno, log.value.decode(errors="replace").strip()) from None


def attach_program(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    """BPF_PROG_ATTACH: attach the program to the object `target_fd` (a cgroup directory)."""
    attr = ctypes.create_string_buffer(BPF_ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, target_fd, prog_fd, attach_type, flags)
    bpf(BPF_PROG_ATTACH, attr)


def query_programs(target_fd: int, attach_type: int) -> list[int]:
    """BPF_PROG_QUERY: the ids of the programs attached to `target_fd` itself (not the ones
    it inherits), in the order they run."""
    capacity = 4
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        attr = ctypes.create_string_buffer(BPF_ATTR_SIZE)
        struct.pack_into("<IIIIQI", attr, 0, target_fd, attach_type, 0, 0,
                         ctypes.addressof(ids), capacity)
        try:
            bpf(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        (count,) = struct.unpack_from("<I", attr, 24)
        if count <= capacity:
            return list(ids[:count])
        capacity = count


def program_fd_by_id(prog_id: int) -> int:
    """BPF_PROG_GET_FD_BY_ID: an fd of the live program `prog_id`; ENOENT once it is freed."""
    attr = ctypes.create_string_buffer(BPF_ATTR_SIZE)
    struct.pack_into("<I", attr, 0, prog_id)
    return bpf(BPF_PROG_GET_FD_BY_ID, attr)


def bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr); raise OSError with the errno on failure."""
    number = BPF_SYSCALL_NUMBERS.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    result = _libc().syscall(
        ctypes.c_long(number), ctypes.c_int(cmd), attr, ctypes.c_uint(ctypes.sizeof(attr))
    )
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _load(
    prog_type: int, code: bytes, license: str, name: str, log: ctypes.Array | None
) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    license_buf = ctypes.create_string_buffer(license.encode("ascii"))
    attr = ctypes.create_string_buffer(BPF_ATTR_SIZE)
    struct.pack_into("<IIQQ", attr, 0, prog_type, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_buf))
    if log is not None:
        struct.pack_into("<IIQ", attr, 24, 1, ctypes.sizeof(log), ctypes.addressof(log))
    struct.pack_into(f"{BPF_OBJ_NAME_LEN}s", attr, 48, name.encode("ascii")[: BPF_OBJ_NAME_LEN - 1])
    return bpf(BPF_PROG_LOAD, attr)
