"""Create runs the steps in order; a failing step rolls back every started step in teardown
order, releases the pools and removes the container directory."""

import json
import signal
import threading
import time

import pytest

from warden_framework import hookimpl
from warden_framework.config import settings_from_dict
from warden_framework.errors import WardenError
from warden_framework.server.main import build_orchestrator
from warden_framework.specs import CreateSpec, JobSpec
from warden_framework.testing.fakes import FAKE_DRIVERS, _Fake


@pytest.fixture
def orch(tmp_path):
    _Fake.calls.clear()
    _Fake.fail_on = set()
    settings = settings_from_dict({
        "server": {"container_depot_path": str(tmp_path / "depot")},
        "drivers": {"disk": "fake"},
        "port": {"pool_start_port": 20000, "pool_size": 1000},
        "user": {"pool_start_uid": 50000, "pool_size": 4},
        "network": {"pool_network": "10.99.0.0/29", "release_delay": 0},
    })
    (tmp_path / "depot").mkdir()
    yield build_orchestrator(settings, overrides=FAKE_DRIVERS, load_entry_points=False)
    _Fake.fail_on = set()


def hooks_called(container_id):
    return [hook for _, hook, cid in _Fake.calls if cid == container_id]


def assert_cleanup_order(called):
    """The init first; then the network beside limits, rootfs and disk, which keep order."""
    assert called[:2] == ["stop", "teardown_init"] and called.count("teardown_net") == 1
    assert [hook for hook in called[2:] if hook != "teardown_net"] == [
        "release_limits", "teardown_fs", "teardown_disk"]


class NetworkWaitsForDisk:
    """teardown_net holds until teardown_disk, the last of the others, has run: a cleanup
    that ran them one after the other would wait out the timeout."""

    def __init__(self) -> None:
        self.disk_done = threading.Event()
        self.waited: bool | None = None

    @hookimpl(wrapper=True)
    def teardown_net(self, container, record):
        self.waited = self.disk_done.wait(5)
        return (yield)

    @hookimpl(wrapper=True)
    def teardown_disk(self, container, record):
        try:
            return (yield)
        finally:
            self.disk_done.set()


def test_the_network_teardown_runs_beside_the_others(tmp_path):
    _Fake.calls.clear()
    settings = settings_from_dict({
        "server": {"container_depot_path": str(tmp_path / "depot")},
        "drivers": {"disk": "fake"},
        "network": {"pool_network": "10.99.0.0/29", "release_delay": 0},
    })
    (tmp_path / "depot").mkdir()
    beside = NetworkWaitsForDisk()
    orch = build_orchestrator(settings, overrides=FAKE_DRIVERS, extra_plugins=[beside],
                              load_entry_points=False)
    c = orch.create(CreateSpec())
    _Fake.calls.clear()
    orch.destroy(c)
    assert orch.finish_destroy(c) is True
    assert beside.waited is True
    assert_cleanup_order(hooks_called(c.id))


def test_create_runs_steps_in_order(orch):
    c = orch.create(CreateSpec(grace_time=5))
    called = hooks_called(c.id)
    # setup_fs and apply_limits are one stage, on two threads: either may log first
    assert called[0] == "setup_disk" and set(called[1:3]) == {"setup_fs", "apply_limits"}
    assert called[3:] == ["setup_init", "setup_net", "start_init"]
    assert c.state == "active" and c.handle == c.id and len(c.id) == 11
    assert orch.handles() == [c.handle]
    assert str(c.network) == "10.99.0.0/30" and c.uid == 50000


@pytest.mark.parametrize("failing", ["setup_disk", "setup_fs", "apply_limits", "setup_init",
                                     "setup_net", "start_init"])
def test_failed_step_rolls_back_started_steps(orch, failing):
    _Fake.fail_on = {failing}
    with pytest.raises(WardenError, match=f"{failing} failed on purpose"):
        orch.create(CreateSpec(handle="h1", grace_time=5))
    cid = _Fake.calls[0][2]
    called = hooks_called(cid)
    order = ["setup_disk", "setup_fs", "apply_limits", "setup_init", "setup_net"]
    started = order[: order.index(failing) + 1] if failing != "start_init" else order
    if failing == "setup_fs":  # apply_limits ran beside it, and is undone too
        started.append("apply_limits")
    teardown = {"setup_net": "teardown_net", "setup_disk": "teardown_disk",
                "setup_init": "teardown_init", "apply_limits": "release_limits",
                "setup_fs": "teardown_fs"}
    expected = [teardown[s] for s in ("setup_init", "setup_net", "apply_limits", "setup_fs",
                                      "setup_disk") if s in started]
    assert [h for h in called if h.startswith(("teardown", "release"))] == expected
    assert orch.handles() == []
    assert not (orch.depot / cid).exists()
    # the pools got everything back
    assert len(orch.pools.network) == 2 and len(orch.pools.uids) == 4


