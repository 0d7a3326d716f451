"""Jobs: ids, output files, exit status, and following output for link and stream (facts §6).

A job's stdout and stderr are files in `<container>/jobs/<id>/`, written by the job itself, so
output survives a server restart. The exec driver calls `Job.finish` from any thread when the
job ends; waiters on the event loop are woken through call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:
    from .specs import JobSpec

# How long a follower sleeps at end-of-file while the job still runs. Output that is there is
# read at once; this only bounds the latency of new output.
FOLLOW_INTERVAL = 0.01
CHUNK = 1 << 20
# What Link, Run and Stream deliver past job_output_limit at most: Warden's server stops
# reading once its buffer passed the limit, so it holds up to one read more (facts §12.2).
READ_CHUNK = 1 << 16
# Output files smaller than this are read on the event loop; larger ones in a thread.
SMALL_READ = 1 << 16
EXIT_KILLED = 255
# The next job's directory, made ahead (see make_job_dir); never a job id, so recovery
# removes a leftover one like any directory no snapshot names.
SPARE_DIR = ".spare"
# A job's files: its output, and where the exec driver records how it ended (hookspecs.spawn:
# the exit status must be readable from the job's directory; the format is the driver's).
JOB_FILES = ("stdout", "stderr", "exit_status")


class JobCounter:
    """Process-wide job ids starting at 1; resumes after the highest recovered id."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return next(self._counter)

    def resume_after(self, highest: int) -> None:
        with self._lock:
            self._counter = itertools.count(highest + 1)


