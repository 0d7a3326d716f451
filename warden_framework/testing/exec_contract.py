"""The exec contract: what every exec driver does with a container's init and its jobs,
whatever its mechanism, as a pytest class a plugin subclasses (STYLE §6.7; the rootfs and
limits ones are contract.py and limits_contract.py).

A plugin's tests/test_exec_contract.py:

    class TestWshdExecContract(ExecContract):
        driver_class = WshdDriver

        @pytest.fixture(scope="class")
        @classmethod
        def exec_settings_data(cls):
            return {"server": {"wshd_path": "/path/to/wshd"}}

No rootfs, limits or network driver takes part: each container's root is a read-only bind of
the default rootfs (server.container_rootfs_path, with bash) with a tmpfs on /root and /home
owned by the container's root and user (through its id map), so jobs write only to their own
files. Every claim is shown by processes as the kernel lists them: a container's processes are
those in its init's pid namespace, or naming its directory on their command line. Hooks are
called by keyword, as pluggy calls them, so a misnamed parameter fails here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import Settings, settings_from_dict
from ..container import Container, IdGenerator
from ..errors import WardenError
from ..idmap import for_pool_uid
from ..jobs import Job
from .contract import detach, mounts_under, reloaded
from .driver_contract import DriverContract

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds for a job or the kernel to act; never reached when things work
LINGER_WATCHDOG = 5.0  # a spawn with linger <= 0.05 s has long returned by then
MARKER = ".exec-contract"  # in the user's home: proves a job runs in the container's root
CGROUP_ROOT = Path("/sys/fs/cgroup")

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND = 0x1, 0x2, 0x4, 0x20, 0x1000

# Jobs that wait, without end, for the test: USR1 ends them with a status of their own.
WAIT_FOR_USR1 = "trap 'echo after; exit {status}' USR1\necho before\nwhile :; do sleep 0.05; done\n"

# A server of its own (a separate process) that spawns one job and is then killed: the job's
# output must keep flowing into its files with no server (hookspecs.spawn; facts §6).
_SERVER = """
import importlib, json, sys
from pathlib import Path
from warden_framework.config import settings_from_dict
from warden_framework.container import Container
from warden_framework.jobs import Job
a = json.loads(sys.stdin.readline())
settings = settings_from_dict(a["settings"], Path(a["base_dir"]))
container = Container.from_dict(a["container"], Path(a["path"]))
job = Job(id=a["job_id"], dir=Path(a["job_dir"]), script=bytes.fromhex(a["script"]),
          privileged=False, rlimits={}, discard_output=False, log_tag=None, linger=0.0,
          output_limit=a["output_limit"])
