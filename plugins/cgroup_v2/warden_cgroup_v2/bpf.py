"""The encoding of eBPF instructions: the few a cgroup device program is made of, and the
numbers of the program and attach types it is loaded and attached as.

Nothing about what the program says (devices.py) nor the bpf(2) calls that load, attach and
query it (kernel.py). Numbers are from include/uapi/linux/bpf.h and bpf_common.h.
"""

import struct
from dataclasses import dataclass

BPF_PROG_TYPE_CGROUP_DEVICE = 15  # enum bpf_prog_type
BPF_CGROUP_DEVICE = 6  # enum bpf_attach_type

# Instruction fields (bpf_common.h, bpf.h).
BPF_LDX, BPF_JMP, BPF_ALU64 = 0x01, 0x05, 0x07  # classes
BPF_W, BPF_MEM = 0x00, 0x60  # load size and mode
BPF_AND, BPF_RSH, BPF_MOV = 0x50, 0x70, 0xB0  # ALU operations
BPF_JNE, BPF_JSET, BPF_EXIT = 0x50, 0x40, 0x90  # jump operations
BPF_K, BPF_X = 0x00, 0x08  # operand: the immediate, or the source register


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
