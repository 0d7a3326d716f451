"""Issue 17: the Debian packages. debian/ is built by dpkg-buildpackage from an export of the
working tree (about 11 s here, so once per test session, into the session's tmp dir), and the
server with only the plugins one container needs (rootfs-common, overlayfs, wshd-exec and the
cgroup plugin `limits: auto` picks here) is installed with dpkg into a throw-away root: a
private mount namespace whose root (pivot_root, not chroot: the kernel refuses user
namespaces to a chrooted process) is an overlay of this host's / over a tmpfs. So Debian's
python3-* packages installed on the host satisfy the dependencies, what dpkg writes lands in
the tmpfs, and the host's dpkg database never sees the packages.

There, `warden-rootfs` builds the rootfs from the checkout's .deb cache with no network, the
server starts from the installed unit's ExecStart on the installed /etc/warden/warden.yml
(only this run's name prefix and id ranges changed, the network driver off), and the
checkout's client drives one container through create, run, the unit's reload (a drain, then
the fresh server that Restart=always starts recovers it) and destroy. This host has no
systemd as PID 1, so the unit's command lines and policy are run and checked, not systemd.
"""

from __future__ import annotations

import configparser
import ctypes
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from warden_framework.client import Client
from warden_framework.drivers.auto import mount_type
from warden_framework.testing.process import START_TIMEOUT

from .conftest import server_config

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]
DEBS_CACHE = TOP / "build" / "debs"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's python3, not a venv's or pyenv's
LIMITS_PLUGIN = "cgroup-v2" if mount_type("/sys/fs/cgroup") == "cgroup2" else "cgroup-v1"
INSTALLED = ["python3-warden-framework", "warden-server", "python3-warden-rootfs-common",
             "warden-plugin-overlayfs", "warden-plugin-wshd-exec", f"warden-plugin-{LIMITS_PLUGIN}"]
# What the installed packages depend on, from Debian: on the host, so the root has them too.
RUNTIME_DEPENDENCIES = ["python3-yaml", "python3-pluggy", "python3-stevedore", "python3-protobuf"]
UNIT = "/lib/systemd/system/warden-server.service"
CONFIG = "/etc/warden/warden.yml"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: dpkg, mount namespaces and containers"
    tools = ["dpkg-buildpackage", "dpkg-checkbuilddeps", "dh", "pybuild", "protoc", "unshare",
             "nsenter"]
    absent = [t for t in tools if shutil.which(t, path=SYSTEM_PATH) is None]
    if absent:
        return f"missing {', '.join(absent)} (scripts/bootstrap.sh installs the build tools)"
    absent = [p for p in RUNTIME_DEPENDENCIES if not _host_has(p)]
    if absent:
        return f"Debian packages {', '.join(absent)} not installed (scripts/bootstrap.sh)"
    if not list(DEBS_CACHE.glob("busybox-static_*.deb")):
        return f"no .deb cache in {DEBS_CACHE} (scripts/bootstrap.sh fills it)"
    return None


def _host_has(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package],
                          capture_output=True, text=True, check=False)
    return done.stdout == "installed"


