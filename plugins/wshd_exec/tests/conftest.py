"""Fixtures for the wshd tests: the built binary, a busybox root (optionally with a static
syscall probe), and containers that are always killed (and checked gone) after the test,
whatever the test did: raw wshd ones (`containers`) and, for the driver's tests, the
framework's containers on a copy of the default rootfs with one driver per module
(`new_container`, `driver`)."""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from warden_wshd_exec.driver import WshdDriver
from warden_wshd_exec.wshd_client import (
    ExitInfo,
    WshdConnection,
    WshdLaunch,
    kill_wshd,
    make_mount_seed,
    start_wshd,
)

from warden_framework.config import Settings, settings_from_dict
from warden_framework.container import ID_ALPHABET, ID_LENGTH
from warden_framework.container import Container as WardenContainer

WSHD_DIR = Path(__file__).resolve().parents[3] / "native" / "wshd"
PROBE_SOURCE = Path(__file__).resolve().parent / "probe" / "syscall_probe.c"
BUSYBOX = Path("/bin/busybox")
ROOTFS = Path(__file__).resolve().parents[3] / "build" / "rootfs"
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, arg: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl {option}")


class Subreaper:
    """Makes this process adopt the container inits whose launcher exits, so that kill_wshd
    reaps them and no wshd zombie waits on some other reaper after a test."""

    def __enter__(self) -> Subreaper:
        self._was = ctypes.c_int(0)
        _prctl(PR_GET_CHILD_SUBREAPER, ctypes.pointer(self._was))
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _prctl(PR_SET_CHILD_SUBREAPER, self._was.value)


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains marker (zombies have none)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def wshd_binary() -> Path:
    if os.geteuid() != 0:
        pytest.skip("wshd needs root: it clones namespaces and mounts")
    subprocess.run(["make", "-s", "-C", str(WSHD_DIR), "wshd"], check=True)
    return WSHD_DIR / "wshd"


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template root: a static busybox and a symlink per applet."""
    if not BUSYBOX.exists():
        pytest.skip("no /bin/busybox (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("busybox-root")
    root.chmod(0o755)  # mktemp makes it 0700: / must be searchable by any job uid
    (root / "bin").mkdir()
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox":
            (root / "bin" / name).symlink_to("busybox")
    return root


@pytest.fixture(scope="session")
def probe_root(busybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root plus /bin/syscall_probe (tests/probe/syscall_probe.c, linked static)."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler for the syscall probe (apt-get install gcc libc6-dev)")
    root = tmp_path_factory.mktemp("probe-root")
    root.chmod(0o755)
    shutil.copytree(busybox_root, root, symlinks=True, dirs_exist_ok=True)
    subprocess.run(["cc", "-static", "-O2", "-o", str(root / "bin" / "syscall_probe"),
                    str(PROBE_SOURCE)], check=True)
    return root


@dataclass
class JobFiles:
    """Where a job's stdout, stderr and status went (files the test reads afterwards)."""

    out: Path
    err: Path
    status: Path


@dataclass
class JobResult:
    info: ExitInfo
    stdout: str
    stderr: str
    status: str


@dataclass
class Container:
    """A released wshd on its own copy of the busybox root."""

    pid: int
    run_dir: Path
    root_dir: Path
    work_dir: Path
    hostname: str
    _jobs: int = field(default=0)

    def connect(self) -> WshdConnection:
        return WshdConnection(self.run_dir)

    def spawn(
        self,
        conn: WshdConnection,
        argv: Sequence[str],
        *,
        stdin_fd: int | None = None,
        uid: int = 0,
        gid: int = 0,
        cwd: str = "/",
        env: dict[str, str] | None = None,
        rlimits: dict[int, tuple[int, int]] | None = None,
        output_limit: int | None = None,
    ) -> tuple[int, JobFiles]:
        """Spawn argv without waiting; stdin from stdin_fd or /dev/null, output to new files
        (copied by wshd under output_limit if given)."""
        self._jobs += 1
        base = self.work_dir / f"job{self._jobs}"
        files = JobFiles(*(base.with_suffix(ext) for ext in (".out", ".err", ".st")))
        env = {"PATH": "/bin"} if env is None else env
        with open(os.devnull, "rb") as null, open(files.out, "wb") as out, open(
            files.err, "wb"
        ) as err, open(files.status, "wb") as status:
            pid = conn.spawn(
                argv, env, cwd, uid, gid, rlimits or {},
                null.fileno() if stdin_fd is None else stdin_fd,
                out.fileno(), err.fileno(), status.fileno(), output_limit=output_limit,
            )
        return pid, files

    def run(self, argv: Sequence[str], **options: object) -> JobResult:
        """Spawn argv (options as for spawn), wait for its EXIT, return what it left."""
        with self.connect() as conn:
            pid, files = self.spawn(conn, argv, **options)  # type: ignore[arg-type]
            info = conn.wait_exit(timeout=10)
        assert info.pid == pid
        return JobResult(
            info, files.out.read_text(), files.err.read_text(), files.status.read_text()
        )