driver = getattr(importlib.import_module(a["module"]), a["name"])(settings)
print(json.dumps(driver.spawn(container=container, job=job, settings=settings)), flush=True)
sys.stdin.readline()
"""


class ExecContract(DriverContract):
    """What an exec driver guarantees: see hookspecs setup_init, start_init, teardown_init,
    spawn, signal_job, stop, info, snapshot and recover; check_host decides the skip.

    A subclass sets `driver_class` and may override the `exec_settings_data` fixture (class
    scope), `skip_reason` and `rootfs_source`.
    """

    # ---- what a subclass may change (and skip_reason, DriverContract's) ---------------------

    def rootfs_source(self, settings: Settings) -> Path:
        """The tree bound read-only as every container's root: it must hold /bin/bash."""
        return Path(settings.server.container_rootfs_path)

    @pytest.fixture(scope="class")
    @classmethod
    def exec_settings_data(cls) -> dict:
        """The configuration the driver runs with (relative paths: from the project root)."""
        return {}

    # ---- fixtures --------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def exec_settings(cls, exec_settings_data: dict) -> Settings:
        if os.geteuid() != 0:
            pytest.skip("needs root: an exec driver clones namespaces and mounts")
        settings = settings_from_dict(exec_settings_data, base_dir=PROJECT_ROOT)
        reason = cls().skip_reason(settings)
        if reason:
            pytest.skip(reason)
        rootfs = cls().rootfs_source(settings)
        if not (rootfs / "bin" / "bash").exists():
            pytest.skip(f"no rootfs with bash at {rootfs} (scripts/bootstrap.sh builds it)")
        return settings

    @pytest.fixture(scope="class")
    @classmethod
    def driver(cls, exec_settings: Settings) -> Iterator[Any]:
        """One driver for the class, as one server: its threads serve every test."""
        driver = cls.driver_class(exec_settings)
        _host_hook(driver, "setup_host", exec_settings)
        yield driver
        _host_hook(driver, "teardown_host", exec_settings)

    @pytest.fixture
    def boxes(self, driver: Any, exec_settings: Settings, tmp_path: Path) -> Iterator[Boxes]:
        made = Boxes(driver, exec_settings, tmp_path / "depot", self.rootfs_source(exec_settings))
        yield made
        made.close()

    @pytest.fixture
    def box(self, boxes: Boxes) -> Container:
        """An active container: setup_init then start_init."""
        return boxes.active()

    def fresh_driver(self, settings: Settings) -> Any:
        """A driver as a restarted server has it: nothing in memory."""
        return self.driver_class(settings)

    # ---- setup_init / start_init ----------------------------------------------------------

    def test_hook_setup_init_record_is_json_and_names_a_live_init_in_new_namespaces(
            self, boxes):
        """setup_init Returns: a JSON-able record with the host pid of the container's init,
        started in new namespaces (its network namespace is the one the network step
        attaches)."""
        c = boxes.new()
        record = boxes.setup_init(c)
        assert json.loads(json.dumps(record)) == record, "the record must be JSON-able"
        init = record["pid"]
        assert alive(init)
        for ns in ("pid", "mnt", "net", "uts", "ipc"):
            assert os.readlink(f"/proc/{init}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns

    def test_hook_setup_init_gives_the_init_the_containers_id_map(self, boxes):
        """setup_init: container.id_map is the host range of the container's user namespace
        (container.py); container root is host_base inside it."""
        c = boxes.new()
        if c.id_map is None:
            pytest.skip("user.namespaces is off in the settings: no id map to check")
        init = boxes.activate(c)["pid"]
        assert os.readlink(f"/proc/{init}/ns/user") != os.readlink("/proc/self/ns/user")
        assert Path(f"/proc/{init}/uid_map").read_text().split() == [
            "0", str(c.id_map.host_base), str(c.id_map.size)]
        assert Path(f"/proc/{init}/gid_map").read_text().split() == [
            "0", str(c.id_map.host_base), str(c.id_map.size)]

    def test_hook_setup_init_has_the_init_born_in_the_limits_records_cgroups(self, boxes):
        """setup_init MUST: the init is born in the cgroups whose files records["limits"]
        lists under "tasks", and its jobs with it."""
        c = boxes.new()
        tasks = boxes.scratch_cgroup()
        c.records["limits"] = {"tasks": [str(tasks)]}
        init = boxes.activate(c)["pid"]
        assert str(init) in tasks.read_text().split()
        job = boxes.spawn(c, WAIT_FOR_USR1.format(status=0))
        wait_for(lambda: job.stdout_path.read_text() == "before\n", "the job to start")
        shell = boxes.shell_of(c)
        assert str(shell) in tasks.read_text().split()

    def test_hook_start_init_returns_once_the_init_serves_jobs_in_the_containers_root(
            self, boxes):
        """start_init Returns once the init serves: a job spawned at once runs, in the root
        at container.rootfs_dir."""
        c = boxes.active()
        job = boxes.spawn(c, f"cat ~/{MARKER}")
        assert finished(job) == 0
        assert job.stdout_path.read_text() == f"{c.id}\n"

    def test_hook_setup_init_failing_leaves_nothing_after_teardown_init(self, boxes, tmp_path):
        """setup_init / start_init On failure: raise WardenError; teardown_init kills whatever
        was started. A bind source removed since the server checked it cannot be mounted."""
        c = boxes.new(binds=[{"src": str(tmp_path / "gone"), "dst": "/mnt/gone", "mode": "ro"}])
        record = None
        with pytest.raises(WardenError):
            record = boxes.setup_init(c)
            boxes.driver.start_init(container=c, record=record)
        boxes.driver.teardown_init(container=c, record=record)
        assert boxes.processes(c) == []

    # ---- teardown_init ---------------------------------------------------------------------

    def test_hook_teardown_init_before_start_init_kills_the_init(self, boxes):
        """teardown_init on rollback: the init set up but never awaited is killed."""
        c = boxes.new()
        record = boxes.setup_init(c)
        boxes.driver.teardown_init(container=c, record=record)
        assert not alive(record["pid"])
        assert boxes.processes(c) == []

    def test_hook_teardown_init_leaves_no_process_and_twice_is_harmless(self, boxes, box):
        """teardown_init Returns: None once no process of the container is left (orphans
        adopted by the init too). Idempotent."""
        job = boxes.spawn(box, "(sleep 1000 &)\nsleep 1000 &\necho forked\nwait\n")
        wait_for(lambda: job.stdout_path.read_text() == "forked\n", "the job to fork")
        wait_for(lambda: len(boxes.jobs_running(box)) >= 3, "bash and its two sleeps")
        boxes.driver.teardown_init(container=box, record=box.records["exec"])
        assert boxes.processes(box) == []
        boxes.driver.teardown_init(container=box, record=box.records["exec"])
        assert boxes.processes(box) == []

    def test_hook_teardown_init_without_a_record_finds_the_init_by_the_container(
            self, boxes, box, exec_settings):
        """teardown_init by recovery: record None, a driver with nothing in memory; it finds
        the init from container.path."""
        boxes.spawn(box, "sleep 1000")
        wait_for(lambda: boxes.jobs_running(box), "the job to start")
        self.fresh_driver(exec_settings).teardown_init(container=box, record=None)
        assert boxes.processes(box) == []

    def test_two_containers_do_not_touch_each_other(self, boxes):
        """stop and teardown_init act on their container only."""
        first, second = boxes.active(), boxes.active()
        jobs = [boxes.spawn(c, WAIT_FOR_USR1.format(status=0)) for c in (first, second)]
        for job in jobs:
            wait_for(lambda job=job: job.stdout_path.read_text() == "before\n", "jobs to start")
        boxes.driver.stop(container=first, kill=True, timeout=0.0)
        assert finished(jobs[0]) == 255
        assert boxes.jobs_running(second) and not jobs[1].done
        boxes.driver.teardown_init(container=first, record=first.records["exec"])
        assert boxes.processes(first) == []
        assert boxes.jobs_running(second) and not jobs[1].done
        assert finished(boxes.spawn(second, "exit 5")) == 5

    # ---- spawn -------------------------------------------------------------------------------

    def test_hook_spawn_runs_the_script_in_bash_on_stdin_with_output_in_the_jobs_files(
            self, boxes, box):
        """spawn: bash reads job.script on stdin; stdout and stderr land in the job's files;
        job.finish gets the exit status (from any thread); the record is JSON-able."""
        # `read` takes the script's next line from stdin: only bash reading the script there
        # leaves it for `read` and goes on after it.
        job = boxes.spawn(box, 'read line\nfrom stdin\necho "$line ${BASH_VERSION%%.*}"\n'
                               "echo oops >&2\nexit 3\n")
        assert json.loads(json.dumps(job.record)) == job.record, "the record must be JSON-able"
        assert finished(job) == 3
        words = job.stdout_path.read_text().split()
        assert len(words) == 3 and words[:2] == ["from", "stdin"], words
        assert words[2].isdigit() and int(words[2]) >= 4, f"not bash: {words}"
        assert job.stderr_path.read_text() == "oops\n"
        assert job.status_path.read_text() != "", "the exit status must be kept in status_path"

    def test_hook_spawn_a_job_killed_by_a_signal_ends_255(self, boxes, box):
        """spawn: job.finish(255) for a death by signal."""
        job = boxes.spawn(box, "echo dying\nkill -KILL $$\necho survived\n")
        assert finished(job) == 255
        assert job.stdout_path.read_text() == "dying\n"

    def test_hook_spawn_with_linger_finishes_a_short_job_before_returning(self, boxes, box):
        """spawn: with job.linger > 0 the driver may wait that long for the end and finish
        the job before returning."""
        job = boxes.spawn(box, "echo quick\nexit 4\n", linger=10.0)
        assert job.done and job.exit_status == 4
        assert job.stdout_path.read_text() == "quick\n"

    @pytest.mark.parametrize("linger", [0.0, 0.05])
    def test_hook_spawn_returns_while_a_longer_job_runs(self, boxes, box, linger):
        """spawn: the driver waits at most job.linger seconds: it returns while a job that
        cannot end by itself runs, and finishes it when it ends."""
        returned = threading.Event()

        def watchdog() -> None:  # a driver waiting for the end fails here instead of hanging
            if not returned.wait(LINGER_WATCHDOG):
                os.kill(boxes.shell_of(box), signal.SIGUSR1)

        guard = threading.Thread(target=watchdog, daemon=True)
        guard.start()
        try:
            job = boxes.spawn(box, WAIT_FOR_USR1.format(status=6), linger=linger)
        finally:
            returned.set()
            guard.join()
        assert not job.done, "spawn waited for the end of a job that outlived its linger"
        wait_for(lambda: job.stdout_path.read_text() == "before\n", "the job to start")
        os.kill(boxes.shell_of(box), signal.SIGUSR1)
        assert finished(job) == 6

    def test_hook_spawn_applies_the_jobs_rlimits(self, boxes, box):
        """spawn May assume: job.rlimits (merged with container_rlimits) are set: they apply."""
        job = boxes.spawn(box, "ulimit -n\nulimit -c\n", rlimits={"nofile": 123, "core": 0})
        assert finished(job) == 0
        assert job.stdout_path.read_text() == "123\n0\n"

    @pytest.mark.parametrize("privileged", [False, True])
    def test_hook_spawn_runs_a_job_as_the_containers_user_or_root(self, boxes, box, privileged):
        """spawn: an unprivileged job runs as the container's user (container.uid), a
        privileged one as container root; on the host both are their ids in the id map."""
        job = boxes.spawn(box, "id -u\nid -g\nexec sleep 1000\n", privileged=privileged)
        inside = 0 if privileged else box.uid
        wait_for(lambda: job.stdout_path.read_text() == f"{inside}\n{inside}\n", "id's output")
        sleep = boxes.process_named(box, "sleep")
        host = box.host_id(inside)
        assert _ids(sleep, "Uid") == [host] * 4 and _ids(sleep, "Gid") == [host] * 4

    @pytest.mark.parametrize("failure", ["no bash in the root", "an rlimit above fs.nr_open"])
    def test_hook_spawn_failing_raises_and_leaves_no_process(self, boxes, failure):
        """spawn On failure: raise WardenError; no process of the job may remain."""
        rlimits = {}
        if failure == "no bash in the root":
            c = boxes.active(hide_bash=True)
        else:
            c = boxes.active()
            rlimits = {"nofile": int(Path("/proc/sys/fs/nr_open").read_text()) + 1}
        job = boxes.job(c, "echo ran\nsleep 1000\n", rlimits=rlimits)
        with pytest.raises(WardenError):
            boxes.driver.spawn(container=c, job=job, settings=boxes.settings)
        # A process that failed before its exec may still be exiting: it may not stay.
        wait_for(lambda: boxes.jobs_running(c) == [], "the failed job's process to go", 2.0)
        assert _read(job.stdout_path) == ""

    # ---- signal_job ------------------------------------------------------------------------

    def test_hook_signal_job_kill_ends_the_jobs_process_group(self, boxes, box):
        """signal_job: the signal reaches the job's process group."""
        job = boxes.spawn(box, "sleep 1000 &\necho ready\nwait\n")
        wait_for(lambda: job.stdout_path.read_text() == "ready\n", "the job to fork")
        boxes.driver.signal_job(container=box, job=job, signo=signal.SIGKILL)
        assert finished(job) == 255
        wait_for(lambda: not boxes.jobs_running(box), "the job's group to die")

    def test_hook_signal_job_of_an_ended_job_is_not_an_error(self, boxes, box):
        """signal_job: a job that is already gone is not a failure, also while the server
        has not seen its end yet."""
        job = boxes.spawn(box, "exit 0")
        assert finished(job) == 0
        boxes.driver.signal_job(container=box, job=job, signo=signal.SIGKILL)
        unseen = Job(id=job.id, dir=job.dir, record=dict(job.record))
        boxes.driver.signal_job(container=box, job=unseen, signo=signal.SIGKILL)
        assert finished(boxes.spawn(box, "exit 2")) == 2, "the init serves on"

    # ---- stop ------------------------------------------------------------------------------

    def test_hook_stop_terms_then_kills_after_the_timeout_and_keeps_the_init(self, boxes, box):
        """stop(kill=False): TERM, then KILL what is left after `timeout`; returns when no
        job process is left; the init lives on."""
        polite = boxes.spawn(box, "trap 'echo term; exit 7' TERM\necho ready\n"
                                  "while :; do sleep 0.05; done\n")
        deaf = boxes.spawn(box, "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done\n")
        for job in (polite, deaf):
            wait_for(lambda job=job: job.stdout_path.read_text() == "ready\n", "jobs to start")
        boxes.driver.stop(container=box, kill=False, timeout=0.5)
        assert boxes.jobs_running(box) == []
        assert finished(polite) == 7 and polite.stdout_path.read_text() == "ready\nterm\n"
        assert finished(deaf) == 255
        assert alive(box.records["exec"]["pid"])
        assert finished(boxes.spawn(box, "exit 0")) == 0, "the init serves after stop"

    def test_hook_stop_with_kill_kills_at_once(self, boxes, box):
        """stop(kill=True): KILL at once, whatever the timeout; the init lives on."""
        job = boxes.spawn(box, "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done\n")
        wait_for(lambda: job.stdout_path.read_text() == "ready\n", "the job to start")
        started = time.monotonic()
        boxes.driver.stop(container=box, kill=True, timeout=60.0)
        assert time.monotonic() - started < 30, "stop with kill waited for the timeout"
        assert boxes.jobs_running(box) == []
        assert finished(job) == 255
        assert finished(boxes.spawn(box, "exit 0")) == 0, "the init serves after stop"

    # ---- recover ---------------------------------------------------------------------------

    def test_hook_recover_finishes_a_job_that_ended_unwatched_from_its_status_file(
            self, boxes, box, exec_settings):
        """spawn MUST record the exit status in job.status_path; recover (a new driver) MUST
        call job.finish with it for a job the snapshot lists as running."""
        job = boxes.spawn(box, "exit 6")
        assert finished(job) == 6
        again = reloaded(box)
        unseen = again.jobs[job.id] = Job(id=job.id, dir=job.dir, record=dict(job.record))
        self.fresh_driver(exec_settings).recover(container=again, settings=exec_settings)
        assert finished(unseen) == 6

    def test_hook_recover_reattaches_a_running_job_and_finishes_it_when_it_ends(
            self, boxes, box, exec_settings):
        """recover: a new driver re-attaches to a live container; a running job is finished
        when it ends, and the container takes new jobs."""
        job = boxes.spawn(box, WAIT_FOR_USR1.format(status=9))
        wait_for(lambda: job.stdout_path.read_text() == "before\n", "the job to start")
        again = reloaded(box)
        watched = again.jobs[job.id] = Job(id=job.id, dir=job.dir, record=dict(job.record))
        fresh = self.fresh_driver(exec_settings)
        fresh.recover(container=again, settings=exec_settings)
        assert not watched.done, "the job cannot end before it gets USR1"
        os.kill(boxes.shell_of(box), signal.SIGUSR1)
        assert finished(watched) == 9
        new = boxes.job(again, "exit 8")
        new.record = fresh.spawn(container=again, job=new, settings=exec_settings)
        assert finished(new) == 8

    def test_hook_recover_of_a_container_whose_init_died_fails(self, boxes, box, exec_settings):
        """recover On failure: raise WardenError (the server then destroys the container):
        a container without its init cannot be re-attached."""
        boxes.driver.teardown_init(container=box, record=box.records["exec"])
        with pytest.raises(WardenError):
            self.fresh_driver(exec_settings).recover(container=reloaded(box),
                                                     settings=exec_settings)

    def test_a_jobs_output_keeps_flowing_with_no_server(self, boxes, box, exec_settings,
                                                        exec_settings_data):
        """spawn: the job's files are its own, so output lands there while no server runs,
        and a new server's recover finishes the job that ended meanwhile. The server is a
        process of its own, killed: `driver_class` must be importable from its module."""
        job = boxes.job(box, WAIT_FOR_USR1.format(status=3))
        server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.stdin.write(json.dumps({
                "module": self.driver_class.__module__, "name": self.driver_class.__name__,
                "settings": exec_settings_data, "base_dir": str(PROJECT_ROOT),
                "container": box.to_dict(), "path": str(box.path), "job_id": job.id,
                "job_dir": str(job.dir), "script": job.script.hex(),
                "output_limit": job.output_limit}) + "\n")
            server.stdin.flush()
            line = server.stdout.readline()
            assert line, f"the server process failed: {server.stderr.read()}"
            record = json.loads(line)
            wait_for(lambda: job.stdout_path.read_text() == "before\n", "the job to start")
        finally:
            server.kill()
            server.communicate()
        os.kill(boxes.shell_of(box), signal.SIGUSR1)
        wait_for(lambda: job.stdout_path.read_text() == "before\nafter\n",
                 "output written with no server")
        wait_for(lambda: not boxes.jobs_running(box), "the job to end")
        again = reloaded(box)
        ended = again.jobs[job.id] = Job(id=job.id, dir=job.dir, record=record)
        self.fresh_driver(exec_settings).recover(container=again, settings=exec_settings)
        assert finished(ended) == 3

    # ---- gathering hooks -------------------------------------------------------------------

    def test_hook_info_and_snapshot_answer_json_able_dicts_or_none(self, boxes, box):
        """info and snapshot (optional): a dict of JSON-able values, or None."""
        hooks = [name for name in ("info", "snapshot")
                 if callable(getattr(boxes.driver, name, None))]
        if not hooks:
            pytest.skip(f"{self.driver_class.__name__} implements neither info nor snapshot")
        boxes.spawn(box, "sleep 1000")
        for name in hooks:
            answer = getattr(boxes.driver, name)(container=box)
            assert answer is None or json.loads(json.dumps(answer)) == answer, name


class Boxes:
    """The containers of one test, each on a root made here (no rootfs driver): after the
    test the driver's teardown_init runs, and whatever survives it is killed, unmounted or
    removed and fails the test."""

    def __init__(self, driver: Any, settings: Settings, depot: Path, rootfs: Path) -> None:
        self.driver, self.settings, self.depot, self.rootfs = driver, settings, depot, rootfs
        self.made: list[Container] = []
        self.pid_namespaces: dict[str, str] = {}
        self.cgroups: list[Path] = []
        self._ids = IdGenerator()

    def new(self, binds: list[dict] | None = None, hide_bash: bool = False) -> Container:
        """A container before setup_init, as create hands it over: its root mounted."""
        cid = self._ids()
        user = self.settings.user
        uid = user.pool_start_uid + secrets.randbelow(user.pool_size)
        c = Container(id=cid, handle=f"exec-contract-{cid}", path=self.depot / cid, uid=uid,
                      id_map=for_pool_uid(user, uid), binds=binds or [])
        c.jobs_dir.mkdir(parents=True)
        self.made.append(c)
        mount_root(c, self.rootfs, hide_bash)
        return c

    def setup_init(self, c: Container) -> dict:
        record = self.driver.setup_init(container=c, settings=self.settings)
        c.records["exec"] = record
        self.pid_namespaces[c.id] = os.readlink(f"/proc/{record['pid']}/ns/pid")
        return record

    def activate(self, c: Container) -> dict:
        record = self.setup_init(c)
        self.driver.start_init(container=c, record=record)
        return record

    def active(self, **options: Any) -> Container:
        c = self.new(**options)
        self.activate(c)
        return c

    def job(self, c: Container, script: str, *, privileged: bool = False,
            rlimits: dict[str, int] | None = None, linger: float = 0.0) -> Job:
        """A job as the orchestrator makes it, with its directory, not yet spawned."""
        job_id = max(c.jobs, default=0) + 1
        job = Job(id=job_id, dir=c.jobs_dir / str(job_id), script=script.encode(),
                  privileged=privileged, rlimits=rlimits or {}, discard_output=False,
                  log_tag=None, linger=linger, output_limit=self.settings.server.job_output_limit)
        job.dir.mkdir()
        c.jobs[job_id] = job
        return job

    def spawn(self, c: Container, script: str, **options: Any) -> Job:
        job = self.job(c, script, **options)
        job.record = self.driver.spawn(container=c, job=job, settings=self.settings)
        return job

    def scratch_cgroup(self) -> Path:
        """A cgroup of the test's own (no limits driver) and the file joining it."""
        name = "wtexec" + secrets.token_hex(3)  # "wt": a prefix the leak checker looks for
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            group, joining = CGROUP_ROOT / name, "cgroup.procs"
        elif (CGROUP_ROOT / "pids" / "tasks").exists():
            group, joining = CGROUP_ROOT / "pids" / name, "tasks"
        else:
            pytest.skip(f"no cgroup v2 root and no v1 pids hierarchy under {CGROUP_ROOT}")
        group.mkdir()
        self.cgroups.append(group)
        return group / joining

    # -- what the kernel lists -------------------------------------------------------------

    def processes(self, c: Container) -> list[int]:
        """Live processes in the container's init's pid namespace or naming its directory."""
        ns = self.pid_namespaces.get(c.id)
        marker = os.fsencode(c.path)
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                ours = (ns is not None and os.readlink(f"/proc/{entry}/ns/pid") == ns) or \
                    marker in Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if ours and alive(int(entry)):
                found.append(int(entry))
        return sorted(found)

    def jobs_running(self, c: Container) -> list[int]:
        init = c.records["exec"]["pid"]
        return [pid for pid in self.processes(c) if pid != init]

    def process_named(self, c: Container, comm: str) -> int:
        """The one job process of the container whose command is `comm`."""
        def named() -> list[int]:
            return [pid for pid in self.jobs_running(c)
                    if _read(Path(f"/proc/{pid}/comm")) == comm + "\n"]
        wait_for(lambda: len(named()) == 1, f"one {comm} in {c.id}")
        return named()[0]

    def shell_of(self, c: Container) -> int:
        """The host pid of the bash running the container's one job."""
        return self.process_named(c, "bash")

    # -- after the test --------------------------------------------------------------------

    def close(self) -> None:
        errors: list[str] = []
        for c in self.made:
            try:
                self.driver.teardown_init(container=c, record=c.records.get("exec"))
            except Exception as exc:  # reported below, once the machine is clean again
                errors.append(f"teardown_init of {c.id}: {exc!r}")
            survivors = self.processes(c)
            for pid in survivors:
                _kill(pid)
            if survivors:
                errors.append(f"processes of {c.id} left: {survivors}")
            for point in mounts_under(c.path):
                detach(point)
        for group in self.cgroups:
            if not _remove_cgroup(group):
                errors.append(f"cgroup {group} could not be removed")
        if errors:
            pytest.fail("after the test: " + "; ".join(errors), pytrace=False)


# ---- the container's root ------------------------------------------------------------------

def mount_root(c: Container, source: Path, hide_bash: bool = False) -> None:
    """container.rootfs_dir: `source` bound read-only, with tmpfs on /root (container root's,
    0700) and /home (holding the user's home with MARKER), owned through the id map. With
    hide_bash, an empty tmpfs covers /bin and /usr/bin."""
    root = c.rootfs_dir
    root.mkdir()
    _mount(str(source), root, None, _MS_BIND)
    try:
        _mount(None, root, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
        owner, user = c.host_id(0), c.host_id(c.uid)
        flags = _MS_NOSUID | _MS_NODEV
        _mount("tmpfs", root / "root", "tmpfs", flags, f"mode=700,uid={owner},gid={owner}")
        _mount("tmpfs", root / "home", "tmpfs", flags, f"mode=755,uid={owner},gid={owner}")
        home = root / "home" / "vcap"
        home.mkdir()
        os.chown(home, user, user)
        (home / MARKER).write_text(f"{c.id}\n")
        for below in ("bin", "usr/bin") if hide_bash else ():
            if (root / below).is_dir() and not (root / below).is_symlink():
                _mount("tmpfs", root / below, "tmpfs", flags, "mode=755")
    except BaseException:
        for point in mounts_under(root):
            detach(point)
        raise


def _mount(source: str | None, target: Path, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    encode = (lambda s: None if s is None else s.encode())
    if libc.mount(encode(source), os.fsencode(target), encode(fstype), ctypes.c_ulong(flags),
                  encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def _remove_cgroup(group: Path) -> bool:
    """rmdir, retried while the kernel still counts an exiting process (EBUSY)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.01)


# ---- processes -------------------------------------------------------------------------------

def alive(pid: int) -> bool:
    """True while pid runs (a zombie has exited: whoever adopted it reaps it)."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ids(pid: int, kind: str) -> list[int]:
    """The real, effective, saved and filesystem ids of a process ("Uid" or "Gid")."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return [int(word) for word in line.split()[1:]]
    raise AssertionError(f"no {kind} line in /proc/{pid}/status")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def finished(job: Job, timeout: float = WAIT) -> int:
    """The status the driver gave job.finish, from whichever thread, within `timeout`."""
    wait_for(lambda: job.done, f"job {job.id} to finish", timeout)
    return job.exit_status  # type: ignore[return-value]


def _host_hook(driver: Any, name: str, settings: Settings) -> None:
    """setup_host and teardown_host are optional: a driver without them has no host state."""
    hook = getattr(driver, name, None)
    if hook is not None:
        hook(settings=settings)