def _run(argv: list, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
         check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, (f"{shlex.join(map(str, argv))}: exit {done.returncode}\n"
                                      f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def _sources() -> list[Path]:
    """What the packages are built from: every project's pyproject and packages, wshd's
    sources, debian/. Not tests, not build products (an export, as debian/README.source says)."""
    def tree(base: Path) -> list[Path]:
        return [p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    found = [TOP / "pyproject.toml", TOP / "README.md", *tree(TOP / "warden_framework"),
             *tree(TOP / "debian")]
    for project in sorted((TOP / "plugins").glob("*/pyproject.toml")):
        found += [p for p in (project, project.with_name("README.md")) if p.exists()]
        for package in sorted(project.parent.glob("warden_*")):
            if package.is_dir() and not package.name.endswith(".egg-info"):
                found += tree(package)
    wshd = TOP / "native" / "wshd"
    return found + sorted([*wshd.glob("*.c"), *wshd.glob("*.h"), wshd / "Makefile"])


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, Path]:
    """Binary package name -> .deb, built from an export of the working tree."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("debian-build")
    export = work / "warden"
    for source in _sources():
        target = export / source.relative_to(TOP)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    env = {"PATH": SYSTEM_PATH, "HOME": str(work), "LC_ALL": "C.UTF-8",
           "DEB_BUILD_OPTIONS": "nocheck"}
    unmet = _run(["dpkg-checkbuilddeps"], cwd=export, env=env, check=False)
    if unmet.returncode != 0:
        pytest.skip(f"{unmet.stderr.strip()} (scripts/bootstrap.sh installs them)")
    started = time.monotonic()
    built = _run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=export, env=env)
    (work / "build.log").write_text(built.stdout + built.stderr)
    print(f"dpkg-buildpackage: {time.monotonic() - started:.1f} s")
    return {deb.name.split("_")[0]: deb for deb in work.glob("*.deb")}


def _dist_infos(deb: Path) -> set[str]:
    listing = _run(["dpkg-deb", "-c", deb]).stdout
    return {Path(line.split()[-1]).name.split("-")[0] for line in listing.splitlines()
            if line.split()[-1].endswith(".dist-info/")}


def _project_name(pyproject: Path) -> str:
    name = tomllib.loads(pyproject.read_text())["project"]["name"]
    return name.replace("-", "_")


def test_each_distribution_has_its_own_package_with_its_dist_info(debs):
    """Every pyproject.toml of the tree (core and plugins/*) is one binary package holding
    that distribution's .dist-info (entry points included), and no other's."""
    owners: dict[str, str] = {}
    for package, deb in debs.items():
        for dist in _dist_infos(deb):
            assert dist not in owners, f"{dist} is in {owners.get(dist)} and {package}"
            owners[dist] = package
    expected = {_project_name(p) for p in [TOP / "pyproject.toml",
                                           *(TOP / "plugins").glob("*/pyproject.toml")]}
    assert set(owners) == expected
    for dist, package in owners.items():
        listing = _run(["dpkg-deb", "-c", debs[package]]).stdout
        if dist != "warden_rootfs_common":  # a library: no driver of its own
            assert re.search(rf"/{dist}-[^/]+\.dist-info/entry_points\.txt$", listing,
                             re.MULTILINE), package
    arch = {p: _run(["dpkg-deb", "-f", deb, "Architecture"]).stdout.strip()
            for p, deb in debs.items() if not p.endswith("-dbgsym")}
    host_arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    assert arch.pop("warden-plugin-wshd-exec") == host_arch
    assert set(arch.values()) == {"all"}
    server = _run(["dpkg-deb", "-c", debs["warden-server"]]).stdout
    for path in (f".{UNIT}", f".{CONFIG}", "./usr/bin/warden-server", "./usr/bin/warden-rootfs"):
        assert path in server


class ThrowawayRoot:
    """A process in a private mount namespace whose root is an overlay of the host's / over
    a tmpfs (with proc, sys, dev, a tmpfs /run, and /var/lib/warden bound to `state` on this
    host's disk: the container layers need a filesystem that allows idmapped mounts and an
    overlay upper layer). Killing the holder ends the namespace and every mount in it."""

    SETUP = r"""
set -e
work=$1; root=$work/root; layers=$work/layers
mkdir -p "$root" "$layers"
mount -t tmpfs -o size=512m,mode=0755 layers "$layers"
mkdir "$layers/upper" "$layers/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$layers/upper,workdir=$layers/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 run "$root/run"
mkdir -p "$root/var/lib/warden" "$root/.old-root"
mount --bind "$work/state" "$root/var/lib/warden"
cd "$root"
pivot_root . .old-root
umount -l /.old-root
rmdir /.old-root
echo ready
exec sleep infinity
"""

    def __init__(self, work: Path) -> None:
        (work / "state").mkdir(mode=0o755)
        self.work = work
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", self.SETUP, "sh", str(work)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_die_with_parent)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            self.holder.wait(10)
            raise RuntimeError(f"throw-away root: {line}{self.holder.stdout.read()}")

    def path(self, inside: str) -> Path:
        """The host's way to a path of the root (through the holder's /proc entry)."""
        return Path(f"/proc/{self.holder.pid}/root") / inside.lstrip("/")

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run in the root, with the clean environment of a service."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--",
                "env", "-i", f"PATH={SYSTEM_PATH}", "LANG=C.UTF-8", *argv]

    def run(self, argv: list[str], check: bool = True, timeout: float = 300):
        return _run(self.argv(argv), check=check, timeout=timeout)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(30)
        self.holder.stdout.close()
        shutil.rmtree(self.work / "state")


def _die_with_parent() -> None:
    """SIGKILL when pytest dies, so a killed run leaves no namespace (and mounts) behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _root_group(root: ThrowawayRoot, name: str) -> int | None:
    for line in root.path("/etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    return None


@pytest.fixture(scope="module")
def root(debs, tmp_path_factory):
    """The throw-away root with INSTALLED installed by dpkg and the rootfs built."""
    root = ThrowawayRoot(tmp_path_factory.mktemp("debian-root"))
    try:
        # The host made group warden for the checkout's server; the package must make its own.
        if _root_group(root, "warden") is not None:
            root.run(["groupdel", "warden"])
        incoming = root.path("/tmp/debs")
        incoming.mkdir()
        for package in INSTALLED:
            shutil.copy2(debs[package], incoming)
        root.run(["sh", "-c", "dpkg -i /tmp/debs/*.deb"])
        cache = root.path("/var/cache/warden/debs")
        cache.mkdir(parents=True)
        for deb in DEBS_CACHE.glob("*.deb"):
            shutil.copy2(deb, cache)
        # No network in its own namespace: the rootfs comes from the cache (the default one).
        root.run(["unshare", "--net", "warden-rootfs"])
        yield root
    finally:
        root.close()


def _status(root: ThrowawayRoot, package: str) -> str:
    return root.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], check=False).stdout


def test_dpkg_installs_the_server_and_three_plugins_into_the_root_only(root, debs):
    for package in INSTALLED:
        assert _status(root, package) == "installed", package
        assert not _host_has(package), f"{package} reached the host's dpkg database"
    for package in set(debs) - set(INSTALLED):
        assert _status(root, package) != "installed", package
    # The postinst made the group; /etc/warden/warden.yml is a conffile; the unit is enabled.
    assert _root_group(root, "warden") is not None
    conffiles = root.run(["dpkg-query", "-W", "-f=${Conffiles}", "warden-server"]).stdout
    assert f" {CONFIG} " in conffiles
    assert root.path("/etc/systemd/system/multi-user.target.wants/warden-server.service").is_symlink()
    # Each driver's entry point (what stevedore reads) comes from its installed .dist-info.
    found = root.run(["python3", "-c", (
        "import importlib.metadata as m\n"
        "for g in ('rootfs', 'exec', 'limits', 'network'):\n"
        "    print(g, sorted(e.name for e in m.entry_points(group='warden.drivers.' + g)))\n"
        "from warden_wshd_exec.binary import default_binary\n"
        "print(default_binary())")]).stdout.splitlines()
    limits = LIMITS_PLUGIN.replace("-", "_")
    assert found[:4] == ["rootfs ['overlayfs']", "exec ['wshd']", f"limits ['{limits}']",
                         "network []"]
    wshd = found[4]
    assert wshd == "/usr/lib/python3/dist-packages/warden_wshd_exec/bin/wshd"
    assert os.access(root.path(wshd), os.X_OK) and root.path(wshd).read_bytes()[:4] == b"\x7fELF"
    printed = yaml.safe_load(root.run(["warden-server", "--print-config", "--config", CONFIG]).stdout)
    assert printed["server"]["unix_domain_group"] == "warden"
    assert printed["server"]["unix_domain_permissions"] == 0o660
    assert (root.path("/var/lib/warden/rootfs/bin/bash")).exists()


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    return unit


class UnitServer:
    """warden-server run as the installed unit says: ExecStart in the root with a service's
    environment and LimitNOFILE, RuntimeDirectory and StateDirectory made first."""

    def __init__(self, root: ThrowawayRoot, workdir: Path) -> None:
        self.root = root
        self.unit = _unit()
        self.unit.read_string(root.path(UNIT).read_text())
        self.service = self.unit["Service"]
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.served = False  # answered a ping once
        self.config = yaml.safe_load(root.path(CONFIG).read_text())
        self.socket = root.path(self.config["server"]["unix_domain_path"])
        self.depot = root.path(self.config["server"]["container_depot_path"])

    def start(self) -> None:
        for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
            self.root.path(f"{base}/{self.service[key]}").mkdir(mode=0o755, exist_ok=True)
        # systemd sets LimitNOFILE as PID 1 may; a process without CAP_SYS_RESOURCE (a test
        # here) cannot raise its hard limit, so the server gets what this one has at most.
        nofile = min(int(self.service["LimitNOFILE"]), resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.root.argv(shlex.split(self.service["ExecStart"])), stdout=log, stderr=log,
                start_new_session=True,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with Client(self.socket) as c:
                    c.ping()
                self.served = True
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"warden-server did not start: {self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def reload(self) -> int:
        """ExecReload with $MAINPID; returns the server's exit status."""
        command = self.service["ExecReload"].replace("$MAINPID", str(self.proc.pid))
        self.root.run(shlex.split(command))
        status = self.proc.wait(60)
        self._stopped()
        return status

    def _stopped(self) -> None:
        """What systemd does once the main process is gone, for a restart too unless
        RuntimeDirectoryPreserve= says otherwise: remove the RuntimeDirectory."""
        if self.service.get("RuntimeDirectoryPreserve", "no") == "no":
            shutil.rmtree(self.root.path(f"/run/{self.service['RuntimeDirectory']}"))

    def restarts_after(self, status: int) -> bool:
        """Whether systemd would start the service again after the main process exits with
        `status` without being asked to stop (Restart=, RestartPreventExitStatus=)."""
        prevented = self.service.get("RestartPreventExitStatus", "").split()
        restart = self.service.get("Restart", "no")
        if str(status) in prevented:
            return False
        return restart == "always" or (restart == "on-failure" and status != 0)

    def stop(self) -> None:
        """`systemctl stop` with KillMode=process: SIGTERM to the main process only."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
            self._stopped()

    def stop_and_clean(self) -> None:
        """Destroy every container, stop, remove the host-wide state (--teardown-host)."""
        if not self.served:
            self.stop()
            return  # it made nothing; its start error is the one told
        try:
            if self.proc.poll() is not None:
                self.start()
            with Client(self.socket) as c:
                for handle in c.list().handles:
                    c.destroy(handle=handle)
            _wait(lambda: not any(self.depot.iterdir()), "the depot to empty")
        finally:
            self.stop()
            self.root.run([*shlex.split(self.service["ExecStart"]), "--teardown-host"])


def _wait(done, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def unit_server(root, tmp_path):
    """The installed config with only this run's own name prefix and id ranges (the leak
    checker knows the `wt` prefix), no network driver and no health port; the socket, pidfile,
    depot and rootfs stay the packaged paths (inside the root)."""
    own = server_config(tmp_path)
    config = yaml.safe_load(root.path(CONFIG).read_text())
    config["server"].update(name_prefix=own["server"]["name_prefix"], container_grace_time=None)
    config["user"].update(own["user"])
    config["drivers"]["network"] = None
    config["health_check_server"]["port"] = None
    root.path(CONFIG).write_text(yaml.safe_dump(config))
    server = UnitServer(root, tmp_path)
    try:
        yield server
    finally:
        server.stop_and_clean()


def test_the_unit_runs_a_container_through_create_run_reload_destroy(unit_server):
    srv = unit_server
    service = srv.service
    assert service["Type"] == "simple" and service["KillMode"] == "process"
    assert service["Delegate"] == "yes"
    # The unit's directories are the ones the packaged config uses.
    assert srv.config["server"]["unix_domain_path"].startswith(f"/run/{service['RuntimeDirectory']}/")
    assert srv.config["server"]["pidfile"].startswith(f"/run/{service['RuntimeDirectory']}/")
    assert srv.config["server"]["container_depot_path"].startswith(f"/var/lib/{service['StateDirectory']}/")

    srv.start()
    socket = srv.socket.stat()
    assert (socket.st_mode & 0o777, socket.st_gid) == (0o660, _root_group(srv.root, "warden"))
    pidfile = srv.root.path(srv.config["server"]["pidfile"])
    assert int(pidfile.read_text()) == srv.proc.pid  # $MAINPID is the server itself
    with Client(srv.socket) as c:
        handle = c.create().handle
        answer = c.run(handle=handle, script=b"echo hi")
        assert (answer.exit_status, answer.stdout, answer.stderr) == (0, b"hi\n", b"")
        job = c.spawn(handle=handle, script=b"sleep 1; echo after the reload").job_id

    # Reload: the server drains and exits 0; the unit's policy starts a fresh one.
    assert srv.reload() == 0
    assert srv.restarts_after(0) and not srv.restarts_after(2)
    assert not pidfile.exists()  # the drained server let go of it
    srv.start()
    assert "recovered 1 containers" in srv.log.read_text()
    with Client(srv.socket) as c:
        assert list(c.list().handles) == [handle]
        linked = c.link(handle=handle, job_id=job)
        assert (linked.exit_status, linked.stdout) == (0, b"after the reload\n")
        assert c.run(handle=handle, script=b"echo again").stdout == b"again\n"
        c.destroy(handle=handle)
        assert not c.list().handles
    _wait(lambda: not any(srv.depot.iterdir()), "the depot to empty")
