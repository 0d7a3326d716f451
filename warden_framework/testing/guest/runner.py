"""Build, boot and collect one guest run: write the kernel image, the initramfs and an ext4
scratch disk holding the job, boot qemu, stream the job's output (ttyS1) and return pytest's
exit status. Every file it makes lives in one temporary directory that is removed, and qemu
is killed, however the run ends (qemu also dies with the runner: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import initramfs, kernel
from .host import Host, find_host

CHECKOUT = Path(__file__).resolve().parents[3]
GUEST_INIT = Path(__file__).with_name("init.sh")
DEFAULT_TIMEOUT = 900.0
DEFAULT_MEMORY_MB = 2560
DEFAULT_CPUS = 2
SCRATCH_DIR = Path("/var/tmp")  # the initramfs, vmlinux and disk image of a run, then nothing
DISK_BYTES = 8 << 30  # sparse: only what the guest writes takes host space
KERNEL_ARGS = (
    "console=ttyS0", "quiet",
    "panic=-1",  # a panic reboots, and -no-reboot turns that into qemu's exit
    "cgroup_no_v1=all",  # every controller on the v2 hierarchy, as on current distributions
    "mitigations=off",  # a throw-away guest; the speculation barriers cost a lot under TCG
    "tsc=reliable",  # else the kernel marks the emulated TSC unstable and every clock read exits
)
PR_SET_PDEATHSIG = 1
MARK_START, MARK_RC, MARK_ERROR = "WARDEN-GUEST-START", "WARDEN-GUEST-RC", "WARDEN-GUEST-ERROR"


class GuestError(Exception):
    """The guest did not report pytest's exit status: it failed to boot or set up, or hung."""

    def __init__(self, message: str, console: str = "") -> None:
        tail = "\n".join(console.splitlines()[-40:])
        super().__init__(f"{message}\n--- guest console (last lines) ---\n{tail}" if tail else message)
        self.console = console


class GuestTimeout(GuestError):
    """The run took longer than its timeout; qemu was killed."""


@dataclass(frozen=True)
class GuestRun:
    """What one guest run reported. `boot_seconds`: host wall time from starting qemu's
    build to pytest's start inside; `total_seconds`: until qemu exited."""

    rc: int
    output: str
    boot_seconds: float
    total_seconds: float
    console: str


def run_pytest(args: list[str], timeout: float = DEFAULT_TIMEOUT, *,
               memory_mb: int = DEFAULT_MEMORY_MB, cpus: int = DEFAULT_CPUS,
               env: dict[str, str] | None = None, stream: TextIO | None = None) -> GuestRun:
    """Run `python -m pytest *args` as root in the checkout inside a fresh guest.

    `env` is added to the job's environment; each output line is also written to `stream`.
    Raises GuestUnavailable when the host cannot boot a guest, GuestTimeout after `timeout`
    seconds, GuestError when the guest stops without reporting an exit status.
    """
    host = find_host()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="warden-guest-", dir=SCRATCH_DIR) as tmp:
        work = Path(tmp)
        image = kernel.bootable_image(host.kernel, host.config, work / "vmlinux")
        initramfs.build(work / "initramfs.cpio", host.busybox, host.modules)
        _make_disk(host, work, args, env or {})
        command = _qemu_command(host, image, work, memory_mb, cpus)
        return _boot(command, work, started, started + timeout, stream)


