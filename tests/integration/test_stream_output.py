"""Stream from a real container (wshd copying the job's output into its files under the
limit, the server sending the files by sendfile): a few MiB written while the stream runs
arrive whole and in order, checked against the checksum the container computed."""

from __future__ import annotations

import hashlib
import time

import pytest

from warden_framework.client import Client
from warden_framework.container import handle_from_wire
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings

PIECE = (1 << 20) + 1  # not a multiple of any chunk size on the way
PIECES = 5


@pytest.fixture
def big_output(tmp_path):
    """(server, client): a server whose job_output_limit leaves room for the test's output."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path, server={"job_output_limit": 16 << 20})
    with running_server(settings) as srv, Client(srv.settings.server.unix_domain_path) as c:
        yield srv, c


def test_streamed_output_matches_the_checksum_made_in_the_container(big_output):
    _, client = big_output
    h = client.create().handle
    script = (f"cd \"$HOME\" && for i in $(seq {PIECES}); do "
              f"head -c {PIECE} /dev/urandom | tee -a out.bin; sleep 0.05; done; "
              f"sha256sum out.bin >&2")
    job = client.spawn(handle=h, script=script.encode())
    frames = list(client.stream(handle=h, job_id=job.job_id))
    out = b"".join(f.data for f in frames if f.name == "stdout")
    err = b"".join(f.data for f in frames if f.name == "stderr")
    assert frames[-1].exit_status == 0, err
    assert len(out) == PIECES * PIECE
    assert err.split()[0].decode() == hashlib.sha256(out).hexdigest()
    assert all(f.data for f in frames[:-1])


def test_stream_after_the_job_ended_sends_its_whole_output(big_output):
    srv, client = big_output
    h = client.create().handle
    script = f"head -c {3 * PIECE} /dev/urandom | tee out.bin; sha256sum out.bin >&2"
    job = client.spawn(handle=h, script=f"cd \"$HOME\" && {script}".encode())
    container = srv.orchestrator.lookup(handle_from_wire(h))
    found = srv.orchestrator.find_job(container, job.job_id)
    deadline = time.monotonic() + 30
    while not found.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found.done, "the job did not end"
    frames = list(client.stream(handle=h, job_id=job.job_id))
    out = b"".join(f.data for f in frames if f.name == "stdout")
    err = b"".join(f.data for f in frames if f.name == "stderr")
    assert frames[-1].exit_status == 0, err
    assert err.split()[0].decode() == hashlib.sha256(out).hexdigest()
    assert len(out) == 3 * PIECE