def test_setup_fs_and_apply_limits_run_side_by_side(orch, monkeypatch):
    """Each waits at a barrier for the other: run one after the other, both would time out."""
    meet = threading.Barrier(2, timeout=5)
    record = _Fake._record

    def meeting(self, hook, container):
        if hook in ("setup_fs", "apply_limits"):
            meet.wait()
        record(self, hook, container)

    monkeypatch.setattr(_Fake, "_record", meeting)
    c = orch.create(CreateSpec(grace_time=5))
    assert c.state == "active"


def test_a_failed_step_waits_for_the_step_beside_it_then_undoes_both(orch, monkeypatch):
    record = _Fake._record

    def slow_fs(self, hook, container):
        if hook == "setup_fs":
            time.sleep(0.2)  # still busy when apply_limits has failed
        record(self, hook, container)

    monkeypatch.setattr(_Fake, "_record", slow_fs)
    _Fake.fail_on = {"apply_limits"}
    with pytest.raises(WardenError, match="apply_limits failed on purpose"):
        orch.create(CreateSpec(handle="h1", grace_time=5))
    called = hooks_called(_Fake.calls[0][2])
    assert called.index("setup_fs") < called.index("release_limits")
    assert [h for h in called if h.startswith(("teardown", "release"))] == [
        "release_limits", "teardown_fs", "teardown_disk"]
    assert orch.handles() == []


def test_duplicate_handle_is_refused(orch):
    orch.create(CreateSpec(handle="same", grace_time=5))
    with pytest.raises(WardenError, match=r"^container with handle: same already exists\.$"):
        orch.create(CreateSpec(handle="same", grace_time=5))


def test_requested_network_outside_pool(orch):
    with pytest.raises(WardenError, match=r"^Could not acquire network: 1\.1\.1\.0$"):
        orch.create(CreateSpec(grace_time=5, network="1.1.1.1"))


def test_network_pool_exhaustion(orch):
    orch.create(CreateSpec(grace_time=5))
    orch.create(CreateSpec(grace_time=5))
    with pytest.raises(WardenError, match=r"^Could not acquire network$"):
        orch.create(CreateSpec(grace_time=5))


def test_destroy_tears_down_in_order_and_releases(orch):
    c = orch.create(CreateSpec(grace_time=5))
    orch.net_in(c, None, None)
    _Fake.calls.clear()
    orch.destroy(c)
    assert orch.finish_destroy(c) is True
    assert_cleanup_order(hooks_called(c.id))
    assert c.state == "destroyed" and not c.path.exists()
    assert len(orch.pools.network) == 2 and len(orch.pools.uids) == 4
    assert len(orch.pools.ports) == 1000  # the port from net_in came back
    with pytest.raises(WardenError, match="^unknown handle$"):
        orch.lookup(c.handle)


def test_destroy_returns_before_the_slow_teardowns_and_pools_wait_for_them(orch):
    c = orch.create(CreateSpec(handle="h", grace_time=5))
    orch.net_in(c, None, None)
    _Fake.calls.clear()
    orch.destroy(c)
    # gone from the API at once; only the processes were killed
    assert hooks_called(c.id) == ["stop", "teardown_init"]
    assert c.state == "destroyed" and orch.handles() == []
    with pytest.raises(WardenError, match="^unknown handle$"):
        orch.lookup("h")
    # nothing handed out twice: network, uid and port stay reserved, the directory stays
    assert len(orch.pools.network) == 1 and len(orch.pools.uids) == 3
    assert len(orch.pools.ports) == 999
    assert c.path.exists()
    # the handle is free for a new container at once, with other resources
    again = orch.create(CreateSpec(handle="h", grace_time=5))
    assert again.id != c.id and again.network != c.network and again.uid != c.uid
    assert orch.net_in(again, None, None)[0] != c.ports[0]
    assert orch.finish_destroy(c) is True
    assert_cleanup_order(hooks_called(c.id))
    # only `again`'s entries stay out
    assert len(orch.pools.network) == 1 and len(orch.pools.uids) == 3
    assert len(orch.pools.ports) == 999
    assert not c.path.exists()
    assert orch.lookup("h") is again