def _make_disk(host: Host, work: Path, args: list[str], env: dict[str, str]) -> None:
    """An ext4 image holding /tmp, /var/tmp, a copy of the default rootfs and job.env."""
    content = work / "disk"
    for name in ("tmp", "var-tmp"):
        (content / name).mkdir(parents=True)
        (content / name).chmod(0o1777)
    rootfs = CHECKOUT / "build" / "rootfs"
    if rootfs.is_dir():
        subprocess.run(["cp", "-a", str(rootfs), str(content / "rootfs")], check=True)
    (content / "job.env").write_text(_job_env(args, env, rootfs if rootfs.is_dir() else None))
    image = work / "disk.img"
    with open(image, "wb") as f:
        f.truncate(DISK_BYTES)
    # no journal: the disk lives for one boot and is never replayed
    made = subprocess.run([host.mkfs, "-q", "-F", "-O", "^has_journal", "-d", str(content),
                           str(image)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise GuestError(f"{host.mkfs} could not make {image}: {made.stderr.strip()}")
    shutil.rmtree(content)


def _job_env(args: list[str], env: dict[str, str], rootfs: Path | None) -> str:
    """Shell text init.sh sources: where to run what, and pytest's arguments as "$@"."""
    lines = [f"workdir={shlex.quote(str(CHECKOUT))}", f"python={shlex.quote(sys.executable)}",
             f"rootfs={shlex.quote(str(rootfs or ''))}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append("set -- " + " ".join(shlex.quote(arg) for arg in args))
    return "\n".join(lines) + "\n"


def _qemu_command(host: Host, image: Path, work: Path, memory_mb: int, cpus: int) -> list[str]:
    cmdline = " ".join((*KERNEL_ARGS, f"warden_guest.init={GUEST_INIT}"))
    return [
        host.qemu, "-nodefaults", "-no-reboot", "-display", "none",
        "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mb),
        *(["-bios", str(host.bios)] if host.bios else []),
        "-kernel", str(image), "-initrd", str(work / "initramfs.cpio"), "-append", cmdline,
        "-nic", "none",
        "-fsdev", "local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-drive", f"file={work / 'disk.img'},format=raw,if=virtio,cache=unsafe",
        "-serial", f"file:{work / 'console.log'}", "-serial", "stdio",
    ]


def _boot(command: list[str], work: Path, started: float, deadline: float,
          stream: TextIO | None) -> GuestRun:
    """Run qemu, collect ttyS1 line by line until the exit-status marker, kill it on the way out."""
    output: list[str] = []
    boot_seconds = rc = error = None
    with open(work / "qemu.log", "wb") as qemu_log:
        qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=qemu_log, preexec_fn=_die_with_parent)
    try:
        for line in _lines(qemu, deadline):
            if line.startswith(MARK_START):
                boot_seconds = time.monotonic() - started
            elif line.startswith(MARK_RC):
                rc = int(line.split()[1])
            elif line.startswith(MARK_ERROR):
                error = line.removeprefix(MARK_ERROR).strip()
            else:
                output.append(line)
                if stream is not None:
                    stream.write(line)
                    stream.flush()
        timed_out = time.monotonic() >= deadline
        _stop(qemu, grace=0 if timed_out else 30)
    finally:
        _stop(qemu, grace=0)
        qemu.stdout.close()
    console = _read_text(work / "console.log") + _read_text(work / "qemu.log")
    # the initramfs has only the console to say why it gave up
    error = error or next((line.split(MARK_ERROR, 1)[1].strip()
                           for line in console.splitlines() if MARK_ERROR in line), None)
    total = time.monotonic() - started
    if rc is None and timed_out:
        raise GuestTimeout(f"guest still running after {total:.0f} s; killed", console)
    if rc is None:
        raise GuestError(f"guest stopped without an exit status"
                         f"{': ' + error if error else ''} (qemu exit {qemu.returncode})", console)
    return GuestRun(rc, "".join(output), boot_seconds or total, total, console)


def _lines(qemu: subprocess.Popen, deadline: float):
    """qemu's stdout as text lines until it closes or `deadline` passes."""
    fd = qemu.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pending = b""
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield _overwritten(raw) + "\n"
    if pending:
        yield _overwritten(pending)


def _overwritten(raw: bytes) -> str:
    """What a terminal shows of `raw`: a CR (pytest's "collecting ..." counter) starts over."""
    return raw.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace")


def _stop(qemu: subprocess.Popen, grace: float) -> None:
    """Wait up to `grace` seconds for qemu to exit by itself, then kill it."""
    try:
        qemu.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        qemu.kill()
        qemu.wait()


def _die_with_parent() -> None:
    """In qemu's child before exec: SIGKILL it if the runner dies, even by SIGKILL."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) for qemu")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