@dataclass
class Job:
    id: int
    dir: Path
    script: bytes = b""
    privileged: bool = False
    rlimits: dict[str, int] = field(default_factory=dict)
    discard_output: bool = False
    log_tag: str | None = None
    exit_status: int | None = None
    record: dict = field(default_factory=dict)
    output_limit_hit: bool = False
    # Whether a snapshot on disk names this job: only then do its end and its removal make
    # the snapshot stale.
    recorded: bool = False
    # How long the exec driver may wait in spawn for the job's end (hookspecs.spawn).
    linger: float = 0.0
    # job_output_limit, for the check at the job's end (None: not checked, output discarded).
    output_limit: int | None = None
    # How far `log_tag` forwarding has sent each output file (to its last complete line): in
    # the snapshot, so after a restart forwarding resumes there and no line is skipped.
    log_offsets: dict[str, int] = field(default_factory=dict)
    # Garden processes (specs.JobSpec): the program, its environment, directory and user, the
    # client's name for it, stdin kept open, a TTY (rows, columns).
    argv: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    cwd: str | None = None
    user: str | None = None
    name: str | None = None
    stdin: bool = False
    tty: tuple[int, int] | None = None
    # Set by the exec driver when `stdin` or `tty`: the descriptor the front end writes the
    # job's input to (a pipe's write end, a TTY's master). Not in the record: it lives as
    # long as this server process; after a restart the job's stdin is at its end.
    stdin_fd: int | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_spec(cls, job_id: int, job_dir: Path, spec: JobSpec, rlimits: dict[str, int],
                  linger: float = 0.0, output_limit: int | None = None) -> Job:
        """A new job for `spec`, with `rlimits` merged with the server's (orchestrator.spawn)."""
        return cls(id=job_id, dir=job_dir, script=spec.script, privileged=spec.privileged,
                   rlimits=rlimits, discard_output=spec.discard_output, log_tag=spec.log_tag,
                   linger=linger, output_limit=output_limit, argv=spec.argv, env=spec.env,
                   cwd=spec.dir, user=spec.user, name=spec.name, stdin=spec.stdin,
                   tty=(spec.tty.rows, spec.tty.columns) if spec.tty else None)

    @property
    def process_id(self) -> str:
        """The job's name for Garden clients: the client's choice, else its number."""
        return self.name if self.name is not None else str(self.id)

    def __post_init__(self) -> None:
        self._done = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._lock = threading.Lock()
        if self.exit_status is not None:
            self._done.set()

    @property
    def stdout_path(self) -> Path:
        return self.dir / JOB_FILES[0]

    @property
    def stderr_path(self) -> Path:
        return self.dir / JOB_FILES[1]

    @property
    def status_path(self) -> Path:
        return self.dir / JOB_FILES[2]

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self, exit_status: int) -> None:
        """Record the exit status (first call wins) and wake every waiter. Thread-safe.

        A job whose output passed the limit ends as killed for it, however fast it exited
        before the server's periodic check (facts §6.4: Warden records the event and kills)."""
        if (self.output_limit is not None and not self._done.is_set()
                and self.output_size() > self.output_limit):
            self.output_limit_hit = True
            exit_status = EXIT_KILLED
        with self._lock:
            if self._done.is_set():
                return
            self.exit_status = exit_status
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._done.is_set():
                return self.exit_status  # type: ignore[return-value]
            fut = loop.create_future()
            self._waiters.append((loop, fut))
        await fut
        return self.exit_status  # type: ignore[return-value]

    def output_size(self) -> int:
        return sum(_size(p) for p in (self.stdout_path, self.stderr_path))

    def read_output(self, limit: int) -> tuple[bytes, bytes]:
        """Both outputs, at most `limit` bytes plus one read chunk combined (stdout first):
        what Warden's server buffers at most (facts §6.4)."""
        limit += READ_CHUNK
        out = _read(self.stdout_path, limit)
        err = _read(self.stderr_path, limit - len(out))
        return out, err

    async def follow(self, limit: int, start: dict[str, int] | None = None
                     ) -> AsyncIterator[tuple[str, bytes]]:
        """Yield (name, data) chunks of both files until the job is done, from the start of
        each file or from the offsets in `start`; at most `limit` plus one read chunk in all.
        Large reads run in the default executor, so a big file never stalls the loop."""
        files = {}
        limit += READ_CHUNK
        loop = asyncio.get_running_loop()
        try:
            sent = 0
            while True:
                finished = self.done  # read before draining so no output written before exit is lost
                progressed = False
                for name, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
                    if name not in files:
                        files[name] = _open(path)
                        if files[name] is not None and start:
                            files[name].seek(start.get(name, 0))
                    f = files[name]
                    if f is None or sent >= limit:
                        continue
                    data = await _read_some(loop, f, min(CHUNK, limit - sent))
                    if data:
                        sent += len(data)
                        progressed = True
                        yield name, data
                if finished and not progressed:
                    return
                if not progressed:
                    await asyncio.sleep(FOLLOW_INTERVAL)
        finally:
            for f in files.values():
                if f is not None:
                    f.close()

    def to_dict(self) -> dict:
        data = {"privileged": self.privileged, "discard_output": self.discard_output,
                "log_tag": self.log_tag, "exit_status": self.exit_status, "record": self.record,
                "output_limit_hit": self.output_limit_hit, "log_offsets": dict(self.log_offsets)}
        if self.argv is not None or self.name is not None:  # a Garden process
            data.update(argv=list(self.argv or []), env=list(self.env), cwd=self.cwd,
                        user=self.user, name=self.name, tty=list(self.tty) if self.tty else None)
        return data

    @classmethod
    def from_dict(cls, job_id: int, jobs_dir: Path, data: dict) -> Job:
        return cls(id=job_id, dir=jobs_dir / str(job_id), privileged=data.get("privileged", False),
                   discard_output=data.get("discard_output", False), log_tag=data.get("log_tag"),
                   exit_status=data.get("exit_status"), record=data.get("record", {}),
                   output_limit_hit=data.get("output_limit_hit", False),
                   log_offsets=data.get("log_offsets") or {}, recorded=True,
                   argv=tuple(data["argv"]) if data.get("argv") else None,
                   env=tuple(data.get("env") or ()), cwd=data.get("cwd"), user=data.get("user"),
                   name=data.get("name"), tty=tuple(data["tty"]) if data.get("tty") else None)


def make_job_dir(jobs_dir: Path, job_id: int) -> Path:
    """The directory of job `job_id`: the spare one renamed, when `prepare_spare` made one,
    else a new one. A directory and its files cost up to ~0.5 ms on ext4 after an idle spell,
    one rename a fraction of that; the spare is made after the response, off the request's path."""
    path = jobs_dir / str(job_id)
    try:
        os.rename(jobs_dir / SPARE_DIR, path)
    except FileNotFoundError:
        path.mkdir(parents=True)
    return path


def prepare_spare(jobs_dir: Path) -> None:
    """Make the spare job directory with its empty files, unless it is there. A crash half-way
    leaves a spare without some file, which the exec driver creates anyway."""
    spare = jobs_dir / SPARE_DIR
    if spare.is_dir():
        return
    spare.mkdir(parents=True)
    for name in JOB_FILES:
        os.close(os.open(spare / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of `path`, read in chunks (a single read(limit) would first
    allocate all of job_output_limit, even for an empty file)."""
    if limit <= 0:
        return b""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        chunks, size = [], 0
        while size < limit and (chunk := os.read(fd, min(CHUNK, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


async def _read_some(loop: asyncio.AbstractEventLoop, f, size: int) -> bytes:
    """Up to `size` bytes of the file `f`: on the loop when little is there, else in a thread."""
    if os.fstat(f.fileno()).st_size - f.tell() <= SMALL_READ:
        return f.read(size)
    return await loop.run_in_executor(None, f.read, size)


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
