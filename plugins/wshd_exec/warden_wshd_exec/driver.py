"""The wshd exec driver: a table of contents over wshd_client (launch, socket protocol),
jobspec (what a job runs as), stdio (the descriptors a job starts with), terminals (TTY
relays), processes (stop) and reaper (job exits).

Per container, wshd serves `<container>/run/wshd.sock`; each job's stdio and status fds are
files under `<container>/jobs/<id>/` opened here, so jobs survive a server restart. wshd copies
the job's output into them under job_output_limit (it outlives the server, like Warden's
iomux-spawn), so no process of the job can fill the disk, whenever it writes. A TTY job's
output is copied by a relay thread of this server instead, and ends with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import weakref
from pathlib import Path

from warden_framework import hookimpl
from warden_framework.drivers import ExecDriver
from warden_framework.errors import DriverError, DriverUnavailable, WardenError

from . import jobspec, kernel, processes, stdio
from .binary import configured_binary
from .reaper import Reaper
from .terminals import TtyRelay
from .wshd_client import (
    WshdConnection,
    WshdError,
    is_alive,
    kill_wshd,
    make_mount_seed,
    parse_status_file,
    read_pid_file,
    start_wshd,
)

log = logging.getLogger(__name__)

PASSWD_LIMIT = 4 << 20  # bytes of a container's /etc/passwd read to find a user


class WshdDriver(ExecDriver):
    """The exec driver `wshd`. Its hooks, all its own:

    - setup_init, start_init, teardown_init: wshd started through its barrier, released,
      killed with its pid namespace (wshd_client.py);
    - spawn, signal_job: jobs (Warden's bash scripts, Garden's processes with their user, env,
      dir, stdin pipe or TTY) run and signalled through wshd's socket; their exits come
      through the reaper thread (jobspec.py, stdio.py, reaper.py);
    - resize_tty: a TTY job's window size, set on the master its relay holds (terminals.py);
    - stop: every process but the init, TERM then KILL (processes.py);
    - recover: wshd checked alive and running jobs waited for again (a TTY job's terminal
      was hung up when the server that held its master exited).

    Every kernel call is in kernel.py; wshd's socket protocol is the plugin's own.
    """

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.binary = configured_binary(settings.server.wshd_path)
        self._launches: dict[str, object] = {}
        self._lock = threading.Lock()
        self._reaper: Reaper | None = None
        self._ttys: dict[tuple[str, int], TtyRelay] = {}  # (container id, job id): live relays
        self._mount_seed: int | None = None

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

    def mount_seed(self, settings) -> int:
        """The mount namespace every container's root is built in, made at the first create
        (over the depot directory, in a copy of this namespace; the host never sees it) and
        closed with the driver. WshdError or OSError if wshd cannot make it."""
        with self._lock:
            if self._mount_seed is None:
                try:
                    fd = make_mount_seed(self.binary, Path(settings.server.container_depot_path))
                except WshdError as exc:
                    raise WshdError(f"make the mount seed: {exc}") from exc
                self._mount_seed = fd
                weakref.finalize(self, os.close, fd)
            return self._mount_seed

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
            seed = self.mount_seed(settings)
            launch = start_wshd(self.binary, container.run_dir, container.rootfs_dir,
                                container.id, binds, cgroup_tasks=cgroup_tasks,
                                id_map=None if id_map is None else (id_map.host_base, id_map.size),
                                mount_seed=seed)
        except (WshdError, OSError) as exc:
            raise DriverError(f"start wshd for {container.id}: {exc}") from exc
        self._launches[container.id] = launch
        try:  # it builds its root while the network step attaches its netns
            launch.go()
        except WshdError as exc:
            raise DriverError(f"wshd of {container.id} did not start: {exc}") from exc
        # output_mux, tty: this wshd copies job output under a limit (OUTPUT_LIMIT) and makes
        # a TTY the controlling terminal (TTY); the wshd of a container made by an older server
        # refuses those fields, so its record lacks the marks.
        return {"pid": launch.pid, "output_mux": True, "tty": True}

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
        record = container.records.get("exec") or {}
        if job.tty is not None and not record.get("tty"):
            raise WardenError(f"spawn job in {container.handle}: its wshd was started by an "
                              f"older server and has no TTY support")
        with contextlib.ExitStack() as stack:
            root = _LazyRoot(container, stack)
            spec, user = self._spec(container, job, root)
            io = stdio.open_stdio(job, lambda: self._open_tty(container, job, user, root))
        # wshd copies the output under job_output_limit, also what a process the job leaves
        # behind writes after its end (None for discard_output: /dev/null). A TTY's output
        # comes through its relay instead, started before the job so that the job never
        # runs without one (if the SPAWN fails, the slave's close ends the relay).
        muxed = record.get("output_mux", False) and job.tty is None
        try:
            relay = self._relay_tty(container, job, io.input_fd) if job.tty is not None else None
            conn, pid = self._send_spawn(container, spec, io, tty=job.tty is not None,
                                         output_limit=job.output_limit if muxed else None)
        except BaseException:
            io.close_input()
            raise
        finally:
            io.close_sent()
        job.stdin_fd = io.input_fd
        if not (job.linger and self._finish_within(conn, job, job.linger, relay)):
            self.reaper.watch(conn, lambda info: self._finished(job, info, relay))
        return {"pid": pid}

    def _send_spawn(self, container, spec: jobspec.JobSpec, io: stdio.JobStdio, tty: bool,
                    output_limit: int | None) -> tuple[WshdConnection, int]:
        """SPAWN on a new connection, on which the job's EXIT will come; (connection, pid)."""
        try:
            conn = WshdConnection(container.run_dir)
            try:
                pid = conn.spawn(spec.argv, spec.env, spec.cwd, spec.uid, spec.gid, spec.rlimits,
                                 *io.sent, output_limit=output_limit, tty=tty)
            except BaseException:
                conn.close()
                raise
        except (WshdError, OSError) as exc:
            raise WardenError(f"spawn job in {container.handle}: {exc}") from exc
        return conn, pid

    def _spec(self, container, job, root: _LazyRoot) -> tuple[jobspec.JobSpec, jobspec.User]:
        """What the job runs as: Warden's bash, or a Garden process as its user, whom the
        container's own /etc/passwd names (read through its init's root)."""
        if job.argv is None:
            spec = jobspec.job_spec(container.uid, job.privileged, job.rlimits)
            return spec, jobspec.User(None, spec.uid, spec.gid, spec.cwd)
        passwd = ""
        if jobspec.needs_passwd(job.user):
            try:
                data = kernel.read_in_root(root.fd(), "etc/passwd", PASSWD_LIMIT)
            except OSError as exc:
                raise WardenError(f"spawn job in {container.handle}: read /etc/passwd: "
                                  f"{exc.strerror}") from exc
            passwd = (data or b"").decode("utf-8", "replace")
        user = jobspec.process_user(job.user, container.uid, passwd)
        return jobspec.process_spec(job.argv, job.env, job.cwd, user, job.rlimits), user

    def _open_tty(self, container, job, user: jobspec.User, root: _LazyRoot) -> tuple[int, int]:
        """A pseudo-terminal of the container's devpts, its slave owned by the job's user."""
        rows, columns = job.tty
        try:
            owner = container.host_id(user.uid), container.host_id(user.gid)
        except ValueError as exc:  # outside the user namespace: wshd's setuid refuses it too
            raise WardenError(f"spawn job in {container.handle}: {exc}") from exc
        try:
            return kernel.open_pty(root.fd(), owner, rows, columns)
        except (OSError, struct.error) as exc:
            raise WardenError(f"spawn job in {container.handle}: open a TTY: {exc}") from exc

    def _relay_tty(self, container, job, master: int) -> TtyRelay:
        """Start copying the TTY's output into the job's stdout file (terminals.py), from a
        duplicate of `master` that the relay owns."""
        key = (container.id, job.id)
        out = os.devnull if job.discard_output else job.stdout_path
        own = os.dup(master)
        try:
            relay = TtyRelay(own, out, f"wshd-tty-{container.id}-{job.id}",
                             on_end=lambda: self._forget_tty(key))
        except BaseException:
            os.close(own)
            raise
        with self._lock:
            self._ttys[key] = relay
        try:
            relay.start()
        except BaseException:
            self._forget_tty(key)
            raise
        return relay

    def _forget_tty(self, key) -> None:
        with self._lock:
            self._ttys.pop(key, None)

    def _finish_within(self, conn, job, timeout: float, relay: TtyRelay | None) -> bool:
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
        self._finished(job, info, relay)
        return True

    def _finished(self, job, info, relay: TtyRelay | None = None) -> None:
        if info is None:  # connection lost: the status file written by wshd decides
            info = parse_status_file(_read_text(job.status_path))
        status = 255 if info is None else jobspec.exit_status(info.exit_code, info.signal)
        # A TTY job ends once its output is in its stdout file (terminals.py).
        if relay is None or not relay.finish_after_output(lambda: job.finish(status)):
            job.finish(status)

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
    def resize_tty(self, container, job, rows, columns):
        with self._lock:
            relay = self._ttys.get((container.id, job.id))
        if relay is None:  # no TTY, its last user left, or it was lost with a restart
            return
        try:
            relay.resize(rows, columns)
        except (OSError, struct.error) as exc:
            raise DriverError(f"resize the TTY of job {job.id} of {container.handle} to "
                              f"{rows}x{columns}: {exc}") from exc

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
        """wshd must be alive; running jobs are re-attached through WAIT on a new connection.

        A running TTY job is re-attached as it is: its master closed with the previous server,
        so the kernel hung its terminal up (SIGHUP to its foreground group), which ends most
        programs; one that ignores it runs on without input or output, as after a dropped ssh
        session, until it exits or is signalled. It gets no relay: resize_tty does nothing."""
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


class _LazyRoot:
    """The container's root as its init sees it (/proc/<pid>/root), opened on first use and
    closed with `stack`: only a Garden process's user lookup or TTY needs it."""

    def __init__(self, container, stack: contextlib.ExitStack) -> None:
        self._container = container
        self._stack = stack
        self._fd: int | None = None

    def fd(self) -> int:
        if self._fd is None:
            box = self._container
            pid = (box.records.get("exec") or {}).get("pid")
            try:
                fd = kernel.open_process_root(pid)
            except OSError as exc:
                raise WardenError(f"spawn job in {box.handle}: open the root of wshd {pid}: "
                                  f"{exc.strerror}") from exc
            self._stack.callback(os.close, fd)
            # After the open: a pid reused since by another process fails this check.
            if not processes.is_wshd(pid, str(box.run_dir)):
                raise WardenError(f"spawn job in {box.handle}: wshd {pid} is not running")
            self._fd = fd
        return self._fd


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
