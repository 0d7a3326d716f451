"""A server whose descriptors run past 1023 still serves: select() refuses any descriptor
from 1024 up ("filedescriptor out of range in select()"), which a server holding many
containers, jobs and clients reaches. With 1,100 descriptors taken before the server starts,
every one it opens (wshd's pipes, its sockets, pidfds) is above the line."""

from __future__ import annotations

import os
import resource

import pytest

from warden_framework.client import Client
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings

TAKEN = 1100


@pytest.fixture
def descriptors_past_1023():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = TAKEN + 512
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {need} descriptors needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    taken = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(TAKEN)]
    try:
        probe = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        os.close(probe)
        assert probe > 1023
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_create_run_link_and_destroy_with_descriptors_past_1023(tmp_path, descriptors_past_1023):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    settings = server_settings(tmp_path)
    with running_server(settings) as srv, Client(settings.server.unix_domain_path) as c:
        handle = c.create().handle
        assert c.run(handle=handle, script=b"echo hi").stdout == b"hi\n"  # ends within linger
        job = c.spawn(handle=handle, script=b"sleep 0.2; echo late").job_id
        assert c.link(handle=handle, job_id=job).stdout == b"late\n"  # reaped by the reaper
        c.stop(handle=handle)
        c.destroy(handle=handle)
        srv.call(srv.server.wait_cleanups)
        assert c.list().handles == []
