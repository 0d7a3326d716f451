"""Thin: each request is a sequence of Hooks calls; create is a table of steps with rollback.
What reaches disk, and when, is persistence.py's: this module reports each change there.

All methods are synchronous and run in the server's thread pool while the server holds the
container's lock (finish_destroy excepted: the container is out of the registry by then).
Texts of WardenErrors reach the client verbatim.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

from . import idmap, persistence
from .binds import allowed_binds
from .config import Settings
from .container import (ACTIVE, DESTROYED, OUT_OF_MEMORY, STOPPED, Container, IdGenerator,
                        check_state)
from .errors import ContainerNotFound, ProcessNotFound, WardenError
from .jobs import EXIT_KILLED, Job, JobCounter, make_job_dir, prepare_spare
from .persistence import SnapshotWriter
from .plugins import Hooks
from .pools import Pools
from .specs import CreateSpec, JobSpec

log = logging.getLogger(__name__)

# (subsystem, setup hook, teardown hook) in create order. The snapshot is written twice: as
# `born` before the first step, and with every record once the container is active. A server
# killed in between finds it born at the next start and runs every teardown with the record
# None: each teardown finds what its setup made by the container's id, as it must anyway for
# a container whose snapshot is gone (a write per step cost ~0.3 ms each, bench/profile.py).
# The disk step comes first: a quota driver may give the rootfs its own volume (btrfs).
# Limits come before the init: it is born in its cgroups (moving it in later costs ~10 ms).
CREATE_STEPS = (
    ("disk", "setup_disk", "teardown_disk"),
    ("rootfs", "setup_fs", "teardown_fs"),
    ("limits", "apply_limits", "release_limits"),
    ("exec", "setup_init", "teardown_init"),
    ("network", "setup_net", "teardown_net"),
)
# The steps of one stage need nothing of each other and run side by side: rootfs and limits
# each wait on the kernel (mounts, cgroup directories) much of their time.
CREATE_STAGES = (("disk",), ("rootfs", "limits"), ("exec",), ("network",))
# The threads that run a stage's other steps, shared by every create of the process.
_SIDE_STEPS = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="create-step")
# Containers recovered at once at start-up: each mostly waits (its wshd's answer, an iptables
# transaction that concurrent recoveries share, its snapshot written); one at a time, a
# restart with 1,000 live containers took 11.7 s before the server answered, eight at a time
# 7.2 s (bench/restart.py: drain, then start until every container is listed).
RECOVERY_WORKERS = 8
# Teardown is the reverse of create except that the init (and so every process) goes first:
# its cgroups cannot be removed while it lives, and once it is gone its network namespace
# dies and takes the veth pair with it in ~1 ms, where deleting a live veth waits ~18 ms on
# RCU in the kernel (bench/profile.py).
TEARDOWN_ORDER = ("exec", "network", "limits", "rootfs", "disk")
# Once the init is gone, the network's teardown runs beside the rest: it mostly waits for the
# kernel to finish the dead network namespace (~15 ms of RCU grace periods when its links were
# up), which needs nothing of the cgroups, the rootfs or the disk.
TEARDOWN_BESIDE = ("network",)
# What destroy tears down before it answers: with every process gone the container is gone
# from the API; the rest of TEARDOWN_ORDER is finish_destroy's, off the request's path.
DESTROY_NOW = ("exec",)
# What finish_destroy tears down in order, beside TEARDOWN_BESIDE.
TEARDOWN_AFTER = tuple(sub for sub in TEARDOWN_ORDER if sub not in TEARDOWN_BESIDE + DESTROY_NOW)
STOP_TIMEOUT = 10.0


class Orchestrator:
    def __init__(self, settings: Settings, hooks: Hooks, pools: Pools) -> None:
        self.settings = settings
        self.hooks = hooks
        self.pools = pools
        self.depot = settings.depot
        self.containers: dict[str, Container] = {}
        self._reserved: set[str] = set()
        self._lock = threading.Lock()
        self.new_id = IdGenerator()
        self.new_job_id = JobCounter()
        # When a container's record reaches disk is decided there, and only there.
        self.persistence = SnapshotWriter(hooks)

    # -- registry -------------------------------------------------------------------------
    def lookup(self, handle: str) -> Container:
        container = self.containers.get(handle)
        if container is None or container.state == DESTROYED:
            raise ContainerNotFound(handle)
        return container

    def handles(self) -> list[str]:
        return [h for h, c in list(self.containers.items()) if c.state in (ACTIVE, STOPPED)]

    # -- create ---------------------------------------------------------------------------
    def create(self, spec: CreateSpec) -> Container:
        binds = allowed_binds([bind.to_dict() for bind in spec.bind_mounts],
                              self.settings.server.bind_mount_allowed_paths)
        container_id = self.new_id()
        handle = spec.handle or container_id
        with self._lock:
            if handle in self.containers or handle in self._reserved:
                raise WardenError(f"container with handle: {handle} already exists.")
            self._reserved.add(handle)
        container = Container(id=container_id, handle=handle, path=self.depot / container_id,
                              grace_time=spec.grace_time, rootfs_request=spec.rootfs,
                              binds=binds, properties=dict(spec.properties), env=list(spec.env))
        steps = [step for step in CREATE_STEPS if self.hooks.has(step[0])]
        try:
            container.network = self.pools.network.acquire_network(spec.network)
            container.uid = self.pools.uids.acquire_uid()
            # A privileged container (Garden's) has no user namespace: its root is host root.
            container.id_map = (None if spec.privileged
                                else idmap.for_pool_uid(self.settings.user, container.uid))
            container.path.mkdir(mode=0o700, parents=True)
            self.hooks.pre_create(container, spec.request, self.settings)
            self._run_steps(container, steps)
            container.state = ACTIVE
            self.persistence.write(container)
        except BaseException:
            self._release_resources(container)
            with self._lock:
                self._reserved.discard(handle)
            raise
        with self._lock:
            self._reserved.discard(handle)
            self.containers[handle] = container
        return container

    def _run_steps(self, container: Container, steps: list[tuple[str, str, str]]) -> None:
        """Run `steps` stage by stage after a snapshot that says the container is born (see
        CREATE_STEPS, CREATE_STAGES); on failure, tear down the steps that started, in
        teardown order."""
        self.persistence.write(container)
        setups = {subsystem: setup for subsystem, setup, _ in steps}
        try:
            for stage in CREATE_STAGES:
                self._run_stage(container, [(sub, setups[sub]) for sub in stage if sub in setups])
            self.hooks.start_init(container, container.records["exec"])
        except BaseException as exc:
            errors = self._teardown(container)
            for err in errors:
                log.error("rollback of %s: %s", container.id, err)
            log.info("create of %s failed: %s", container.id, exc)
            raise

    def _run_stage(self, container: Container, stage: list[tuple[str, str]]) -> None:
        """The setups of one stage, the first on this thread and the others beside it; all
        have ended (each with its record, or raised) before this returns or raises."""
        for subsystem, _ in stage:
            container.records[subsystem] = None  # started: its teardown runs on failure
        beside = [_SIDE_STEPS.submit(self._setup, container, *step) for step in stage[1:]]
        try:
            if stage:
                self._setup(container, *stage[0])
        finally:
            futures.wait(beside)
        for step in beside:
            step.result()

    def _setup(self, container: Container, subsystem: str, setup: str) -> None:
        container.records[subsystem] = getattr(self.hooks, setup)(container, self.settings) or {}

    def _teardown(self, container: Container,
                  subsystems: tuple[str, ...] = TEARDOWN_ORDER) -> list[BaseException]:
        """Run the teardown of every started step among `subsystems` (in TEARDOWN_ORDER);
        keep every error."""
        steps = {sub: teardown for sub, _, teardown in CREATE_STEPS}
        errors: list[BaseException] = []
        for subsystem in subsystems:
            if subsystem not in container.records or not self.hooks.has(subsystem):
                continue
            try:
                getattr(self.hooks, steps[subsystem])(container, container.records[subsystem])
                del container.records[subsystem]
            except Exception as exc:  # rollback boundary: keep going, report all
                errors.append(exc)
        return errors

    def _teardown_all(self, container: Container) -> list[BaseException]:
        """Every teardown: the init's first (a destroy did it already), then the network's
        on a side thread beside the others (TEARDOWN_BESIDE); every error kept."""
        errors = self._teardown(container, DESTROY_NOW)
        beside = _SIDE_STEPS.submit(self._teardown, container, TEARDOWN_BESIDE)
        try:
            errors += self._teardown(container, TEARDOWN_AFTER)
        finally:
            errors += beside.result()
        return errors

    def _release_resources(self, container: Container) -> None:
        # Never delete through a root that is still mounted: the teardown that failed said why.
        if container.path.exists() and not os.path.ismount(container.rootfs_dir):
            shutil.rmtree(container.path, ignore_errors=True)
        if container.network is not None:
            self.pools.network.release(container.network)
        if container.uid is not None:
            self.pools.uids.release(container.uid)
        for port in container.ports:
            self.pools.ports.release(port)

    # -- stop and destroy -----------------------------------------------------------------
    def stop(self, container: Container, kill: bool = False) -> None:
        check_state(container, ACTIVE, STOPPED)
        if container.state == STOPPED:
            return
        try:
            self._stop(container, kill)
        finally:
            self.persistence.write(container)

    def _stop(self, container: Container, kill: bool) -> None:
        container.state = STOPPED
        self.hooks.stop(container, kill, 0.0 if kill else STOP_TIMEOUT)

    def destroy(self, container: Container) -> None:
        """What the API needs now: every process killed, jobs finished, the handle free.

        The snapshot says `destroying` before anything is torn down, so from here on a crash
        is finished by recovery. The rest (the network beside limits, rootfs and disk; then
        the pools and the directory) is `finish_destroy`'s, run off the request's path.
        """
        if container.state == ACTIVE:
            try:
                self._stop(container, kill=False)
            except Exception as exc:
                log.warning("stop before destroy of %s: %s", container.id, exc)
        container.destroying = True  # a crash from here on: recovery finishes the destroy
        self.persistence.write(container)  # one write for the stop and the destroy
        errors = self._teardown(container, DESTROY_NOW)
        if errors:
            container.destroying = False
            self.persistence.write(container)
            raise errors[0] if isinstance(errors[0], WardenError) else WardenError(str(errors[0]))
        for job in container.jobs.values():
            job.finish(EXIT_KILLED)
        container.state = DESTROYED
        self.persistence.drop(container)
        with self._lock:
            if self.containers.get(container.handle) is container:
                del self.containers[container.handle]

    def finish_destroy(self, container: Container) -> bool:
        """The rest of a destroy: the remaining teardowns, then (only if all succeeded) the
        network, uid and ports back to the pools and the directory removed. If a teardown
        fails, the snapshot keeps `destroying` and the pool entries stay reserved: the next
        start finishes it. Returns whether everything was released."""
        errors = self._teardown_all(container)
        for err in errors:
            log.error("destroy of %s: %s (the next start finishes it)", container.id, err)
        if errors:
            return False
        self._release_resources(container)
        return True

    # -- jobs -----------------------------------------------------------------------------
    def spawn(self, container: Container, spec: JobSpec, id_known: bool = True,
              linger: float = 0.0) -> Job:
        """Start a job. `id_known`: its client learns its id (a Spawn) and may link it after
        a restart, so the record names it before the answer (persistence.py). The driver may
        wait up to `linger` seconds for a short job's end (hookspecs.spawn)."""
        check_state(container, ACTIVE)
        if spec.name is not None and self._named(container, spec.name) is not None:
            raise WardenError(f"process ID '{spec.name}' already in use")
        job_id = self.new_job_id()
        job = Job.from_spec(job_id, make_job_dir(container.jobs_dir, job_id), spec,
                            rlimits={**self.settings.server.container_rlimits, **spec.rlimits},
                            linger=linger, output_limit=self._output_limit(spec))
        job.env = (*container.env, *spec.env)
        try:
            job.record = self.hooks.spawn(container, job, self.settings) or {}
        except BaseException:
            shutil.rmtree(job.dir, ignore_errors=True)
            raise
        container.jobs[job_id] = job
        self.persistence.job_started(container, job, id_known)
        return job

    def prepare_job_dir(self, container: Container) -> None:
        """Make the directory of the container's next job ahead (jobs.make_job_dir)."""
        if container.state == ACTIVE:
            prepare_spare(container.jobs_dir)

    def find_job(self, container: Container, job_id: int) -> Job:
        job = container.jobs.get(job_id)
        if job is None:
            raise WardenError("no such job")
        return job

    def find_process(self, container: Container, process_id: str) -> Job:
        """A job by its Garden process ID (Job.process_id)."""
        job = self._named(container, process_id)
        if job is None:
            raise ProcessNotFound(process_id)
        return job

    @staticmethod
    def _named(container: Container, process_id: str) -> Job | None:
        for job in list(container.jobs.values()):
            if job.process_id == process_id:
                return job
        return None

    def signal_process(self, container: Container, job: Job, signo: int) -> None:
        """Send `signo` to a job's process group (a client's terminate or kill)."""
        self.hooks.signal_job(container, job, signo)

    def resize_tty(self, container: Container, job: Job, rows: int, columns: int) -> None:
        if job.tty is None:
            return  # Garden ignores a window size for a process without a TTY
        job.tty = (rows, columns)
        self.hooks.resize_tty(container, job, rows, columns)

    def forget_job(self, container: Container, job: Job) -> None:
        """A job whose result a client received is gone (facts §6.3). Memory only, so the
        server may call it on the loop; its record and directory follow (persistence.py). A
        crash before then brings the finished job back at recovery, its status read from its
        directory; nothing is lost or leaked."""
        if container.jobs.pop(job.id, None) is not None:
            self.persistence.job_forgotten(container, job)

    def job_ended(self, container: Container, job: Job) -> None:
        """A job of `container` ended (called on the loop by the server's supervision)."""
        self.persistence.job_ended(container, job)

    def enforce_output_limit(self, container: Container, job: Job) -> None:
        """Kill a job whose combined output passed job_output_limit (facts §6.4)."""
        if job.done or job.output_limit is None or job.output_limit_hit:
            return
        if job.output_size() <= job.output_limit:
            return
        job.output_limit_hit = True
        try:
            self.hooks.signal_job(container, job, signal.SIGKILL)
        finally:
            job.finish(EXIT_KILLED)

    # -- Garden's container state ------------------------------------------------------------
    def set_property(self, container: Container, key: str, value: str) -> None:
        check_state(container, ACTIVE, STOPPED)
        container.properties[key] = value
        self.persistence.write(container)

    def remove_property(self, container: Container, key: str) -> None:
        check_state(container, ACTIVE, STOPPED)
        if container.properties.pop(key, None) is None:
            raise WardenError(f"cannot remove property {key}: no such property")
        self.persistence.write(container)

    def set_grace_time(self, container: Container, seconds: float | None) -> None:
        """The server's grace timer uses it from the next time the container is unreferenced."""
        container.grace_time = seconds
        self.persistence.write(container)

    # -- networking and limits ------------------------------------------------------------
    def net_in(self, container: Container, host_port: int | None, container_port: int | None) -> tuple[int, int]:
        check_state(container, ACTIVE)
        from_pool = not host_port
        if from_pool:
            host_port = self.pools.ports.acquire_port()
        container_port = container_port or host_port
        try:
            self.hooks.net_in(container, host_port, container_port)
        except BaseException:
            if from_pool:
                self.pools.ports.release(host_port)
            raise
        if from_pool:
            container.ports.append(host_port)
        container.net_in_rules.append([host_port, container_port])
        self.persistence.write(container)
        return host_port, container_port

    def net_out(self, container: Container, rule: dict) -> None:
        check_state(container, ACTIVE)
        container.net_out_rules.append(self.hooks.net_out(container, rule))
        self.persistence.write(container)

    def limit_memory(self, container: Container, limit: int | None) -> int:
        check_state(container, ACTIVE, STOPPED)
        kept = self.hooks.limit_memory(container, limit)
        if limit is not None:
            container.memory_limit = limit
            self.persistence.write(container)
        return kept

    def limit_cpu(self, container: Container, shares: int | None) -> int:
        check_state(container, ACTIVE, STOPPED)
        kept = self.hooks.limit_cpu(container, shares)
        if shares is not None:
            container.cpu_shares = shares
            self.persistence.write(container)
        return kept

    def limit_pids(self, container: Container, limit: int | None) -> int:
        check_state(container, ACTIVE, STOPPED)
        kept = self.hooks.limit_pids(container, limit)
        if limit is not None:
            container.pids_limit = limit
            self.persistence.write(container)
        return kept

    def limit_bandwidth(self, container: Container, rate: int, burst: int) -> tuple[int, int]:
        check_state(container, ACTIVE, STOPPED)
        # Not in the snapshot: the shaping lives on the interfaces, which outlive a restart.
        return self.hooks.limit_bandwidth(container, rate, burst)

    def limit_disk(self, container: Container, limits: dict) -> dict:
        check_state(container, ACTIVE, STOPPED)
        if not self.hooks.has("disk") or not self.settings.quota.disk_quota_enabled:
            return {}
        return self.hooks.limit_disk(container, limits)

    def copy_in(self, container: Container, src: str, dst: str) -> None:
        check_state(container, ACTIVE)
        self.hooks.copy_in(container, src, dst)

    def copy_out(self, container: Container, src: str, dst: str, owner: str | None) -> None:
        check_state(container, ACTIVE, STOPPED)
        self.hooks.copy_out(container, src, dst, owner)

    def info(self, container: Container, full: bool = True) -> dict:
        """The container's InfoResponse fields; `full` False for the info that Link, Run and
        Stream answers carry (hookspecs.info)."""
        check_state(container, ACTIVE, STOPPED)
        fields: dict[str, Any] = {
            "state": container.state, "events": list(container.events),
            "host_ip": container.host_ip, "container_ip": container.container_ip,
            "container_path": str(container.path), "job_ids": container.running_job_ids(),
        }
        fields.update(self.hooks.info(container, full))
        return fields

    def record_event(self, container: Container, event: str) -> None:
        """Add `event` to the container's events (Info lists them) and tell the observers."""
        if event not in container.events:
            container.add_event(event)
            self.hooks.container_event(container, event)

    def out_of_memory(self, container: Container) -> None:
        """An OOM event arrived: record it and stop the container, as Warden does (facts §4.7)."""
        self.record_event(container, OUT_OF_MEMORY)
        if container.state == ACTIVE:
            self.stop(container)
        else:
            self.persistence.write(container)

    # -- snapshots and recovery -----------------------------------------------------------
    def recover_all(self) -> list[Container]:
        """Re-register every live container in the depot; destroy the others completely."""
        recovered = []
        highest_job = 0
        if not self.depot.is_dir():
            return recovered
        paths = sorted(p for p in self.depot.iterdir() if p.is_dir())
        with futures.ThreadPoolExecutor(RECOVERY_WORKERS, "recover") as workers:
            for container in workers.map(self._recover_or_log, paths):
                if container is not None:
                    recovered.append(container)
                    highest_job = max([highest_job, *container.jobs])
        self.new_job_id.resume_after(highest_job)
        return recovered

    def _recover_or_log(self, path: Path) -> Container | None:
        try:
            return self._recover_one(path)
        except Exception as exc:  # one broken container never blocks the others
            log.error("recovery of %s failed: %s", path, exc)
            return None

    def _recover_one(self, path: Path) -> Container | None:
        data = persistence.read(path)
        if data is None or data["state"] not in (ACTIVE, STOPPED) or data.get("destroying"):
            reason = "no readable snapshot" if data is None else (
                "destroy was under way" if data.get("destroying") else f"state {data['state']}")
            self._clean_dead(path, data, reason)
            return None
        container = Container.from_dict(data, path)
        container.jobs = {int(k): Job.from_dict(int(k), container.jobs_dir, v)
                          for k, v in data.get("jobs", {}).items()}
        _remove_unrecorded_jobs(container)
        self._arm_output_limits(container)
        self._reserve(container)
        try:
            self.hooks.recover(container, self.settings)
        except Exception as exc:
            self._clean_dead(path, data, f"recover failed: {exc}", container)
            return None
        with self._lock:
            self.containers[container.handle] = container
        self.persistence.write(container)
        return container

    def _arm_output_limits(self, container: Container) -> None:
        """Check the output limit of every running job at its end, as for a new one."""
        for job in container.jobs.values():
            if not job.done:
                job.output_limit = self._output_limit(job)

    def _output_limit(self, job: JobSpec | Job) -> int | None:
        """A job's output limit: job_output_limit for a Warden job (facts §6.4), none for
        output thrown away or a Garden process (Garden streams output and limits none)."""
        if job.discard_output or job.argv is not None:
            return None
        return self.settings.server.job_output_limit

    def _reserve(self, container: Container) -> None:
        if container.network is not None:
            self.pools.network.remove(container.network)
        if container.uid is not None:
            self.pools.uids.remove(container.uid)
        for port in container.ports:
            self.pools.ports.remove(port)

    def _clean_dead(self, path: Path, data: dict | None, reason: str,
                    container: Container | None = None) -> None:
        log.warning("destroying container in %s: %s", path, reason)
        if container is None:
            if data is not None:
                container = Container.from_dict(data, path)
            else:
                container = Container(id=path.name, handle=path.name, path=path)
            self._reserve(container)
        # Without a record every teardown runs with None and finds objects by the id.
        for subsystem, _, _ in CREATE_STEPS:
            container.records.setdefault(subsystem, None)
        errors = self._teardown_all(container)
        for err in errors:
            log.error("cleanup of %s: %s", path, err)
        if errors:  # keep its pool entries and directory: the next start tries again
            return
        self._release_resources(container)


def _remove_unrecorded_jobs(container: Container) -> None:
    """Remove the directories of jobs no snapshot named (a Run's job is recorded by a flush
    after it started, and the server died first): no client can link them, and their ids
    are free again after recovery. A job still running there keeps writing to unlinked files."""
    if not container.jobs_dir.is_dir():
        return
    for path in container.jobs_dir.iterdir():
        if not (path.name.isdigit() and int(path.name) in container.jobs):
            shutil.rmtree(path, ignore_errors=True)