class Containers:
    """Starts containers for one test and, at teardown, kills them and checks nothing is left."""

    def __init__(self, binary: Path, template: Path, seeded: bool = True) -> None:
        self.binary = binary
        self.template = template
        self.work = Path(tempfile.mkdtemp(prefix=f"wshd-{os.getpid()}-"))
        self.pids: list[int] = []
        self.launches: list[WshdLaunch] = []
        self._count = 0
        # As the driver does: roots are built in a mount seed (None: in a copy of ours).
        self.seed = make_mount_seed(binary, self.work) if seeded else None

    def new_dirs(self) -> tuple[Path, Path, Path]:
        self._count += 1
        base = self.work / f"c{self._count}"
        run_dir, work_dir = base / "run", base / "work"
        run_dir.mkdir(parents=True)
        work_dir.mkdir()
        shutil.copytree(self.template, base / "root", symlinks=True)
        return run_dir, base / "root", work_dir

    def launch(
        self,
        binds: Sequence[tuple[str, str, bool]] = (),
        hostname: str = "box",
        id_map: tuple[int, int] | None = None,
        prepare: Callable[[Path], None] | None = None,
    ) -> tuple[WshdLaunch, Path, Path, Path]:
        """Start wshd up to its barrier; prepare(root) may first change the root's copy."""
        run_dir, root_dir, work_dir = self.new_dirs()
        if prepare is not None:
            prepare(root_dir)
        launch = start_wshd(self.binary, run_dir, root_dir, hostname, list(binds), id_map=id_map,
                            mount_seed=self.seed)
        self.launches.append(launch)
        self.pids.append(launch.pid)
        return launch, run_dir, root_dir, work_dir

    def start(
        self,
        binds: Sequence[tuple[str, str, bool]] = (),
        hostname: str = "box",
        id_map: tuple[int, int] | None = None,
        prepare: Callable[[Path], None] | None = None,
    ) -> Container:
        launch, run_dir, root_dir, work_dir = self.launch(binds, hostname, id_map, prepare)
        launch.release()
        return Container(launch.pid, run_dir, root_dir, work_dir, hostname)

    def teardown(self) -> None:
        try:
            for launch in self.launches:
                launch.abort()
            for pid in self.pids:
                kill_wshd(pid)
            assert processes_mentioning(str(self.work)) == [], "a wshd process survived"
            mounts = Path("/proc/mounts").read_text()
            assert str(self.work) not in mounts, "a mount of the test leaked to the host"
        finally:
            if self.seed is not None:
                os.close(self.seed)
            shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def containers(wshd_binary: Path, busybox_root: Path) -> Iterator[Containers]:
    with Subreaper():
        made = Containers(wshd_binary, busybox_root)
        try:
            yield made
        finally:
            made.teardown()


@pytest.fixture
def probed_containers(wshd_binary: Path, probe_root: Path) -> Iterator[Containers]:
    """As `containers`, on the root that also holds /bin/syscall_probe."""
    with Subreaper():
        made = Containers(wshd_binary, probe_root)
        try:
            yield made
        finally:
            made.teardown()


@pytest.fixture
def container(containers: Containers) -> Container:
    return containers.start()


# ------------------------------------------- the driver's containers (warden_framework's)

@pytest.fixture(scope="module")
def rootfs() -> Path:
    if not (ROOTFS / "bin" / "bash").exists():
        pytest.skip(f"no default rootfs with bash at {ROOTFS} (scripts/bootstrap.sh builds it)")
    return ROOTFS


@pytest.fixture(scope="module")
def settings(wshd_binary: Path) -> Settings:
    return settings_from_dict({"server": {"wshd_path": str(wshd_binary)}})


@pytest.fixture(scope="module")
def driver(settings: Settings) -> WshdDriver:
    """One driver for the module, as one server: its reaper thread serves every test."""
    return WshdDriver(settings)


@pytest.fixture
def new_container(driver, settings, rootfs,
                  tmp_path) -> Iterator[Callable[..., WardenContainer]]:
    """Factory of containers before setup_init: a copy of the rootfs with the user's home,
    as setup_fs hands it over. After the test every init is killed through the driver's
    teardown_init and no process of the container may remain."""
    made: list[WardenContainer] = []

    def make(binds: list[dict] | None = None) -> WardenContainer:
        cid = "".join(random.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        path = tmp_path / cid
        path.mkdir()
        box = WardenContainer(id=cid, handle=f"h-{cid}", path=path, uid=random.randrange(10000, 60000),
                        binds=binds or [])
        shutil.copytree(rootfs, box.rootfs_dir, symlinks=True)
        home = box.rootfs_dir / "home" / "vcap"
        home.mkdir()
        os.chown(home, box.uid, box.uid)
        box.jobs_dir.mkdir()
        made.append(box)
        return box

    yield make
    errors, left = [], []
    for box in made:
        try:
            driver.teardown_init(container=box, record=box.records.get("exec"))
        except Exception as exc:  # reported below, once every container is gone
            errors.append(exc)
        survivors = processes_mentioning(str(box.path))
        left += survivors
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert (errors, left) == ([], []), "teardown_init failed or left processes behind"