def test_failed_finish_destroy_keeps_everything_reserved_until_next_start(orch):
    c = orch.create(CreateSpec(handle="h", grace_time=5))
    orch.destroy(c)
    _Fake.fail_on = {"teardown_fs"}
    assert orch.finish_destroy(c) is False
    assert c.path.exists() and c.snapshot_path.exists()
    assert len(orch.pools.network) == 1 and len(orch.pools.uids) == 3
    _Fake.fail_on = set()
    again = build_orchestrator(orch.settings, overrides=FAKE_DRIVERS, load_entry_points=False)
    _Fake.calls.clear()
    assert again.recover_all() == []
    assert "teardown_fs" in hooks_called(c.id) and "teardown_disk" in hooks_called(c.id)
    assert not c.path.exists()
    assert len(again.pools.network) == 2 and len(again.pools.uids) == 4


def test_state_checks_use_warden_text(orch):
    c = orch.create(CreateSpec(grace_time=5))
    orch.stop(c)
    with pytest.raises(WardenError, match=r"^Container state must be one of 'active', current state is 'stopped'$"):
        orch.spawn(c, JobSpec(b"true"))
    assert orch.limit_cpu(c, 1) == 2


def test_recovery_reregisters_and_reserves(orch, tmp_path):
    c = orch.create(CreateSpec(handle="keep", grace_time=5))
    orch.net_in(c, None, None)
    dead = orch.create(CreateSpec(handle="dead", grace_time=5))
    dead.snapshot_path.unlink()
    again = build_orchestrator(orch.settings, overrides=FAKE_DRIVERS, load_entry_points=False)
    recovered = again.recover_all()
    assert [r.handle for r in recovered] == ["keep"]
    assert not dead.path.exists()
    fresh = again.create(CreateSpec(grace_time=5))
    assert fresh.network != c.network and fresh.uid != c.uid
    assert again.net_in(fresh, None, None)[0] == c.ports[0] + 1



class RecoveriesMeet:
    """Each recovery waits until the other has started: one after the other, the first
    would wait out the timeout."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=5)
        self.met: list[bool] = []

    @hookimpl(wrapper=True)
    def recover(self, container, settings):
        try:
            self.barrier.wait()
            self.met.append(True)
        except threading.BrokenBarrierError:
            self.met.append(False)
        return (yield)


def test_containers_are_recovered_side_by_side_and_every_one_is_listed(orch):
    made = {orch.create(CreateSpec(handle=h, grace_time=5)).handle for h in ("a", "b")}
    meet = RecoveriesMeet()
    again = build_orchestrator(orch.settings, overrides=FAKE_DRIVERS, extra_plugins=[meet],
                               load_entry_points=False)
    recovered = again.recover_all()
    assert meet.met == [True, True]
    assert {r.handle for r in recovered} == made == set(again.containers)

def snapshot_jobs(container):
    return set(json.loads(container.snapshot_path.read_text())["jobs"])


def test_spawn_records_the_job_before_returning(orch):
    c = orch.create(CreateSpec(grace_time=5))
    job = orch.spawn(c, JobSpec(b"sleep 5"))
    try:
        assert snapshot_jobs(c) == {str(job.id)}
    finally:
        orch.stop(c, kill=True)


def test_a_run_job_that_ended_at_once_costs_no_snapshot_write(orch):
    c = orch.create(CreateSpec(grace_time=5))
    before = c.snapshot_path.stat().st_mtime_ns, c.snapshot_path.read_bytes()
    # a generous linger, so that the fake's bash surely ends within it
    job = orch.spawn(c, JobSpec(b"echo hi"), id_known=False, linger=5.0)
    assert job.exit_status == 0 and job.read_output(100) == (b"hi\n", b"")
    orch.forget_job(c, job)
    orch.persistence.flush(c)  # nothing named the job, so nothing is stale: no write
    assert (c.snapshot_path.stat().st_mtime_ns, c.snapshot_path.read_bytes()) == before
    assert not job.dir.exists()


def test_a_run_job_that_runs_on_is_recorded_by_the_next_flush(orch):
    c = orch.create(CreateSpec(grace_time=5))
    job = orch.spawn(c, JobSpec(b"sleep 5"), id_known=False)
    try:
        assert not job.done and snapshot_jobs(c) == set()
        orch.persistence.flush(c)
        assert snapshot_jobs(c) == {str(job.id)}
    finally:
        orch.stop(c, kill=True)


def test_recovery_removes_jobs_no_snapshot_named(orch, tmp_path):
    c = orch.create(CreateSpec(handle="keep", grace_time=5))
    job = orch.spawn(c, JobSpec(b"sleep 5"), id_known=False)
    orch.hooks.signal_job(c, job, signal.SIGKILL)  # the server "died" before any flush
    deadline = time.monotonic() + 5
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.done and job.dir.exists() and snapshot_jobs(c) == set()
    again = build_orchestrator(orch.settings, overrides=FAKE_DRIVERS, load_entry_points=False)
    [recovered] = again.recover_all()
    assert recovered.jobs == {} and not job.dir.exists()
