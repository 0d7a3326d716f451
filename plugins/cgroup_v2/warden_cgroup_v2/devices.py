"""Device access on cgroup v2: the v1 whitelist compiled into a BPF_PROG_TYPE_CGROUP_DEVICE
program and attached to a container's group.

cgroup v2 has no devices controller. The kernel instead runs the device programs of the
task's group in the default hierarchy on every open and mknod of a device node (before the v1
devices controller, where one is mounted too), and refuses with EPERM when one returns 0.
The rules keep v1's syntax so that one list (cgroupfs.ALLOWED_DEVICES) serves both drivers.
"""

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from warden_framework.cgroupfs import ALLOWED_DEVICES

from . import bpf, kernel
from .errors import CgroupError

# struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}, where access_type is
# (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
CTX_ACCESS_TYPE, CTX_MAJOR, CTX_MINOR = 0, 4, 8
DEVICE_TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
MAX_MAJOR = (1 << 12) - 1  # dev_t: 12 bits of major, 20 of minor (MINORBITS)
MAX_MINOR = (1 << 20) - 1

# The kernel asks for a GPL-compatible license only of programs that call GPL-only helpers;
# this one calls no helper at all, so the string is informational.
LICENSE = "Apache-2.0"
PROGRAM_NAME = "warden_devices"

# No flag (neither BPF_F_ALLOW_OVERRIDE nor BPF_F_ALLOW_MULTI): the group then holds exactly
# one device program, a second attach replaces it in one step (so attach is idempotent and
# recover can simply attach again), and the kernel refuses any device program below the
# group, so the whitelist is the only device policy in the container's subtree. MULTI would
# only serve a group shared with another manager, which a container's group never is.
ATTACH_FLAGS = 0

# Registers: r1 is the context until the last load.
R0, R1, R2, R3, R4, R5 = range(6)
TYPE, ACCESS, MAJOR, MINOR = R2, R3, R4, R5


@dataclass(frozen=True)
class Rule:
    """One whitelist entry: type 'c', 'b' or 'a' (both), major/minor None for '*', and the
    accesses it grants, a non-empty subset of {'r', 'w', 'm'}."""

    type: str
    major: int | None
    minor: int | None
    access: frozenset[str]


def parse_rule(text: str) -> Rule:
    """Parse a v1 devices.allow line: "c 1:3 rwm", "c 136:* rw", or "a" for everything."""
    fields = text.split()
    if fields == ["a"]:
        return Rule("a", None, None, frozenset(ACCESS_BITS))
    if len(fields) != 3:
        raise ValueError(f"device rule {text!r}: want '<a|b|c> <major>:<minor> <rwm>'")
    kind, numbers, access = fields
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device rule {text!r}: type {kind!r} is not a, b or c")
    major, sep, minor = numbers.partition(":")
    if not sep:
        raise ValueError(f"device rule {text!r}: {numbers!r} is not <major>:<minor>")
    if not access or set(access) - set(ACCESS_BITS):
        raise ValueError(f"device rule {text!r}: access {access!r} is not made of r, w, m")
    return Rule(
        kind,
        _parse_number(text, major, MAX_MAJOR),
        _parse_number(text, minor, MAX_MINOR),
        frozenset(access),
    )


def program(rules: Iterable[Rule]) -> list[bpf.Insn]:
    """The device program: allow (return 1) when some rule matches the device and grants
    every requested access bit; otherwise deny (return 0). Unknown access bits never match."""
    insns = [
        bpf.load_word(TYPE, R1, CTX_ACCESS_TYPE),
        bpf.mov_reg(ACCESS, TYPE),
        bpf.and_imm(TYPE, 0xFFFF),
        bpf.rsh_imm(ACCESS, 16),
        bpf.load_word(MAJOR, R1, CTX_MAJOR),
        bpf.load_word(MINOR, R1, CTX_MINOR),
    ]
    for rule in rules:
        insns += _rule_block(rule)
    return insns + [bpf.mov_imm(R0, 0), bpf.exit_insn()]


