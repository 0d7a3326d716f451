"""The device program: rule parsing and encoding (unit), then the attack itself on the real
kernel: a root child process in a cgroup v2 group opens and mknods devices.

Real-kernel groups are `<cgroup2 mount>/wdev-<random>`, removed by the fixture even when a
test fails; every node the child makes is unlinked by the child at once.
"""

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden_cgroup_v2 import bpf, devices, kernel
from warden_cgroup_v2.devices import Rule, parse_rule
from warden_cgroup_v2.errors import CgroupError

WAIT = 30.0  # deadline for the kernel to act; never reached when things work
RWM = frozenset("rwm")

# --------------------------------------------------------------------------- unit: rules


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("c 1:3 rwm", Rule("c", 1, 3, RWM)),
        ("c 136:* rwm", Rule("c", 136, None, RWM)),
        ("b *:* m", Rule("b", None, None, frozenset("m"))),
        ("a 7:0 r", Rule("a", 7, 0, frozenset("r"))),
        ("a", Rule("a", None, None, RWM)),
        ("c 4095:1048575 wr", Rule("c", 4095, 1048575, frozenset("rw"))),
    ],
)
def test_parse_rule_reads_v1_syntax(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "want"),
        ("c 1:3", "want"),
        ("c 1:3 rwm extra", "want"),
        ("x 1:3 rwm", "type 'x'"),
        ("c 1 rwm", "'1' is not <major>:<minor>"),
        ("c 1:3 rwx", "access 'rwx'"),
        ("c a:3 rwm", "'a' is not '*' or a number"),
        ("c 1:-3 rwm", "'-3' is not '*' or a number"),
        ("c 4096:0 rwm", "up to 4095"),
        ("c 1:1048576 rwm", "up to 1048575"),
    ],
)
def test_parse_rule_rejects_malformed_text_saying_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="device rule") as info:
        parse_rule(text)
    assert complaint in str(info.value)


def test_whitelist_matches_the_cgroup_v1_driver() -> None:
    v1_devices = pytest.importorskip("warden_cgroup_v1.devices")
    assert devices.ALLOWED_DEVICES == v1_devices.ALLOWED_DEVICES


# --------------------------------------------------------------------------- unit: encoding


def test_instruction_encoding_matches_the_kernel_layout() -> None:
    # struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm}, little-endian
    assert bpf.exit_insn().encode() == bytes.fromhex("9500000000000000")
    assert bpf.load_word(2, 1, 4).encode() == bytes.fromhex("6112040000000000")
    assert bpf.mov_imm(0, 1).encode() == bytes.fromhex("b700000001000000")
    assert bpf.jump_if_any_bit(3, ~7, 2).encode() == bytes.fromhex("450302" "00f8ffffff")
    assert bpf.jump_if_not_equal(4, 136, 3).encode() == bytes.fromhex("5504030088000000")


def test_whitelist_program_has_one_block_per_rule_and_denies_by_default() -> None:
    rules = [parse_rule(text) for text in devices.ALLOWED_DEVICES]
    insns = devices.program(rules)
    # prologue 6; per rule: type, major, [minor], access, r0 = 1, exit; epilogue 2
    assert len(insns) == 6 + sum(6 if rule.minor is not None else 5 for rule in rules) + 2 == 55
    assert insns[-2:] == [bpf.mov_imm(0, 0), bpf.exit_insn()]
    assert sum(insn == bpf.mov_imm(0, 1) for insn in insns) == len(rules)


def test_every_jump_lands_on_the_next_rule_or_the_final_deny() -> None:
    insns = devices.program(parse_rule(text) for text in devices.ALLOWED_DEVICES + ("a",))
    block_starts = {i + 1 for i, insn in enumerate(insns) if insn == bpf.exit_insn()}
    jumps = [(i, insn) for i, insn in enumerate(insns) if insn.code in (0x55, 0x45)]
    assert jumps
    for i, insn in jumps:
        assert i + 1 + insn.off in block_starts, f"jump at {i} lands mid-block"


def test_a_rule_for_every_type_checks_no_type() -> None:
    block = devices.program([parse_rule("a")])[6:-2]
    assert block == [bpf.jump_if_any_bit(devices.ACCESS, ~7, 2), bpf.mov_imm(0, 1), bpf.exit_insn()]


# --------------------------------------------------------------------------- real kernel

