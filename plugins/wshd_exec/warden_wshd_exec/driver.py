"""The wshd exec driver: a table of contents over wshd_client (launch, socket protocol),
jobspec (what a job runs as), processes (stop) and reaper (job exits).

Per container, wshd serves `<container>/run/wshd.sock`; each job's stdio and status fds are
files under `<container>/jobs/<id>/` opened here, so jobs survive a server restart. wshd copies
the job's output into them under job_output_limit (it outlives the server, like Warden's
iomux-spawn), so no process of the job can fill the disk, whenever it writes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from warden_framework import hookimpl
from warden_framework.drivers import ExecDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import jobspec, kernel, processes
from .binary import configured_binary
from .reaper import Reaper
from .wshd_client import (WshdConnection, WshdError, is_alive, kill_wshd, parse_status_file,
                          read_pid_file, start_wshd)

log = logging.getLogger(__name__)


class WshdDriver(ExecDriver):
    """The exec driver `wshd`. Its hooks, all its own:

    - setup_init, start_init, teardown_init: wshd started through its barrier, released,
      killed with its pid namespace (wshd_client.py);
    - spawn, signal_job: jobs run and signalled through wshd's socket; their exits come
      through the reaper thread (jobspec.py, reaper.py);
    - stop: every process but the init, TERM then KILL (processes.py);
    - recover: wshd checked alive and running jobs waited for again.

    Every kernel call is in kernel.py; wshd's socket protocol is the plugin's own.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.binary = configured_binary(settings.server.wshd_path)
        self._launches: dict[str, object] = {}
        self._lock = threading.Lock()
        self._reaper: Reaper | None = None

    @classmethod
    def check_host(cls, settings) -> None:
        path = configured_binary(settings.server.wshd_path)
        if not os.access(path, os.X_OK):
            raise DriverUnavailable(f"wshd binary {path} not found or not executable "
                                    f"(make -C native/wshd, or scripts/bootstrap.sh)")
        if settings.user.namespaces:
            refused = kernel.user_namespace_refusal()
            if refused:
                raise DriverUnavailable(
                    f"wshd: the kernel refuses a new user namespace ({refused}); set "
                    f"user.namespaces: false, or allow them (sysctl user.max_user_namespaces)")

    @property
    def reaper(self) -> Reaper:
        with self._lock:
            if self._reaper is None:
                self._reaper = Reaper()
            return self._reaper

    # -- the container's init ------------------------------------------------------------
    @hookimpl
    def setup_init(self, container, settings):
        container.run_dir.mkdir(exist_ok=True)
        binds = [(b["src"], b["dst"], b["mode"] == "ro") for b in container.binds]
        cgroup_tasks = (container.records.get("limits") or {}).get("tasks", [])
        id_map = container.id_map
        try:
            launch = start_wshd(self.binary, container.run_dir, container.rootfs_dir,
                                container.id, binds, cgroup_tasks=cgroup_tasks,
                                id_map=None if id_map is None else (id_map.host_base, id_map.size))
        except (WshdError, OSError) as exc:
            raise DriverError(f"start wshd for {container.id}: {exc}") from exc
        self._launches[container.id] = launch
        try:  # it builds its root while the network step attaches its netns
            launch.go()
        except WshdError as exc:
            raise DriverError(f"wshd of {container.id} did not start: {exc}") from exc
        # output_mux: this wshd copies job output under a limit (OUTPUT_LIMIT); the wshd of a
        # container made by an older server refuses that field, so its record lacks the mark.
        return {"pid": launch.pid, "output_mux": True}

    @hookimpl
    def start_init(self, container, record):
        launch = self._launches.pop(container.id)
        try:
            launch.wait_ready()
        except WshdError as exc:
            raise DriverError(f"wshd of {container.id} did not start: {exc}") from exc

    @hookimpl
    def teardown_init(self, container, record):
        launch = self._launches.pop(container.id, None)
        if launch is not None:
            launch.abort()
        pid = (record or {}).get("pid") or read_pid_file(container.run_dir)
        if pid and processes.is_wshd(pid, str(container.run_dir)):
            try:
                kill_wshd(pid)
            except WshdError as exc:
                raise DriverError(f"wshd of {container.id}: {exc}") from exc

    # -- jobs ----------------------------------------------------------------------------
    @hookimpl
    def spawn(self, container, job, settings):
        spec = jobspec.job_spec(container.uid, job.privileged, job.rlimits)
        fds = _open_job_files(job)
        try:
            conn = WshdConnection(container.run_dir)
            try:
                # wshd copies the output under job_output_limit, also what a process the job
                # leaves behind writes after its end (None for discard_output: /dev/null).
                muxed = (container.records.get("exec") or {}).get("output_mux", False)
                pid = conn.spawn(spec.argv, spec.env, spec.cwd, spec.uid, spec.gid, spec.rlimits,
                                 *fds, output_limit=job.output_limit if muxed else None)
            except BaseException:
                conn.close()
                raise
        except (WshdError, OSError) as exc:
            raise WardenError(f"spawn job in {container.handle}: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        if not (job.linger and self._finish_within(conn, job, job.linger)):
            self.reaper.watch(conn, lambda info: self._finished(job, info))
        return {"pid": pid}

    def _finish_within(self, conn, job, timeout: float) -> bool:
        """Read the job's EXIT on its own connection if it comes within `timeout` seconds:
        a short job is then finished from this thread, with no hand-off through the reaper."""
        if not (conn.pending or kernel.readable(conn, timeout)):
            return False
        try:
            info = conn.wait_exit()
        except WshdError as exc:  # as the reaper does: the status file still says
            log.warning("wshd connection lost: %s", exc)
            info = None
        finally:
            conn.close()
        self._finished(job, info)
        return True

    def _finished(self, job, info) -> None:
        if info is None:  # connection lost: the status file written by wshd decides
            info = parse_status_file(_read_text(job.status_path))
        job.finish(255 if info is None else jobspec.exit_status(info.exit_code, info.signal))

    @hookimpl
    def signal_job(self, container, job, signo):
        pid = job.record.get("pid")
        if pid is None or job.done:
            return
        try:
            with WshdConnection(container.run_dir) as conn:
                conn.signal(pid, signo, group=True)
        except WshdError as exc:
            if "no such job" not in str(exc):
                raise DriverError(f"signal job {job.id} of {container.handle}: {exc}") from exc

    @hookimpl
    def stop(self, container, kill, timeout):
        pid = (container.records.get("exec") or {}).get("pid")
        if not pid:
            return
        survivors = processes.stop_all(pid, kill, timeout)
        if survivors:
            raise DriverError(f"stop {container.handle}: processes {survivors} survived SIGKILL")

    # -- restart -------------------------------------------------------------------------
    @hookimpl
    def recover(self, container, settings):
        """wshd must be alive; running jobs are re-attached through WAIT on a new connection."""
        if "exec" not in container.records:
            return
        if not is_alive(container.run_dir):
            raise WardenError(f"wshd of {container.id} is not running")
        for job in container.jobs.values():
            if not job.done:
                self._reattach(container, job)

    def _reattach(self, container, job) -> None:
        """WAIT on a new connection; a job reaped meanwhile answers `no such job`, which the
        reaper turns into reading the status file."""
        conn = WshdConnection(container.run_dir)
        try:
            conn.request_wait(job.record["pid"])
        except BaseException:
            conn.close()
            raise
        self.reaper.watch(conn, lambda info: self._finished(job, info))


def _open_job_files(job) -> list[int]:
    """stdin (the script), stdout, stderr, status: opened here so they outlive the server.
    The script is a memfd: bash alone reads it, so it need not be a file in the job's directory."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    stdin = kernel.memfd_holding("warden-job-script", job.script)
    if job.discard_output:
        out = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        err = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    else:
        out = os.open(job.stdout_path, flags, 0o600)
        err = os.open(job.stderr_path, flags, 0o600)
    status = os.open(job.status_path, flags, 0o600)
    return [stdin, out, err, status]


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