def attach(group: Path, rules: Sequence[str] = ALLOWED_DEVICES) -> None:
    """Load the program for `rules` and attach it to the cgroup v2 directory `group`.

    The program fd is closed at once: the attachment holds the program, and it is freed
    with the group, so there is nothing to detach at teardown.
    """
    insns = program(parse_rule(text) for text in rules)
    group_fd = _open_group(group)
    try:
        try:
            prog_fd = kernel.load_program(
                bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, LICENSE, PROGRAM_NAME
            )
        except kernel.ProgramRejected as e:
            log = f"\nverifier log:\n{e.log}" if e.log else ""
            raise CgroupError(f"load device program for {group}: {_reason(e)}{log}") from e
        try:
            kernel.attach_program(group_fd, prog_fd, bpf.BPF_CGROUP_DEVICE, ATTACH_FLAGS)
        except OSError as e:
            raise CgroupError(f"attach device program to {group}: {_reason(e)}") from e
        finally:
            os.close(prog_fd)
    finally:
        os.close(group_fd)


def attached(group: Path) -> int:
    """How many device programs are attached to `group` itself (0 or 1 when only attach()
    put them there)."""
    group_fd = _open_group(group)
    try:
        return len(kernel.query_programs(group_fd, bpf.BPF_CGROUP_DEVICE))
    except OSError as e:
        raise CgroupError(f"query device programs of {group}: {_reason(e)}") from e
    finally:
        os.close(group_fd)


def check_support() -> str | None:
    """None when this kernel loads the whitelist program for this process, else why not."""
    try:
        fd = kernel.load_program(
            bpf.BPF_PROG_TYPE_CGROUP_DEVICE, program(map(parse_rule, ALLOWED_DEVICES)),
            LICENSE, PROGRAM_NAME,
        )
    except kernel.ProgramRejected as e:
        log = f" (verifier: {e.log.splitlines()[-1]})" if e.log else ""
        return f"cannot load a BPF cgroup device program: {_reason(e)}{log}"
    os.close(fd)
    return None


# Hints for the errnos whose text alone does not say what to fix.
HINTS = {
    errno.ENOSYS: "no bpf(2): kernel without CONFIG_BPF_SYSCALL",
    errno.EINVAL: "kernel without CONFIG_CGROUP_BPF?",
    errno.EPERM: "needs CAP_SYS_ADMIN or CAP_BPF; an ancestor group's device program"
    " attached without BPF_F_ALLOW_OVERRIDE or BPF_F_ALLOW_MULTI also refuses",
    errno.EBADF: "not a cgroup v2 directory?",
}


def _reason(e: OSError) -> str:
    hint = HINTS.get(e.errno or 0)
    return f"{e.strerror} ({hint})" if hint else str(e.strerror)


def _rule_block(rule: Rule) -> list[bpf.Insn]:
    """Checks that each jump past the block when they fail, then return 1."""
    checks: list[tuple[int, int, bool]] = []  # (register, value, compare is 'any bit')
    if rule.type != "a":
        checks.append((TYPE, DEVICE_TYPES[rule.type], False))
    if rule.major is not None:
        checks.append((MAJOR, rule.major, False))
    if rule.minor is not None:
        checks.append((MINOR, rule.minor, False))
    granted = sum(ACCESS_BITS[a] for a in rule.access)
    checks.append((ACCESS, ~granted, True))
    block = []
    for i, (register, value, any_bit) in enumerate(checks):
        skip = len(checks) - i - 1 + 2  # the checks after this one, then "r0 = 1; exit"
        jump = bpf.jump_if_any_bit if any_bit else bpf.jump_if_not_equal
        block.append(jump(register, value, skip))
    return block + [bpf.mov_imm(R0, 1), bpf.exit_insn()]


def _parse_number(text: str, field: str, limit: int) -> int | None:
    if field == "*":
        return None
    if not (field.isascii() and field.isdigit()) or int(field) > limit:
        raise ValueError(f"device rule {text!r}: {field!r} is not '*' or a number up to {limit}")
    return int(field)


def _open_group(group: Path) -> int:
    try:
        return os.open(group, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"open cgroup {group}: {e.strerror}") from e
