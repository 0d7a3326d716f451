"""Run warden-server as a real subprocess (for restart, drain and crash tests, and benchmarks):
start it on a config, wait until it answers, SIGKILL or SIGUSR2 it, start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..client import Client
from ..config import Settings, settings_from_dict


# Inside the emulated test guest (warden_framework.testing.guest sets WARDEN_GUEST) Python
# runs 5-10 times slower, and a server's start-up with it.
START_TIMEOUT = 180.0 if os.environ.get("WARDEN_GUEST") else 30.0


class ServerProcess:
    def __init__(self, config: dict, workdir: Path, python: str = sys.executable) -> None:
        """`python` runs the server: another checkout's venv runs that checkout's server."""
        self.python = python
        self.config = config
        self.workdir = workdir
        self.config_path = workdir / "warden.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.settings: Settings = settings_from_dict(config)
        self.socket = self.settings.server.unix_domain_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT, fault: str | None = None) -> ServerProcess:
        """Start the server and wait until it answers a ping; a server that does not answer
        within `timeout` is killed (its host state stays for stop_and_clean). `fault`
        (`<hook>:<raise|kill>`) starts it with testing.faults' plugin registered."""
        log = open(self.workdir / "server.log", "ab")
        module = ["warden_framework.testing.faults", fault] if fault else ["warden_framework.server.main"]
        self.proc = subprocess.Popen(
            [self.python, "-m", *module, "--config", str(self.config_path)],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                # a server that accepts but never answers must not hang the test
                with Client(self.socket, timeout=5) as c:
                    c.ping()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"warden-server did not start: {self.log_tail()}")
                time.sleep(0.02)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: a crash. Containers and jobs stay; recovery must cope."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def drain(self, timeout: float = 60) -> int:
        """SIGUSR2: drain and exit 0; containers and jobs stay."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        return self.proc.wait(timeout)

    def stop_and_clean(self) -> None:
        """Destroy every container, stop the server, remove host-wide state (chains, groups).
        The host-wide state goes also when the server cannot be started again (a server that
        failed after setting up the host leaves it, and a start fails the same way): the
        failure is raised after."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            with Client(self.socket) as c:
                for handle in c.list().handles:
                    try:
                        c.destroy(handle=handle)
                    except Exception:
                        pass
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        finally:
            self.kill()
            subprocess.run([self.python, "-m", "warden_framework.server.main", "--config",
                            str(self.config_path), "--teardown-host"], check=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
