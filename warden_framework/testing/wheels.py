"""The project as a pip user gets it: wheels built from the checkout's distributions, a fresh
venv that installs them from a local wheelhouse only (`--no-index`), and that venv's
`warden-server` run on a config of the test's. Used by tests/integration/test_pip_install.py
and test_example_plugin.py.

pip builds a local project in place (its build/ and *.egg-info), so each project is copied
first; wshd_exec's setup.py finds native/wshd through $WARDEN_WSHD_SOURCE. Wheels are built
once per test process, in one builder venv, and shared by every test that asks for them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

from ..client import Client
from . import leaks
from .contract import mounts_under
from .process import START_TIMEOUT

WSHD_SOURCE_ENV = "WARDEN_WSHD_SOURCE"


def pip_env(**extra: str) -> dict[str, str]:
    """This environment without pip's own settings (PIP_*, config files): the wheelhouse on
    the command line is all pip sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def run(argv: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> str:
    """Run `argv`; its stdout, or an assertion naming the command with everything it said."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv[:4]}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def distribution_name(project: Path) -> str:
    with open(project / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["name"]


def snapshot(project: Path, into: Path) -> Path:
    """What a build of `project` reads (pyproject.toml, setup.py, its warden_* packages),
    copied to `into`/<project's directory name>."""
    dst = into / project.name
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py"):
        if (project / name).exists():
            shutil.copy2(project / name, dst)
    for package in project.glob("warden_*"):
        if package.is_dir() and not package.name.endswith(".egg-info"):
            shutil.copytree(package, dst / package.name,
                            ignore=shutil.ignore_patterns("__pycache__"))
    return dst


class WheelBuilder:
    """Builds each project's wheel once, with setuptools and wheel from `wheelhouse` in a
    builder venv of its own (no build isolation: nothing is fetched)."""

    def __init__(self, work: Path, wheelhouse: Path, wshd_source: Path) -> None:
        self.work = work
        self.wheelhouse = wheelhouse
        self.out = work / "wheels"
        self.env = pip_env(**{WSHD_SOURCE_ENV: str(wshd_source)})
        self.python = work / "builder" / "bin" / "python"
        self.built: dict[Path, Path] = {}
        run([sys.executable, "-m", "venv", work / "builder"], cwd=work)
        run([self.python, "-m", "pip", "install", "-q", "--upgrade", "--no-index",
             "--find-links", wheelhouse, "setuptools", "wheel"], cwd=work, env=self.env)

    def wheels(self, projects: list[Path]) -> list[Path]:
        missing = [p for p in projects if p not in self.built]
        if missing:
            sources = [snapshot(p, self.work / "src") for p in missing]
            run([self.python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "--no-index", "--wheel-dir", self.out, *sources], cwd=self.work, env=self.env)
            for project in missing:
                self.built[project] = self._wheel_of(project)
        return [self.built[p] for p in projects]

    def _wheel_of(self, project: Path) -> Path:
        stem = re.sub(r"[-_.]+", "_", distribution_name(project)).lower()
        found = list(self.out.glob(f"{stem}-*.whl"))
        assert len(found) == 1, f"wheels of {project} in {self.out}: {found}"
        return found[0]


_BUILDERS: dict[Path, WheelBuilder] = {}


def checkout_wheels(tmp_path_factory, top: Path, projects: list[Path]) -> list[Path]:
    """Wheels of `projects` (directories of the checkout at `top`), each built at most once
    per pytest session: a second test asking for one gets the first one's file."""
    key = tmp_path_factory.getbasetemp()
    if key not in _BUILDERS:
        _BUILDERS[key] = WheelBuilder(tmp_path_factory.mktemp("wheels"),
                                      top / "build" / "wheelhouse", top / "native" / "wshd")
    return _BUILDERS[key].wheels(projects)


def fresh_venv(path: Path, wheelhouse: Path, requirements: list) -> Path:
    """A new venv at `path` holding `requirements` (wheel files or names), their dependencies
    taken from `wheelhouse` alone."""
    run([sys.executable, "-m", "venv", path], cwd=path.parent)
    run([path / "bin" / "python", "-m", "pip", "install", "-q", "--no-index",
         "--find-links", wheelhouse, *requirements], cwd=path.parent, env=pip_env())
    return path


class VenvServer:
    """A venv's `warden-server` on `config` (written to workdir/warden.yml), as a subprocess
    logging to workdir/server.log. stop_and_clean() destroys every container, stops it and
    removes its host state with `--teardown-host`."""

    def __init__(self, venv: Path, config: dict, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.log = workdir / "server.log"
        path = workdir / "warden.yml"
        path.write_text(yaml.safe_dump(config))
        self.argv = [str(venv / "bin" / "warden-server"), "--config", str(path)]
        self.socket = config["server"]["unix_domain_path"]
        self.depot = Path(config["server"]["container_depot_path"])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT) -> VenvServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.socket) as c:
                    c.ping()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"warden-server did not start: {self.log_text()[-2000:]}")
                time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop_and_clean(self) -> None:
        proc = self.proc
        started = proc is not None and proc.poll() is None
        try:
            if started:
                with Client(self.socket) as c:
                    for handle in c.list().handles:
                        c.destroy(handle=handle)
                wait_for(lambda: not any(self.depot.iterdir()), "the depot to empty")
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
            done = subprocess.run([*self.argv, "--teardown-host"], cwd=self.workdir,
                                  capture_output=True, text=True, timeout=120, check=False)
            # A server that never started cannot tear down either; its start error is the one told.
            assert done.returncode == 0 or not started, f"--teardown-host: {done.stderr}"

    def leftovers(self) -> dict[str, set[str]]:
        """Kernel objects that name this server's prefix or its directory (the autouse leak
        checker sees the whole machine, other runs too), and mounts under its directory."""
        prefix = self.config["server"]["name_prefix"]
        left = {kind: {o for o in found if prefix in o or str(self.workdir) in o}
                for kind, found in leaks.inventory().items()}
        left["mounts under the workdir"] = set(mounts_under(self.workdir))
        return {kind: objects for kind, objects in left.items() if objects}


def wait_for(done, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
