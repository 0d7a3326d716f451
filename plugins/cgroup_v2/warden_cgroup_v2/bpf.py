"""The bpf(2) system call through ctypes, and the encoding of eBPF instructions.

Owns the few commands a cgroup device program needs (load, attach, query) and nothing about
what the program says: that is devices.py. Numbers are from include/uapi/linux/bpf.h and
bpf_common.h; the attr offsets are those of `union bpf_attr`, a stable ABI.
"""

import ctypes
import errno
import functools
import os
import platform
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# enum bpf_cmd
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15  # enum bpf_prog_type
BPF_CGROUP_DEVICE = 6  # enum bpf_attach_type

# Instruction fields (bpf_common.h, bpf.h).
BPF_LDX, BPF_JMP, BPF_ALU64 = 0x01, 0x05, 0x07  # classes
BPF_W, BPF_MEM = 0x00, 0x60  # load size and mode
BPF_AND, BPF_RSH, BPF_MOV = 0x50, 0x70, 0xB0  # ALU operations
BPF_JNE, BPF_JSET, BPF_EXIT = 0x50, 0x40, 0x90  # jump operations
BPF_K, BPF_X = 0x00, 0x08  # operand: the immediate, or the source register

# asm-generic numbers serve aarch64; an architecture missing here makes check_support say so.
SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280}

# Big enough for every field used below; the kernel reads min(size, its own size) and
# zero-fills the rest, so a newer kernel with a longer union is fine.
ATTR_SIZE = 128
LOG_SIZE = 1 << 16
OBJ_NAME_LEN = 16


@dataclass(frozen=True)
class Insn:
    """One eBPF instruction (struct bpf_insn). `off` of a jump counts instructions from the
    next one."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        # dst_reg is the low nibble on the little-endian machines SYSCALL_NUMBERS lists.
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def load_word(dst: int, src: int, off: int) -> Insn:
    """dst = *(u32 *)(src + off)"""
    return Insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off)


def mov_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def mov_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)


def and_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_AND | BPF_K, dst, imm=imm)


def rsh_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, imm=imm)


def jump_if_not_equal(dst: int, imm: int, off: int) -> Insn:
    """if dst != imm goto +off (64-bit compare, imm sign-extended)"""
    return Insn(BPF_JMP | BPF_JNE | BPF_K, dst, off=off, imm=imm)


def jump_if_any_bit(dst: int, imm: int, off: int) -> Insn:
    """if dst & imm goto +off"""
    return Insn(BPF_JMP | BPF_JSET | BPF_K, dst, off=off, imm=imm)


def exit_insn() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


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
        log = ctypes.create_string_buffer(LOG_SIZE)
        try:
            return _load(prog_type, code, license, name, log)
        except OSError:
            raise ProgramRejected(first.errno, log.value.decode(errors="replace").strip()) from None


def attach(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    """BPF_PROG_ATTACH: attach the program to the object `target_fd` (a cgroup directory)."""
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, target_fd, prog_fd, attach_type, flags)
    syscall(BPF_PROG_ATTACH, attr)


def query_programs(target_fd: int, attach_type: int) -> list[int]:
    """BPF_PROG_QUERY: the ids of the programs attached to `target_fd` itself (not the ones
    it inherits), in the order they run."""
    capacity = 4
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIIIQI", attr, 0, target_fd, attach_type, 0, 0,
                         ctypes.addressof(ids), capacity)
        try:
            syscall(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        (count,) = struct.unpack_from("<I", attr, 24)
        if count <= capacity:
            return list(ids[:count])
        capacity = count


def program_fd_by_id(prog_id: int) -> int:
    """BPF_PROG_GET_FD_BY_ID: an fd of the live program `prog_id`; ENOENT once it is freed."""
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<I", attr, 0, prog_id)
    return syscall(BPF_PROG_GET_FD_BY_ID, attr)


def syscall(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr, sizeof attr); raise OSError with the errno on failure."""
    number = SYSCALL_NUMBERS.get(platform.machine())
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
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("<IIQQ", attr, 0, prog_type, len(code) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_buf))
    if log is not None:
        struct.pack_into("<IIQ", attr, 24, 1, ctypes.sizeof(log), ctypes.addressof(log))
    struct.pack_into(f"{OBJ_NAME_LEN}s", attr, 48, name.encode("ascii")[: OBJ_NAME_LEN - 1])
    return syscall(BPF_PROG_LOAD, attr)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc
