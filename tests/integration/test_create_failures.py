"""A create that fails at any step, or a server killed in the middle of create or destroy,
leaves nothing behind: no mount, cgroup, veth, chain, process or depot dir (the autouse leak
checker fails the test otherwise)."""

import os
import signal

import pytest

from warden_framework.client import Client, ServerError
from warden_framework.testing.faults import FaultPlugin
from warden_framework.testing.server import running_server

from .conftest import _missing, server_settings

STEPS = ["setup_fs", "apply_limits", "setup_init", "setup_net", "start_init"]


@pytest.mark.parametrize("step", STEPS)
def test_failed_step_rolls_back_everything(tmp_path, step):
    if _missing():
        pytest.skip(_missing())
    settings = server_settings(tmp_path, drivers={"network": "iptables"})
    with running_server(settings, extra_plugins=[FaultPlugin(step)]) as srv:
        with Client(settings.server.unix_domain_path) as c:
            with pytest.raises(ServerError, match=f"^injected fault in {step} of "):
                c.create()
            assert list(c.list().handles) == []
        assert os.listdir(settings.depot) == []
        # the pools got everything back
        assert len(srv.orchestrator.pools.network) == srv.orchestrator.pools.network.size


def test_wshd_that_cannot_start_rolls_back(tmp_path):
    if _missing():
        pytest.skip(_missing())
    broken = tmp_path / "wshd"
    broken.write_text("#!/bin/sh\necho 'wshd: cannot start' >&2\nexit 1\n")
    broken.chmod(0o755)
    settings = server_settings(tmp_path, server={"wshd_path": str(broken)})
    with running_server(settings):
        with Client(settings.server.unix_domain_path) as c:
            with pytest.raises(ServerError, match="start wshd"):
                c.create()
        assert os.listdir(settings.depot) == []


@pytest.mark.parametrize("step", STEPS)
def test_server_killed_during_create_cleans_up_at_next_start(server_process, step):
    """Killed before `step` (so after every step before it): the snapshot still says born,
    and the next start tears everything down by the container's id."""
    srv = server_process
    srv.kill()
    srv.start(fault=f"{step}:kill")
    with Client(srv.socket) as c:
        with pytest.raises((EOFError, ConnectionError)):
            c.create()
    srv.proc.wait(30)
    srv.start()
    with Client(srv.socket) as c:
        assert list(c.list().handles) == []
    assert os.listdir(srv.settings.depot) == []


def test_server_killed_during_destroy_finishes_it_at_next_start(server_process):
    srv = server_process
    with Client(srv.socket) as c:
        handle = c.create().handle
        c.spawn(handle=handle, script=b"sleep 100")
    srv.kill()
    srv.start(fault="teardown_init:kill")
    with Client(srv.socket) as c:
        with pytest.raises((EOFError, ConnectionError)):
            c.destroy(handle=handle)
    srv.proc.wait(30)
    srv.start()
    with Client(srv.socket) as c:
        assert list(c.list().handles) == []
    assert os.listdir(srv.settings.depot) == []


@pytest.mark.parametrize("step", ["teardown_net", "release_limits", "teardown_fs"])
def test_server_killed_after_destroy_returned_finishes_cleanup_at_next_start(server_process, step):
    """destroy answers once the processes are dead; the server dies in the cleanup that
    follows (the snapshot still says destroying): the next start removes everything."""
    srv = server_process
    with Client(srv.socket) as c:
        handle = c.create().handle
        c.spawn(handle=handle, script=b"sleep 100")
    srv.kill()
    srv.start(fault=f"{step}:kill")
    with Client(srv.socket) as c:
        c.destroy(handle=handle)  # answered before the cleanup's first step
    assert srv.proc.wait(30) == -signal.SIGKILL
    assert os.listdir(srv.settings.depot) != []  # the cleanup did not finish
    srv.start()
    with Client(srv.socket) as c:
        assert list(c.list().handles) == []
    assert os.listdir(srv.settings.depot) == []
