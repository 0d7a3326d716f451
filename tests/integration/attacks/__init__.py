"""The attacker's kit of the containment tests (issue 11): attack.c, a static program that makes
the system calls an attacker inside a container would make and prints what the kernel answered,
and helpers to run it in a container through the real server and to act as a host user."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

SOURCE = Path(__file__).with_name("attack.c")
MOUNT = "/mnt/attack"  # where every attacking container has the program (a read-only bind)
BIN = f"{MOUNT}/attack"
NOBODY = 65534

AS_ROOT_AND_VCAP = pytest.mark.parametrize("privileged", [True, False], ids=["root", "vcap"])


class Outcome(NamedTuple):
    result: str  # "OK" or the errno's name, e.g. "EPERM"
    detail: str  # what a successful read read, or the step's own note


@pytest.fixture(scope="session")
def attack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory (under /tmp, so a create may bind it) holding the compiled attack program."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the attack program")
    d = tmp_path_factory.mktemp("attack")
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "attack"), str(SOURCE)],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    return d


def attack_bind(attack_dir: Path) -> dict:
    return {"src_path": str(attack_dir), "dst_path": MOUNT, "mode": "ro"}


def create(client, attack_dir: Path, *binds: dict, **fields) -> str:
    """A container with the attack program at BIN and `binds`; its handle."""
    return client.create(bind_mounts=[attack_bind(attack_dir), *binds], **fields).handle


def sh(client, handle: str, script: str, privileged: bool = False):
    return client.run(handle=handle, script=script.encode(), privileged=privileged)


def attack(client, handle: str, *steps: str, privileged: bool = False) -> list[Outcome]:
    """Run the attack program in the container with `steps`; one Outcome per step."""
    resp = sh(client, handle, " ".join([BIN, *map(shlex.quote, steps)]), privileged)
    lines = resp.stdout.decode(errors="replace").splitlines()
    assert resp.exit_status == 0 and len(lines) == len(steps), (resp.exit_status, resp.stdout, resp.stderr)
    outcomes = []
    for line in lines:
        _, result, *detail = line.split(" ", 2)
        outcomes.append(Outcome(result, detail[0] if detail else ""))
    return outcomes


def host_handle(attack_dir: Path, path: Path | str) -> tuple[str, str]:
    """The file handle (type, hex bytes) of a host file, as name_to_handle_at gives it to root
    on the host: what an attacker who knows the file's inode would forge."""
    out = subprocess.run([str(attack_dir / "attack"), f"handle-of:{path}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "OK", out
    return out[2], out[3]


def as_host_user(*argv: str, groups: str | None = None, **kw) -> subprocess.CompletedProcess:
    """Run argv on the host as `nobody` (no supplementary groups unless `groups`).

    Through /bin/sh: setpriv keeps root's capabilities until its own execve, so the program
    it names would be found with CAP_DAC_OVERRIDE; sh, already without them, finds argv[0]
    as the user would."""
    who = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}"]
    who += [f"--groups={groups}"] if groups else ["--clear-groups"]
    return subprocess.run([*who, "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
                          capture_output=True, text=True, **kw)


def canary() -> str:
    return "CANARY-" + secrets.token_hex(16)


def container_range(client, handle: str) -> tuple[int, int]:
    """The host ids (first, count) that the container's root and users map to, as the
    kernel reports them inside."""
    first = sh(client, handle, "cat /proc/self/uid_map").stdout.decode().split()
    assert first[0] == "0", first
    return int(first[1]), int(first[2])
