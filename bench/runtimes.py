"""The peers: runc and crun from Debian, driven through their command lines, each with a state
directory of its own; the OCI config they run; and the cgroup v1 hugetlb hierarchy that
crun 1.8 needs on this host (DESIGN.md: "cgroups in hybrid mode not supported")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

NAMES = ("runc", "crun")
APT_PACKAGES = ("runc", "crun")
HUGETLB = Path("/sys/fs/cgroup/hugetlb")
# The container's init: alive until the runtime's delete kills it.
INIT = ["sleep", "100000000"]


def ensure_installed() -> None:
    """apt-get install runc and crun unless both are on PATH."""
    if all(shutil.which(name) for name in NAMES):
        return
    print("bench: installing", " ".join(APT_PACKAGES), "from Debian", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", *APT_PACKAGES], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def version(name: str) -> str:
    out = subprocess.run([name, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


@contextmanager
def hugetlb_v1() -> Iterator[None]:
    """Mount a v1 hugetlb hierarchy for the block unless one is there; remove it after."""
    if os.path.ismount(HUGETLB):
        yield
        return
    made_dir = not HUGETLB.exists()
    HUGETLB.mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(HUGETLB)],
                       check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", str(HUGETLB)], check=True)
    finally:
        if made_dir:
            os.rmdir(HUGETLB)


def base_config() -> dict:
    """`runc spec` (the runtimes' standard config), not a terminal, a writable root, our init."""
    with tempfile.TemporaryDirectory(prefix="warden-bench-spec-") as tmp:
        subprocess.run(["runc", "spec", "--bundle", tmp], check=True)
        config = json.loads(Path(tmp, "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = INIT
    config["root"] = {"path": "rootfs", "readonly": False}
    return config


class Runtime:
    """One OCI runtime binary; containers live in `state_root`."""

    def __init__(self, name: str, state_root: Path) -> None:
        self.name = name
        self.state_root = state_root
        state_root.mkdir(parents=True, exist_ok=True)

    def _cli(self, *args: str,
             stdout: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
        # stderr goes to a file, not a pipe: after `run -d` the init holds it open for good.
        with tempfile.TemporaryFile() as err:
            result = subprocess.run([self.name, "--root", str(self.state_root), *args],
                                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=err,
                                    check=False)
            if result.returncode != 0:
                err.seek(0)
                result.stderr = err.read()
        return result

    def _ok(self, result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"{self.name} {what}: exit {result.returncode}: "
                               f"{result.stderr.decode(errors='replace').strip()}")

    def run_detached(self, container_id: str, bundle: Path) -> None:
        """Create and start the container; return once its init runs."""
        self._ok(self._cli("run", "-d", "--bundle", str(bundle), container_id), "run -d")

    def exec(self, container_id: str, argv: Sequence[str]) -> None:
        self._ok(self._cli("exec", container_id, *argv), f"exec {' '.join(argv)}")

    def exec_stream(self, container_id: str, argv: Sequence[str], chunk: int) -> int:
        """Run argv in the container and read its stdout to the end; the bytes read."""
        proc = subprocess.Popen([self.name, "--root", str(self.state_root), "exec",
                                 container_id, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        total = 0
        fd = proc.stdout.fileno()
        while data := os.read(fd, chunk):
            total += len(data)
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"{self.name} exec {' '.join(argv)}: exit {proc.returncode}")
        return total

    def delete(self, container_id: str) -> None:
        """Kill the container's processes and remove it (state, cgroups)."""
        self._ok(self._cli("delete", "-f", container_id), "delete -f")

    def state_dirs(self) -> int:
        """Containers whose state the runtime still keeps (live, or not yet deleted)."""
        return len(os.listdir(self.state_root)) if self.state_root.is_dir() else 0

    def leftovers(self) -> list[str]:
        """Containers still known to this runtime."""
        result = self._cli("list", "-q", stdout=subprocess.PIPE)
        return result.stdout.decode().split() if result.returncode == 0 else []

    def close(self) -> list[str]:
        """Delete whatever container is left; remove the state dir. Return what was left."""
        left = self.leftovers()
        for container_id in left:
            self._cli("delete", "-f", container_id)
        shutil.rmtree(self.state_root, ignore_errors=True)
        return left
