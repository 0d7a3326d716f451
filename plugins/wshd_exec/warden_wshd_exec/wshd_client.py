"""Client side of wshd: start the daemon through its barrier, and speak its socket protocol.

Owns the wire constants (the same numbers as native/wshd/proto.h) and the launch handshake.
It does not own jobs' files, pids or records: callers open the descriptors and keep the pids.
The launcher process, pidfds and signals are kernel.py's; the socket protocol is this
plugin's own (wshd is its daemon), so it stays here.
"""

from __future__ import annotations

import enum
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import kernel

if TYPE_CHECKING:
    from subprocess import Popen

MAGIC = b"WSHD"
VERSION = 1
MAX_DATAGRAM = 65536
RLIM_INFINITY = 0xFFFF_FFFF_FFFF_FFFF
SOCKET_NAME = "wshd.sock"
PID_NAME = "wshd.pid"
NO_SUCH_JOB = "no such job"
MAX_OUTPUT_LIMIT = 2**63 - 1 - 2**20  # PROTO_MAX_OUTPUT_LIMIT

_HEADER = struct.Struct(">4sHH")
_FIELD = struct.Struct(">HI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RLIMIT = struct.Struct(">IQQ")


class Kind(enum.IntEnum):
    """Message kinds: requests SPAWN, WAIT, SIGNAL, PING; replies also ERROR and EXIT."""

    ERROR = 0
    SPAWN = 1
    WAIT = 2
    EXIT = 3
    SIGNAL = 4
    PING = 5


class Tag(enum.IntEnum):
    """Field tags (u16 tag, u32 length, value)."""

    ARG = 1
    ENV = 2
    DIR = 3
    UID = 4
    GID = 5
    RLIMIT = 6
    OUTPUT_LIMIT = 7  # u64: wshd copies stdout+stderr into the files and kills past this
    TTY = 8  # u8 1: stdin is a terminal, made the job's controlling terminal
    STATUS = 100
    PID = 101
    MESSAGE = 102
    EXIT_CODE = 103
    SIGNAL = 104
    SIGNO = 105
    GROUP = 106


class WshdError(Exception):
    """wshd failed to start, could not be reached, or refused a request (its message verbatim)."""


class NoSuchJob(WshdError):
    """WAIT or SIGNAL named a pid that is not a live job (already reaped, or never spawned)."""

    def __init__(self, pid: int) -> None:
        super().__init__(NO_SUCH_JOB)
        self.pid = pid


@dataclass(frozen=True)
class ExitInfo:
    """How a job ended: exactly one of exit_code and signal is set."""

    pid: int
    exit_code: int | None
    signal: int | None
    status_error: str | None = None  # wshd could not write the job's status file


@dataclass(frozen=True)
class Message:
    """One decoded datagram: its kind and its fields in order."""

    kind: int
    fields: tuple[tuple[int, bytes], ...]

    def get(self, tag: int) -> bytes | None:
        return next((value for t, value in self.fields if t == tag), None)

    def u32(self, tag: int) -> int | None:
        value = self.get(tag)
        if value is None:
            return None
        if len(value) != 4:
            raise WshdError(f"malformed reply from wshd: field {tag} is {len(value)} bytes, want 4")
        return int(_U32.unpack(value)[0])

    def failed(self) -> bool:
        return self.get(Tag.STATUS) not in (None, b"\x00")

    def message(self) -> str:
        return (self.get(Tag.MESSAGE) or b"").decode("utf-8", "replace")


def encode(kind: int, fields: Iterable[tuple[int, bytes]]) -> bytes:
    """Build one datagram: header, then each (tag, value) as a TLV field."""
    parts = [_HEADER.pack(MAGIC, VERSION, kind)]
    for tag, value in fields:
        parts.append(_FIELD.pack(tag, len(value)))
        parts.append(value)
    return b"".join(parts)


def decode(data: bytes) -> Message:
    """Parse one datagram; raise WshdError if it is not a well-formed wshd message."""
    if len(data) < _HEADER.size:
        raise WshdError(f"malformed reply from wshd: {len(data)} bytes")
    magic, version, kind = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise WshdError(f"malformed reply from wshd: header {data[:_HEADER.size]!r}")
    fields = []
    pos = _HEADER.size
    while pos < len(data):
        if len(data) - pos < _FIELD.size:
            raise WshdError(f"malformed reply from wshd: truncated field at {pos}")
        tag, length = _FIELD.unpack_from(data, pos)
        pos += _FIELD.size
        if length > len(data) - pos:
            raise WshdError(f"malformed reply from wshd: field {tag} runs past the end")
        fields.append((tag, data[pos : pos + length]))
        pos += length
    return Message(kind, tuple(fields))


def u32_field(tag: int, value: int) -> tuple[int, bytes]:
    return tag, _U32.pack(value)


def _text_field(tag: int, value: str | bytes) -> tuple[int, bytes]:
    return tag, os.fsencode(value)


def _rlimit_value(value: int) -> int:
    # resource.RLIM_INFINITY is -1 in Python; the wire says all ones.
    return RLIM_INFINITY if value < 0 else value


def spawn_fields(
    argv: Sequence[str | bytes],
    env: Mapping[str, str],
    cwd: str,
    uid: int,
    gid: int,
    rlimits: Mapping[int, tuple[int, int]],
    output_limit: int | None = None,
    tty: bool = False,
) -> list[tuple[int, bytes]]:
    """The fields of a SPAWN request; raise WshdError for what wshd would refuse anyway."""
    if not argv:
        raise WshdError("spawn: argv is empty")
    fields = [_text_field(Tag.ARG, arg) for arg in argv]
    for name, value in env.items():
        if not name or "=" in name:
            raise WshdError(f"spawn: bad environment variable name {name!r}")
        fields.append(_text_field(Tag.ENV, f"{name}={value}"))
    fields.append(_text_field(Tag.DIR, cwd))
    fields += [u32_field(Tag.UID, uid), u32_field(Tag.GID, gid)]
    for res, (soft, hard) in sorted(rlimits.items()):
        fields.append((Tag.RLIMIT, _RLIMIT.pack(res, _rlimit_value(soft), _rlimit_value(hard))))
    if output_limit is not None:
        if not 0 <= output_limit <= MAX_OUTPUT_LIMIT:
            raise WshdError(f"spawn: output limit {output_limit} out of range")
        fields.append((Tag.OUTPUT_LIMIT, _U64.pack(output_limit)))
    if tty:
        fields.append((Tag.TTY, b"\x01"))
    return fields


def parse_status_file(text: str, pid: int = 0) -> ExitInfo | None:
    """Read what wshd wrote to a job's status file (`exit N` or `signal N`).

    Returns None while the file is empty (job still running, or wshd died first) or when the
    text is not a status.
    """
    words = text.split()
    if len(words) != 2 or words[0] not in ("exit", "signal") or not words[1].isdigit():
        return None
    number = int(words[1])
    if words[0] == "exit":
        return ExitInfo(pid, number, None)
    return ExitInfo(pid, None, number)


def read_pid_file(run_dir: Path) -> int | None:
    """The host pid of the container init from run_dir/wshd.pid, or None if there is none."""
    try:
        text = (run_dir / PID_NAME).read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.strip().isdigit() else None


def _exit_info(msg: Message) -> ExitInfo:
    status_error = msg.message() if msg.get(Tag.MESSAGE) is not None else None
    pid = msg.u32(Tag.PID) or 0
    return ExitInfo(pid, msg.u32(Tag.EXIT_CODE), msg.u32(Tag.SIGNAL), status_error)


def _refusal(msg: Message) -> WshdError:
    if msg.message() == NO_SUCH_JOB:
        return NoSuchJob(msg.u32(Tag.PID) or 0)
    return WshdError(msg.message() or f"wshd refused {Kind(msg.kind).name}")


class WshdConnection:
    """One connection to run_dir/wshd.sock.

    Requests on one connection are answered in order, but EXIT messages for the jobs spawned or
    waited for on it arrive whenever those jobs end; the ones read while waiting for a reply are
    kept and handed out by wait_exit() first (see `pending`). A simple pattern is one connection
    per job: spawn, then wait_exit.
    """

    def __init__(self, run_dir: Path, timeout: float | None = 10.0) -> None:
        self.path = Path(run_dir) / SOCKET_NAME
        self.timeout = timeout
        self._pending: deque[ExitInfo | WshdError] = deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(str(self.path))
        except OSError as exc:
            self._sock.close()
            raise WshdError(f"connect {self.path}: {exc.strerror or exc}") from exc

    def __enter__(self) -> WshdConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        """The socket, for an event loop to wait until an EXIT can be read."""
        return self._sock.fileno()

    @property
    def pending(self) -> bool:
        """True if EXITs were already read off the socket: wait_exit() returns without blocking."""
        return bool(self._pending)

    def spawn(
        self,
        argv: Sequence[str | bytes],
        env: Mapping[str, str],
        cwd: str,
        uid: int,
        gid: int,
        rlimits: Mapping[int, tuple[int, int]],
        stdin_fd: int,
        stdout_fd: int,
        stderr_fd: int,
        status_fd: int,
        *,
        output_limit: int | None = None,
        tty: bool = False,
    ) -> int:
        """Start a job; return its pid inside the container. Its EXIT comes on this connection.

        With output_limit, the job writes into pipes and wshd copies them into stdout_fd and
        stderr_fd, also after the job's exit while a process of it holds them; once more than
        output_limit bytes (both together) came, it stops, closes the pipes and kills the job's
        process group, so the files grow at most 64 KiB past the limit. EXIT comes after what
        the job wrote before exiting is in the files. None: the fds are the job's own.
        With tty, stdin_fd is a terminal (a pseudo-terminal's slave) that becomes the
        controlling terminal of the job's new session."""
        fields = spawn_fields(argv, env, cwd, uid, gid, rlimits, output_limit, tty)
        data = encode(Kind.SPAWN, fields)
        if len(data) > MAX_DATAGRAM:
            raise WshdError(f"spawn: request is {len(data)} bytes, max {MAX_DATAGRAM}")
        self._send(data, [stdin_fd, stdout_fd, stderr_fd, status_fd])
        reply = self._reply(Kind.SPAWN)
        if reply.failed():
            raise _refusal(reply)
        pid = reply.u32(Tag.PID)
        if not pid:
            raise WshdError("malformed reply from wshd: SPAWN ok without PID")
        return pid

    def request_wait(self, pid: int) -> None:
        """Ask for pid's EXIT on this connection without blocking; wait_exit() delivers it."""
        self._send(encode(Kind.WAIT, [u32_field(Tag.PID, _check_pid(pid))]))

    def wait(self, pid: int, timeout: float | None = None) -> ExitInfo:
        """Block until job pid ends; NoSuchJob if it is not a live job (read its status file).

        For an event loop, use request_wait() and wait_exit() on readability instead.
        """
        self.request_wait(pid)
        others: list[ExitInfo | WshdError] = []
        try:
            while True:
                try:
                    info = self.wait_exit(timeout)
                except NoSuchJob as exc:
                    if exc.pid == pid:
                        raise
                    others.append(exc)
                    continue
                if info.pid == pid:
                    return info
                others.append(info)
        finally:
            self._pending.extendleft(reversed(others))

    def wait_exit(self, timeout: float | None = None) -> ExitInfo:
        """The next EXIT on this connection (blocking up to timeout; None = forever)."""
        if self._pending:
            return _unwrap(self._pending.popleft())
        msg = self._recv(timeout)
        if msg.kind in (Kind.EXIT, Kind.WAIT):
            return _unwrap(self._as_event(msg))
        if msg.kind == Kind.ERROR:
            raise WshdError(msg.message())
        raise WshdError(f"unexpected {_kind_name(msg.kind)} message from wshd")

    def signal(self, pid: int, signo: int, group: bool = True) -> None:
        """Send signo to job pid (to its whole process group if group); NoSuchJob if not live."""
        fields = [
            u32_field(Tag.PID, _check_pid(pid)),
            u32_field(Tag.SIGNO, signo),
            (Tag.GROUP, b"\x01" if group else b"\x00"),
        ]
        self._send(encode(Kind.SIGNAL, fields))
        reply = self._reply(Kind.SIGNAL)
        if reply.failed():
            raise _refusal(reply)

    def ping(self) -> bool:
        """True if wshd answers; False if it is gone or answers wrongly."""
        try:
            self._send(encode(Kind.PING, []))
            return not self._reply(Kind.PING).failed()
        except (WshdError, OSError):
            return False

    def _as_event(self, msg: Message) -> ExitInfo | WshdError:
        return _exit_info(msg) if msg.kind == Kind.EXIT else _refusal(msg)

    def _send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        try:
            self._sock.settimeout(self.timeout)
            if fds:
                socket.send_fds(self._sock, [data], list(fds))
            else:
                self._sock.send(data)
        except OSError as exc:
            raise WshdError(f"send to {self.path}: {exc.strerror or exc}") from exc

    def _recv(self, timeout: float | None) -> Message:
        try:
            self._sock.settimeout(timeout)
            data = self._sock.recv(MAX_DATAGRAM)
        except TimeoutError as exc:
            raise WshdError(f"no message from {self.path} within {timeout} s") from exc
        except OSError as exc:
            raise WshdError(f"receive from {self.path}: {exc.strerror or exc}") from exc
        if not data:
            raise WshdError(f"{self.path}: wshd closed the connection")
        return decode(data)

    def _reply(self, kind: Kind) -> Message:
        # EXITs and WAIT refusals may arrive before the reply; they belong to wait_exit().
        while True:
            msg = self._recv(self.timeout)
            if msg.kind in (Kind.EXIT, Kind.WAIT):
                self._pending.append(self._as_event(msg))
            elif msg.kind == Kind.ERROR:
                raise WshdError(msg.message())
            elif msg.kind == kind:
                return msg
            else:
                raise WshdError(f"unexpected {_kind_name(msg.kind)} reply to {kind.name}")


def _unwrap(event: ExitInfo | WshdError) -> ExitInfo:
    if isinstance(event, WshdError):
        raise event
    return event


def _kind_name(kind: int) -> str:
    return Kind(kind).name if kind in Kind._value2member_map_ else f"kind {kind}"


def _check_pid(pid: int) -> int:
    if not 0 < pid < 2**31:
        raise WshdError(f"bad pid {pid}")
    return pid


def is_alive(run_dir: Path, timeout: float = 5.0) -> bool:
    """True if a wshd serves run_dir/wshd.sock and answers PING."""
    try:
        with WshdConnection(run_dir, timeout) as conn:
            return conn.ping()
    except WshdError:
        return False


def _read_line(fd: int, deadline: float) -> str | None:
    """One line from a pipe, or None at end-of-file; WshdError past the deadline."""
    line = bytearray()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not kernel.readable(fd, left):
            raise WshdError("wshd: no answer on its stdout in time")
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
    return line.decode("ascii", "replace").strip()


class WshdLaunch:
    """A wshd between clone and ready: the container init exists but waits for go()."""

    def __init__(self, proc: Popen[bytes], pid: int) -> None:
        self._proc = proc
        self.pid = pid
        # The init cannot be reaped before its parent hears "go", so this pidfd is its own.
        self._pidfd = kernel.pidfd_open(pid)

    def release(self, timeout: float = 30.0) -> None:
        """Let the container init set up its root; return once it serves, else WshdError."""
        self.go()
        self.wait_ready(timeout)

    def go(self) -> None:
        """Let the container init set up its root and start serving; do not wait for it."""
        try:
            self._close_stdin(b"go\n")
        except BrokenPipeError:
            raise self._failed() from None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the released init serves requests, else WshdError."""
        assert self._proc.stdout is not None
        try:
            line = _read_line(self._proc.stdout.fileno(), time.monotonic() + timeout)
        except WshdError:
            line = None
        if line != "ready":
            raise self._failed()
        self._finish()

    def abort(self) -> None:
        """Kill the container init and reap the launcher; harmless after release or abort."""
        if self._pidfd < 0:
            return
        # End-of-file before "go": the launcher kills and reaps the init itself.
        self._close_stdin(b"")
        kernel.wait_or_kill(self._proc)
        # In case the launcher was past the barrier or had to be killed.
        kernel.pidfd_kill(self._pidfd, 5.0)
        self._finish()

    def _close_stdin(self, data: bytes) -> None:
        stdin, self._proc.stdin = self._proc.stdin, None  # so communicate() leaves it alone
        if stdin is not None:
            try:
                stdin.write(data)
            finally:
                stdin.close()

    def _failed(self) -> WshdError:
        # On failure the launcher prints "wshd: <reason>", kills and reaps the init, exits 1.
        answer = kernel.communicate(self._proc, timeout=10)
        if answer is None:
            self.abort()
            return WshdError("wshd: release: no answer from the launcher")
        _, err = answer
        self.abort()
        text = err.decode("utf-8", "replace").strip()
        return WshdError(text or f"wshd: release: launcher exited with {self._proc.returncode}")

    def _finish(self) -> None:
        kernel.communicate(self._proc)
        os.close(self._pidfd)
        self._pidfd = -1


def make_mount_seed(binary: Path, directory: Path, timeout: float = 10.0) -> int:
    """The mount namespace containers are built in, as a descriptor (see wshd's rootfs.c).

    A container's mount namespace starts as a copy of its launcher's, and the launcher's of
    the server's, which holds a mount or two per container: at 900 live containers the
    copies and the detach of the old root took ~5.5 ms of each start. The seed holds a tmpfs,
    /proc and an empty /root. `wshd --make-mount-seed DIR` makes it (over DIR, in a copy of
    this namespace) and waits; the namespace outlives it through the descriptor.
    """
    proc = kernel.start_launcher([os.fspath(binary), "--make-mount-seed", os.fspath(directory)])
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = _read_line(proc.stdout.fileno(), time.monotonic() + timeout)
        if line != "ready":
            proc.kill()
            _, err = kernel.communicate(proc) or (b"", b"")
            text = err.decode("utf-8", "replace").strip()
            raise WshdError(text or f"wshd: make the mount seed: exited with {proc.returncode}")
        return kernel.mount_namespace(proc.pid)
    finally:
        proc.stdin.close()
        kernel.wait_or_kill(proc)


def start_wshd(
    binary: Path,
    run_dir: Path,
    root_dir: Path,
    hostname: str,
    binds: Sequence[tuple[str, str, bool]],
    timeout: float = 10.0,
    cgroup_tasks: Sequence[str] = (),
    id_map: tuple[int, int] | None = None,
    mount_seed: int | None = None,
) -> WshdLaunch:
    """Start wshd up to its barrier and return the launch (its .pid is the init's host pid).

    binds are (host source, container destination, read_only). The init is born in the cgroups
    whose `tasks` files `cgroup_tasks` names. id_map (host base, count) gives it a user
    namespace whose ids 0..count-1 are host ids base..base+count-1; None: no user namespace.
    mount_seed (from make_mount_seed) is the mount namespace its root is built in; None: a
    copy of this process's.
    The caller calls release() (or go() and later wait_ready()), or abort() to give up.
    """
    args = [os.fspath(binary), "--run", os.fspath(run_dir), "--root", os.fspath(root_dir)]
    args += ["--hostname", hostname]
    for src, dst, read_only in binds:
        args += ["--bind", f"{src}:{dst}:{'ro' if read_only else 'rw'}"]
    for path in cgroup_tasks:
        args += ["--cgroup-tasks", path]
    if id_map is not None:
        args += ["--id-map", f"{id_map[0]}:{id_map[1]}"]
    if mount_seed is not None:
        args += ["--mount-seed-fd", str(mount_seed)]
    proc = kernel.start_launcher(args, pass_fds=() if mount_seed is None else (mount_seed,))
    assert proc.stdout is not None
    try:
        line = _read_line(proc.stdout.fileno(), time.monotonic() + timeout)
    except WshdError:
        line = None
    words = (line or "").split()
    if len(words) != 2 or words[0] != "pid" or not words[1].isdigit():
        proc.kill()
        _, err = kernel.communicate(proc) or (b"", b"")
        text = err.decode("utf-8", "replace").strip()
        raise WshdError(text or f"wshd: start: launcher exited with {proc.returncode}")
    return WshdLaunch(proc, int(words[1]))


def kill_wshd(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL a container init (its whole pid namespace dies with it) and wait for its exit.

    The init's parent exits at start-up, so it is our child only if we are a child subreaper
    (prctl PR_SET_CHILD_SUBREAPER); then it is reaped here, else by whoever adopted it.
    """
    if not kernel.kill_and_reap(pid, timeout):
        raise WshdError(f"wshd {pid} did not exit within {timeout} s of SIGKILL")
