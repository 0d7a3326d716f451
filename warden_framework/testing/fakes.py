"""In-memory drivers recording the order of calls, injected through `load_drivers(overrides=)`.

They are never registered as entry points, so a config typo can never select one. FakeExec
runs each job's script with the host's bash (no container), so the job protocol is real, and
a Garden process's argv on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import ClassVar

from .. import hookimpl
from ..drivers import DiskDriver, ExecDriver, LimitsDriver, NetworkDriver, RootfsDriver
from ..errors import DriverError, WardenError


class CallLog(list):
    """A shared list of (driver, hook, container id) tuples."""


class _Fake:
    calls: ClassVar[CallLog] = CallLog()
    fail_on: ClassVar[set[str]] = set()

    @classmethod
    def check_host(cls, settings) -> None:
        return None

    def _record(self, hook: str, container) -> None:
        self.calls.append((self.subsystem, hook, container.id))
        if hook in self.fail_on:
            raise DriverError(f"{hook} failed on purpose")


class FakeRootfs(_Fake, RootfsDriver):
    @hookimpl
    def setup_fs(self, container, settings):
        self._record("setup_fs", container)
        if container.rootfs_request and not os.path.isdir(container.rootfs_request):
            raise WardenError(f"rootfs {container.rootfs_request} not found")
        container.rootfs_dir.mkdir()
        return {"lower": container.rootfs_request or settings.server.container_rootfs_path}

    @hookimpl
    def teardown_fs(self, container, record):
        self._record("teardown_fs", container)

    @hookimpl
    def copy_in(self, container, src_path, dst_path):
        self._record("copy_in", container)

    @hookimpl
    def copy_out(self, container, src_path, dst_path, owner):
        self._record("copy_out", container)


class FakeExec(_Fake, ExecDriver):
    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.procs: dict[tuple[str, int], subprocess.Popen] = {}

    @hookimpl
    def setup_init(self, container, settings):
        self._record("setup_init", container)
        return {"pid": os.getpid()}

    @hookimpl
    def start_init(self, container, record):
        self._record("start_init", container)

    @hookimpl
    def teardown_init(self, container, record):
        self._record("teardown_init", container)
        self._kill_jobs(container, True, 0)

    @hookimpl
    def spawn(self, container, job, settings):
        self._record("spawn", container)
        if job.argv is not None:
            return self._spawn_process(container, job)
        out = open(job.stdout_path, "wb") if not job.discard_output else subprocess.DEVNULL
        err = open(job.stderr_path, "wb") if not job.discard_output else subprocess.DEVNULL
        proc = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=out, stderr=err,
                                start_new_session=True, env={"PATH": "/usr/bin:/bin"})
        for f in (out, err):
            if f is not subprocess.DEVNULL:
                f.close()
        self.procs[(container.id, job.id)] = proc
        waiter = threading.Thread(target=self._feed_and_wait, args=(proc, job), daemon=True)
        waiter.start()
        if job.linger:
            waiter.join(job.linger)
        return {"pid": proc.pid}

    def _spawn_process(self, container, job) -> dict:
        """A Garden process on the host: job.argv with job.env, in job.cwd (None: the server's
        directory), as the server's user; stdin a pipe whose write end is job.stdin_fd
        (non-blocking, the front end's to close); no TTY."""
        if job.tty is not None:
            raise DriverError("the fake exec driver makes no TTYs")
        env = {"PATH": "/usr/bin:/bin"}
        env.update(entry.split("=", 1) for entry in job.env if "=" in entry)
        read_end, write_end = os.pipe2(os.O_CLOEXEC) if job.stdin else (None, None)
        try:
            with open(job.stdout_path, "wb") as out, open(job.stderr_path, "wb") as err:
                proc = subprocess.Popen(list(job.argv), cwd=job.cwd, env=env, stdout=out,
                                        stderr=err, start_new_session=True,
                                        stdin=subprocess.DEVNULL if read_end is None else read_end)
        except OSError as exc:
            if write_end is not None:
                os.close(write_end)
            raise WardenError(f"exec {job.argv[0]}: {exc.strerror}") from None
        finally:
            if read_end is not None:
                os.close(read_end)
        if write_end is not None:
            os.set_blocking(write_end, False)
            job.stdin_fd = write_end
        self.procs[(container.id, job.id)] = proc
        threading.Thread(target=self._wait, args=(proc, job), daemon=True).start()
        return {"pid": proc.pid}

    @staticmethod
    def _wait(proc: subprocess.Popen, job) -> None:
        code = proc.wait()
        job.finish(code if code >= 0 else 255)

    def _feed_and_wait(self, proc: subprocess.Popen, job) -> None:
        try:
            proc.stdin.write(job.script)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        code = proc.wait()
        job.finish(code if code >= 0 else 255)

    @hookimpl
    def signal_job(self, container, job, signo):
        proc = self.procs.get((container.id, job.id))
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signo)

    @hookimpl
    def stop(self, container, kill, timeout):
        self._record("stop", container)
        self._kill_jobs(container, kill, timeout)

    def _kill_jobs(self, container, kill, timeout):
        for (cid, _), proc in list(self.procs.items()):
            if cid == container.id and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout or None if not kill else 5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


class FakeLimits(_Fake, LimitsDriver):
    @hookimpl
    def apply_limits(self, container, settings):
        self._record("apply_limits", container)
        return {"memory": 1 << 63, "cpu": 1024}

    @hookimpl
    def release_limits(self, container, record):
        self._record("release_limits", container)

    @hookimpl
    def limit_memory(self, container, limit):
        if limit is not None:
            container.records["limits"]["memory"] = (limit + 4095) // 4096 * 4096
        return container.records["limits"]["memory"]

    @hookimpl
    def limit_cpu(self, container, shares):
        if shares is not None:
            container.records["limits"]["cpu"] = max(shares, 2)
        return container.records["limits"]["cpu"]


class FakeNetwork(_Fake, NetworkDriver):
    @hookimpl
    def setup_net(self, container, settings):
        self._record("setup_net", container)
        return {"host_iface": f"w-{container.id}-0"}

    @hookimpl
    def teardown_net(self, container, record):
        self._record("teardown_net", container)

    @hookimpl
    def net_in(self, container, host_port, container_port):
        self._record("net_in", container)
        return {"host_port": host_port, "container_port": container_port}

    @hookimpl
    def net_out(self, container, rule):
        self._record("net_out", container)
        if not any(rule.get(k) for k in ("network", "port", "port_range")):
            raise WardenError("Please specify network, port, and/or port_range.")
        return rule

    @hookimpl
    def limit_bandwidth(self, container, rate, burst):
        return rate, burst


class FakeDisk(_Fake, DiskDriver):
    @hookimpl
    def setup_disk(self, container, settings):
        self._record("setup_disk", container)
        return {}

    @hookimpl
    def teardown_disk(self, container, record):
        self._record("teardown_disk", container)

    @hookimpl
    def limit_disk(self, container, limits):
        return {"block_limit": limits.get("block_limit", 0)}


FAKE_DRIVERS = {"rootfs": FakeRootfs, "exec": FakeExec, "limits": FakeLimits,
                "network": FakeNetwork, "disk": FakeDisk}
