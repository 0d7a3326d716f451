"""Pure: what a job runs as. Warden's contract (facts §6.2): bash reads the script on stdin,
as the container's user (root when privileged), with a minimal environment and rlimits.
A Garden process (hookspecs.spawn): its own argv, the environment it is given over HOME,
USER and PATH defaults, its directory (else the user's home), as the user it names; the
same rlimits. A bare program name is searched by wshd in the process's own PATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warden_framework.errors import WardenError

RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
# Linux's RLIMIT_* numbers (asm-generic/resource.h); Python's resource module lacks some.
RLIMIT_NUMBERS = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14,
}
# Warden's defaults when neither the config nor the request sets a limit (facts §6.2).
DEFAULT_RLIMITS = {
    "as": RLIM_INFINITY, "core": 0, "cpu": RLIM_INFINITY, "data": RLIM_INFINITY,
    "fsize": RLIM_INFINITY, "locks": RLIM_INFINITY, "memlock": 65536, "msgqueue": 819200,
    "nice": 0, "nofile": 1024, "nproc": 1024, "rss": RLIM_INFINITY, "rtprio": 0,
    "sigpending": 1024, "stack": 8 * 1024 * 1024,
}
ROOT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
USER_PATH = "/bin:/usr/bin"
USER_NAME = "vcap"
# A Garden process's PATH when its environment names none (Garden's defaults).
PROCESS_ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROCESS_USER_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to setuid: wshd refuses it


@dataclass(frozen=True)
class JobSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    rlimits: dict[int, tuple[int, int]]


@dataclass(frozen=True)
class User:
    """Who a Garden process runs as, in the container's ids."""

    name: str | None  # USER; None for a "uid:gid" that no passwd line names
    uid: int
    gid: int
    home: str


def job_spec(uid: int, privileged: bool, rlimits: dict[str, int], lang: str | None = None) -> JobSpec:
    """The process a Warden job becomes; `rlimits` are the merged config + request values."""
    if privileged:
        user, home, path, uid = "root", "/root", ROOT_PATH, 0
    else:
        user, home, path = USER_NAME, f"/home/{USER_NAME}", USER_PATH
    lang = lang or os.environ.get("LANG") or "en_US.UTF-8"
    return JobSpec(
        argv=["/bin/bash"],
        env={"HOME": home, "USER": user, "PATH": path, "LANG": lang},
        cwd=home, uid=uid, gid=uid, rlimits=_rlimits(rlimits),
    )


def needs_passwd(requested: str | None) -> bool:
    """Whether process_user must see the container's /etc/passwd for this user."""
    return requested not in (None, "", "root", USER_NAME)


def process_user(requested: str | None, vcap_uid: int, passwd: str) -> User:
    """The user a Garden process names: None or "root" is root, "vcap" the container's user,
    "uid:gid" those ids (home and name from passwd when a line has the uid), any other a
    name in `passwd` (the container's /etc/passwd); WardenError if no line has it."""
    if requested in (None, "", "root"):
        return User("root", 0, 0, "/root")
    if requested == USER_NAME:
        return User(USER_NAME, vcap_uid, vcap_uid, f"/home/{USER_NAME}")
    entries = parse_passwd(passwd)
    ids = _numeric_ids(requested)
    if ids is not None:
        known = next((e for e in entries if e.uid == ids[0]), None)
        return User(known.name if known else None, *ids, known.home if known else "/")
    found = next((e for e in entries if e.name == requested), None)
    if found is None:
        raise WardenError(f"unable to find user {requested}")
    return found


def parse_passwd(text: str) -> list[User]:
    """passwd(5) lines as users; malformed lines are skipped, as getpwnam does."""
    users = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[0] or not (_decimal(fields[2]) and _decimal(fields[3])):
            continue
        uid, gid = int(fields[2]), int(fields[3])
        if uid <= MAX_ID and gid <= MAX_ID:
            users.append(User(fields[0], uid, gid, fields[5] or "/"))
    return users


def process_env(entries: Sequence[str], user: User) -> dict[str, str]:
    """The environment of a Garden process: HOME, USER and PATH for `user`, then `entries`
    (KEY=VALUE, the container's before the process's), a later one replacing an earlier."""
    env = {"HOME": user.home, "PATH": PROCESS_ROOT_PATH if user.uid == 0 else PROCESS_USER_PATH}
    if user.name:
        env["USER"] = user.name
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise WardenError(f"invalid environment variable {entry!r}: want NAME=VALUE")
        env[name] = value
    return env


def process_spec(argv: Sequence[str], env: Sequence[str], cwd: str | None, user: User,
                 rlimits: Mapping[str, int]) -> JobSpec:
    """The process a Garden job becomes (hookspecs.spawn), with Warden's rlimit defaults."""
    if cwd and not cwd.startswith("/"):
        raise WardenError(f"working directory {cwd} is not an absolute path")
    return JobSpec(argv=list(argv), env=process_env(env, user), cwd=cwd or user.home,
                   uid=user.uid, gid=user.gid, rlimits=_rlimits(rlimits))


def exit_status(exit_code: int | None, signo: int | None) -> int:
    """Warden reports a death by signal as 255 (facts §6.3)."""
    return exit_code if exit_code is not None and signo is None else 255


def _rlimits(rlimits: Mapping[str, int]) -> dict[int, tuple[int, int]]:
    limits = {**DEFAULT_RLIMITS, **rlimits}
    return {RLIMIT_NUMBERS[name]: (value, value) for name, value in limits.items()}


def _numeric_ids(text: str) -> tuple[int, int] | None:
    """(uid, gid) of "uid:gid" in decimal, None if `text` is not of that form."""
    uid, sep, gid = text.partition(":")
    if not (sep and _decimal(uid) and _decimal(gid)):
        return None
    ids = int(uid), int(gid)
    if max(ids) > MAX_ID:
        raise WardenError(f"user {text}: ids above {MAX_ID} are not valid")
    return ids


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()
