"""The SetquotaDriver's own code on a kernel with the vfs quota format: run-guest.sh boots
Debian's stock kernel under qemu with an ext4 image mounted with usrquota, guest_check.py
calls the driver's hooks there and prints `GUEST {json}` lines, checked here. In the same boot
guest_contract.py runs the framework's disk contract (TestSetquotaDiskContract) with pytest,
whose output comes back as `GUEST-PYTEST ...` lines.

Skips, printing why, only where qemu, the Debian kernel or Debian's python3 cannot be had.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUN_GUEST = Path(__file__).parent / "guest" / "run-guest.sh"
SKIP = 77
KiB, MiB = 1024, 2**20
UID = 10000
CONTRACT_MIN_PASSED = 15  # TestSetquotaDiskContract has 20 tests; fewer means some went missing
PYTEST_SUMMARY = re.compile(r"^=* ?(\d+ [a-z]+(?:, \d+ [a-z]+)*) in [\d.]+s")


@pytest.fixture(scope="module")
def guest_output() -> str:
    """Boot the guest once for this module: everything run-guest.sh printed."""
    proc = subprocess.run(["bash", str(RUN_GUEST)], capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode == SKIP:
        pytest.skip(proc.stdout.strip().removeprefix("SKIP: "))
    assert proc.returncode == 0, f"run-guest.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def guest(guest_output) -> dict[str, dict]:
    """guest_check.py's steps: step name -> what the guest reported."""
    steps = {}
    for line in guest_output.splitlines():
        if line.startswith("GUEST {"):
            step = json.loads(line.removeprefix("GUEST "))
            steps[step.pop("step")] = step
    assert "error" not in steps, steps["error"]["traceback"]
    assert "teardown_disk" in steps and "refusal" in steps, f"guest stopped early:\n{guest_output}"
    return steps


def test_guest_hook_check_host_passes_on_a_usrquota_mount(guest):
    assert guest["check_host"] == {"ok": True, "mount_point": "/mnt"}


def test_guest_hook_setup_disk_resets_the_uid_to_zero(guest):
    assert guest["setup_disk"]["record"] == {"mount_point": "/mnt", "uid": UID}
    assert set(guest["setup_disk"]["read_back"].values()) == {0}


def test_guest_hook_limit_disk_reads_back_the_byte_limit(guest):
    response = guest["limit_disk"]["response"]
    assert response["byte_limit"] == response["byte"] == response["byte_hard"] == 2 * MiB
    assert response["block_limit"] == 2048 and response["block_soft"] == 0


def test_guest_write_within_the_limit_succeeds_and_past_it_gets_edquot(guest):
    assert guest["write_1mib"] == {"errno": None, "written": MiB}
    assert guest["write_4mib"]["errno"] == "EDQUOT"
    assert guest["write_4mib"]["written"] < 2 * MiB


def test_guest_hook_info_reports_the_uids_usage_as_repquota_does(guest):
    stat = guest["info"]["info"]["disk_stat"]
    name, _flags, used_kib, soft, hard, inodes = guest["info"]["repquota"][:6]
    assert name == f"#{UID}" and (soft, hard) == ("0", "2048")
    assert stat["bytes_used"] == int(used_kib) * KiB
    assert 2 * MiB - 64 * KiB <= stat["bytes_used"] <= 2 * MiB
    assert stat["inodes_used"] == int(inodes) == 3


def test_guest_hook_limit_disk_keeps_limits_not_in_the_request(guest):
    response = guest["limit_disk_aliases"]["response"]
    assert (response["block_soft"], response["byte_soft"]) == (100, 100 * KiB)
    assert response["block_limit"] == 2048  # kept from the byte_limit before
    assert (response["inode_soft"], response["inode_hard"], response["inode_limit"]) == (10, 20, 20)


def test_guest_inode_hard_limit_stops_file_creation(guest):
    step = guest["inode_limit"]
    assert step["errno"] == "EDQUOT" and step["inodes_before"] + step["made"] == 20


def test_guest_limit_below_usage_keeps_data_and_refuses_writes(guest):
    step = guest["below_usage"]
    assert step["response"]["byte_limit"] == 512 * KiB and step["response"]["inode_limit"] == 0
    assert step["size_after"] == step["size_before"] == MiB
    assert step["errno"] == "EDQUOT"


def test_guest_absurd_limit_is_refused_and_the_quota_kept(guest):
    step = guest["absurd_limit"]
    assert "byte_limit 18446744073709551615 is too large" in step["error"]
    assert step["read_back"]["byte_limit"] == 512 * KiB


def test_guest_hook_teardown_disk_resets_the_uid(guest):
    assert guest["teardown_disk"]["limits"] == [0, 0, 0, 0]


def test_guest_check_host_refuses_a_mount_without_usrquota(guest):
    assert "/mnt is not mounted with usrquota or usrjquota" in guest["refusal"]["error"]


def test_guest_disk_contract_passes_for_setquota(guest_output):
    """The framework's disk contract, run by pytest in the guest against SetquotaDriver on a
    usrquota mount: its summary line counts only passes, and enough of them."""
    lines = [line.removeprefix("GUEST-PYTEST ") for line in guest_output.splitlines()
             if line.startswith("GUEST-PYTEST ")]
    report = "\n".join(lines) or guest_output
    summaries = [m.group(1) for m in map(PYTEST_SUMMARY.match, lines) if m]
    assert summaries, f"no pytest summary line from the guest:\n{report}"
    counts = {kind: int(n) for n, kind in (part.split() for part in summaries[-1].split(", "))}
    assert not {"failed", "error", "errors"} & counts.keys(), f"{summaries[-1]}:\n{report}"
    assert counts.get("passed", 0) >= CONTRACT_MIN_PASSED, f"{summaries[-1]}:\n{report}"
