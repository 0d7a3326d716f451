"""Garden's StreamIn and StreamOut (garden-api.md §4.10-4.11): a tar stream into or out of a
container, made by a tar inside it as the given user (root when empty, as Guardian's), run as
a Garden process with a name Info does not list (process_spec.INTERNAL_PREFIX) and forgotten
once it ended. The tar's output files are opened as soon as it starts, so forgetting it (its
directory goes) never races the reading."""

from __future__ import annotations

import asyncio
import functools
import posixpath
import uuid
from collections.abc import AsyncIterator
from typing import BinaryIO

from warden_framework.container import Container
from warden_framework.errors import WardenError
from warden_framework.jobs import Job
from warden_framework.specs import JobSpec

from .http import Request, Response, Router, Streamed
from .process_spec import INTERNAL_PREFIX
from .stdin import StdinPipe
from .streams import follow

# Guardian makes the destination (as the user) before it untars; "$1" keeps it one word.
UNTAR = 'mkdir -p "$1" && exec tar -x -f - -C "$1"'
# How long StreamOut waits for its tar to end before it answers: a tar that fails at once
# (no such source) gets an error object instead of a 200 and a broken archive.
FAILURE_WAIT = 0.2
ERROR_BYTES = 4096


def register(router: Router, garden) -> None:
    router.add("PUT", "/containers/:handle/files", functools.partial(stream_in, garden))
    router.add("GET", "/containers/:handle/files", functools.partial(stream_out, garden))


async def stream_in(garden, request: Request) -> Response:
    """The request body (chunked, any size) into `tar -x` inside the container; 200 {} once
    it exited 0, its stderr as the error otherwise."""
    handle = request.params["handle"]
    container = garden.container(handle)
    destination = request.arg("destination") or ""
    if not destination:
        raise WardenError("stream in: destination is required")
    with garden.holding(handle):
        job, out, err = await _spawn(garden, container, ("sh", "-c", UNTAR, "sh", destination),
                                     request.arg("user"), stdin=True)
        out.close()
        with err:
            fd, job.stdin_fd = job.stdin_fd, None
            if fd is None:
                raise WardenError("stream in: the exec driver gave the tar no stdin")
            pipe = StdinPipe(fd)
            try:
                async for chunk in request.body_chunks():
                    await pipe.write(chunk)
            finally:
                pipe.end()
            status = await job.wait()
            if status != 0:
                raise WardenError(f"stream in to {destination} failed (tar exit status "
                                  f"{status}): {_text(err)}")
    return Response.json({})


async def stream_out(garden, request: Request) -> Streamed:
    """`tar -c` of the source inside the container, its stdout streamed as the chunked body.
    A source ending in `/` gives the directory's contents, else the entry under its name."""
    handle = request.params["handle"]
    container = garden.container(handle)
    source = request.arg("source") or ""
    if not source:
        raise WardenError("stream out: source is required")
    if source.endswith("/"):
        directory, entry = source, "."
    else:
        directory, entry = posixpath.split(source)
    argv = ("tar", "-c", "-f", "-", "-C", directory or ".", entry)
    with garden.holding(handle):
        job, out, err = await _spawn(garden, container, argv, request.arg("user"), stdin=False)
        with err:
            await asyncio.wait({asyncio.ensure_future(job.wait())}, timeout=FAILURE_WAIT)
            if job.done and job.exit_status != 0:
                out.close()
                raise WardenError(f"stream out of {source} failed (tar exit status "
                                  f"{job.exit_status}): {_text(err)}")
    return Streamed(_held(garden, handle, follow(job, out)))


async def _spawn(garden, container: Container, argv: tuple[str, ...], user: str | None,
                 stdin: bool) -> tuple[Job, BinaryIO, BinaryIO]:
    """Start an internal process; its output files open; forgotten once it ended."""
    spec = JobSpec(argv=argv, user=user or "root", name=INTERNAL_PREFIX + uuid.uuid4().hex,
                   stdin=stdin)
    runtime = garden.runtime
    job, *files = await runtime.locked(container, _spawn_and_open, runtime.orchestrator,
                                       container, spec)
    runtime.jobs.started(container, job)
    runtime.tasks.run(_forget_at_end(garden, container, job))
    return job, *files


def _spawn_and_open(orchestrator, container: Container, spec: JobSpec) -> tuple[Job, BinaryIO, BinaryIO]:
    job = orchestrator.spawn(container, spec, id_known=False)
    return job, open(job.stdout_path, "rb", buffering=0), open(job.stderr_path, "rb", buffering=0)


async def _forget_at_end(garden, container: Container, job: Job) -> None:
    await job.wait()
    garden.runtime.orchestrator.forget_job(container, job)


async def _held(garden, handle: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, holding the container's grace timer while they are sent."""
    with garden.holding(handle):
        async for chunk in chunks:
            yield chunk


def _text(f: BinaryIO) -> str:
    f.seek(0)
    return f.read(ERROR_BYTES).decode("utf-8", "replace").strip() or "no error output"