# The attacker: a root process that moves itself into the group, then tries each operation
# and prints, per operation, "ok" or the errno's name.
ATTACKER = r"""
import errno, json, os, stat, sys
group, workdir, ops = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(os.path.join(group, "cgroup.procs"), "w") as f:
    f.write("0")
MODES = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}
def attempt(kind, *args):
    if kind == "open":
        os.close(os.open(args[0], MODES[args[1]] | os.O_CLOEXEC))
    elif kind == "mknod":
        node = os.path.join(workdir, "node-%s-%d-%d" % tuple(args))
        mode = (stat.S_IFBLK if args[0] == "b" else stat.S_IFCHR) | 0o600
        os.mknod(node, mode, os.makedev(args[1], args[2]))
        os.unlink(node)
    elif kind == "openpty":
        for fd in os.openpty():
            os.close(fd)
def result(op):
    try:
        attempt(*op)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"
print(json.dumps([result(op) for op in ops]))
"""

# What the whitelist must allow, from v1's ALLOWED_DEVICES.
WHITELIST_ALLOWS = [
    ("open", "/dev/null", "rw"),
    ("open", "/dev/zero", "rw"),
    ("open", "/dev/full", "rw"),
    ("open", "/dev/random", "r"),
    ("open", "/dev/urandom", "rw"),
    ("openpty",),  # /dev/ptmx (5:2) and the new /dev/pts/N (136:N), read-write
    ("mknod", "c", 1, 3),
    ("mknod", "c", 136, 42),  # wildcard minor
]
# What it must refuse: block devices, and every char device it does not list.
WHITELIST_DENIES = [
    ("mknod", "b", 7, 0),  # loop0
    ("mknod", "b", 8, 0),  # sda
    ("open", "/dev/kmsg", "r"),  # 1:11
    ("mknod", "c", 1, 1),  # mem
    ("mknod", "c", 1, 11),  # kmsg
    ("mknod", "c", 10, 229),  # fuse, no longer in a container's /dev
    ("mknod", "c", 4, 1),  # tty1
]


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            _, target, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return Path(target)
    return None


@pytest.fixture
def cgroup2_root() -> Path:
    """The cgroup2 mount, after skipping (saying why) where device programs cannot work."""
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_SYS_ADMIN for bpf(2) and mknod)")
    root = _cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup2 mount in /proc/self/mounts")
    reason = devices.check_support()
    if reason:
        pytest.skip(reason)
    return root


@pytest.fixture
def device_group(cgroup2_root: Path) -> Iterator[Path]:
    """A fresh group `wdev-<random>` on the cgroup2 mount, removed with its children after."""
    group = cgroup2_root / f"wdev-{secrets.token_hex(4)}"
    group.mkdir()
    yield group
    _remove_tree(group)


@pytest.fixture
def block_device() -> str:
    """A block device node of the host's /dev, for an open the program must refuse."""
    for entry in sorted(os.scandir("/dev"), key=lambda e: e.name):
        if stat.S_ISBLK(entry.stat(follow_symlinks=False).st_mode):
            return entry.path
    pytest.skip("no block device node in /dev")


def _remove_tree(group: Path) -> None:
    if not group.exists():
        return
    for child in [p for p in group.iterdir() if p.is_dir()]:
        _remove_tree(child)
    deadline = time.monotonic() + WAIT
    while "populated 1" in (group / "cgroup.events").read_text():
        assert time.monotonic() < deadline, f"{group} still populated"
        time.sleep(0.01)
    group.rmdir()


def _attack(group: Path, workdir: Path, ops: list[tuple]) -> list[str]:
    """Run ATTACKER in `group` (its own session: no controlling tty) and return its results."""
    done = subprocess.run(
        [sys.executable, "-c", ATTACKER, str(group), str(workdir), json.dumps(ops)],
        capture_output=True, text=True, timeout=WAIT, start_new_session=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _outcomes(group: Path, workdir: Path, ops: list[tuple]) -> dict[tuple, str]:
    return dict(zip(ops, _attack(group, workdir, ops)))


@pytest.mark.integration
def test_without_a_program_the_attacks_succeed(device_group: Path, tmp_path: Path,
                                               block_device: str) -> None:
    # The control: the denials below come from the program, not from this host.
    ops = WHITELIST_ALLOWS + WHITELIST_DENIES + [("open", block_device, "r")]
    assert set(_attack(device_group, tmp_path, ops)) == {"ok"}


@pytest.mark.integration
def test_whitelist_allows_the_listed_char_devices(device_group: Path, tmp_path: Path) -> None:
    devices.attach(device_group)
    outcomes = _outcomes(device_group, tmp_path, WHITELIST_ALLOWS + [("open", "/dev/tty", "rw")])
    tty = outcomes.pop(("open", "/dev/tty", "rw"))
    assert tty != "EPERM"  # ENXIO without a controlling tty: the cgroup let it through
    assert outcomes == {op: "ok" for op in WHITELIST_ALLOWS}


@pytest.mark.integration
def test_whitelist_refuses_block_and_unlisted_devices_with_eperm(
    device_group: Path, tmp_path: Path, block_device: str
) -> None:
    devices.attach(device_group)
    ops = WHITELIST_DENIES + [("open", block_device, "r"), ("open", block_device, "rw")]
    assert _outcomes(device_group, tmp_path, ops) == {op: "EPERM" for op in ops}


@pytest.mark.integration
def test_custom_rules_grant_only_the_listed_access(
    device_group: Path, tmp_path: Path, block_device: str
) -> None:
    devices.attach(device_group, ("c 1:3 r", "c 1:5 rw", "b 7:* m", "a 10:200 m"))
    expected = {
        ("open", "/dev/null", "r"): "ok",
        ("open", "/dev/null", "w"): "EPERM",  # 'w' on a read-only rule
        ("mknod", "c", 1, 3): "EPERM",
        ("open", "/dev/zero", "rw"): "ok",
        ("mknod", "c", 1, 5): "EPERM",
        ("open", "/dev/urandom", "r"): "EPERM",  # not listed
        ("mknod", "b", 7, 3): "ok",
        ("mknod", "c", 7, 3): "EPERM",  # the rule is for block devices only
        ("open", block_device, "r"): "EPERM",
        ("mknod", "c", 10, 200): "ok",  # 'a' covers both types
        ("mknod", "b", 10, 200): "ok",
        ("mknod", "c", 10, 201): "EPERM",
    }
    assert _outcomes(device_group, tmp_path, list(expected)) == expected


@pytest.mark.integration
def test_attach_leaves_one_program_and_a_second_attach_replaces_it(device_group: Path) -> None:
    assert devices.attached(device_group) == 0
    devices.attach(device_group)
    first = _program_ids(device_group)
    devices.attach(device_group, ("c 1:3 rwm",))
    assert devices.attached(device_group) == 1
    assert _program_ids(device_group) != first


@pytest.mark.integration
def test_a_child_group_inherits_the_program_and_cannot_attach_its_own(
    device_group: Path, tmp_path: Path
) -> None:
    devices.attach(device_group)
    child = device_group / "nested"
    child.mkdir()
    refused = f"attach device program to {child}: Operation not permitted"
    with pytest.raises(CgroupError, match=re.escape(refused)):
        devices.attach(child, ("a",))
    ops = [("open", "/dev/kmsg", "r"), ("open", "/dev/null", "rw")]
    assert _attack(child, tmp_path, ops) == ["EPERM", "ok"]


@pytest.mark.integration
def test_program_dies_with_its_group(device_group: Path) -> None:
    devices.attach(device_group)
    (prog_id,) = _program_ids(device_group)
    os.close(kernel.program_fd_by_id(prog_id))  # alive while the group is
    _remove_tree(device_group)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            fd = kernel.program_fd_by_id(prog_id)
        except FileNotFoundError:
            break
        os.close(fd)
        assert time.monotonic() < deadline, f"program {prog_id} outlived its group"
        time.sleep(0.01)


@pytest.mark.integration
def test_attach_to_a_missing_group_names_it(cgroup2_root: Path) -> None:
    missing = cgroup2_root / f"wdev-missing-{secrets.token_hex(4)}"
    with pytest.raises(CgroupError, match=re.escape(f"open cgroup {missing}: No such file")):
        devices.attach(missing)


@pytest.mark.integration
def test_attach_to_a_plain_directory_names_it_and_the_errno(
    cgroup2_root: Path, tmp_path: Path
) -> None:
    refused = f"attach device program to {tmp_path}: Bad file descriptor"
    with pytest.raises(CgroupError, match=re.escape(refused)):
        devices.attach(tmp_path)


@pytest.mark.integration
def test_a_rejected_program_reports_the_verifier_log(
    device_group: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "program", lambda rules: [bpf.exit_insn()])  # r0 never set
    with pytest.raises(CgroupError) as info:
        devices.attach(device_group)
    text = str(info.value)
    assert text.startswith(f"load device program for {device_group}: Permission denied")
    assert "verifier log:" in text and "R0" in text
    assert devices.attached(device_group) == 0


@pytest.mark.integration
def test_check_support_names_the_missing_capability(cgroup2_root: Path) -> None:
    code = (
        "import os; from warden_cgroup_v2 import devices\n"  # import while root can read it
        "os.setgroups([]); os.setgid(65534); os.setuid(65534); print(devices.check_support())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=WAIT, check=False)
    assert done.returncode == 0, done.stderr
    refused = "cannot load a BPF cgroup device program: Operation not permitted"
    assert done.stdout.startswith(refused)
    assert "CAP_BPF" in done.stdout


def _program_ids(group: Path) -> list[int]:
    fd = os.open(group, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return kernel.query_programs(fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)

