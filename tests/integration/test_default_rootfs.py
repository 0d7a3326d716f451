"""The default rootfs builder, scripts/build-rootfs.sh: a working tree, rebuilt only on change."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="build-rootfs.sh and chroot need root"),
]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-rootfs.sh"
STAMP = ".warden-rootfs"


def build(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), str(dest)], capture_output=True, text=True, check=True)


def in_chroot(root: Path, *argv: str) -> str:
    done = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("rootfs") / "rootfs"
    build(dest)
    return dest


def test_bash_runs_under_chroot(rootfs: Path) -> None:
    assert in_chroot(rootfs, "/bin/bash", "-c", "echo ok $((6*7))") == "ok 42\n"


def test_sh_is_bash_so_stdin_scripts_read_their_own_lines(rootfs: Path) -> None:
    script = "read -r line\nsecond line\necho got:$line\n"
    done = subprocess.run(["chroot", str(rootfs), "/bin/sh"], input=script,
                          capture_output=True, text=True, check=True)
    assert done.stdout == "got:second line\n"


def test_busybox_applets_run_under_chroot(rootfs: Path) -> None:
    assert in_chroot(rootfs, "/bin/busybox", "echo", "hi") == "hi\n"
    assert in_chroot(rootfs, "/bin/bash", "-c", "ls -d /tmp && id -un && cat /etc/hostname") \
        == "/tmp\nroot\n"
    assert os.readlink(rootfs / "sbin" / "ifconfig") == "/bin/busybox"


def test_layout_and_accounts(rootfs: Path) -> None:
    for d in ("root", "home", "proc", "dev", "sys", "usr/bin", "sbin", "etc"):
        assert (rootfs / d).is_dir(), d
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "etc" / "hosts").read_text() == ""
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert "root:x:0:" in (rootfs / "etc" / "group").read_text()


def test_second_run_is_a_no_op(rootfs: Path) -> None:
    before = (rootfs.stat().st_ino, (rootfs / STAMP).stat().st_mtime_ns)
    done = build(rootfs)
    assert done.stdout == ""
    assert (rootfs.stat().st_ino, (rootfs / STAMP).stat().st_mtime_ns) == before


def test_stale_stamp_rebuilds_in_place(rootfs: Path) -> None:
    (rootfs / STAMP).write_text("stale\n")
    (rootfs / "leftover").write_text("x")
    done = build(rootfs)
    assert "built" in done.stdout
    assert not (rootfs / "leftover").exists()
    assert (rootfs / STAMP).read_text() != "stale\n"
    assert not rootfs.with_name("rootfs.tmp").exists()
    assert not rootfs.with_name("rootfs.old").exists()


@pytest.fixture
def overlay_on(rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """An overlay using the built rootfs as its lower layer, unmounted at teardown."""
    upper, work, target = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, target):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(target)],
                   check=True)
    yield target
    subprocess.run(["umount", "-l", str(target)], check=True)


def test_rebuild_refuses_a_rootfs_in_use_by_an_overlay(rootfs: Path, overlay_on: Path) -> None:
    (rootfs / STAMP).write_text("stale\n")
    done = subprocess.run([str(SCRIPT), str(rootfs)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "lower layer of mounted overlays" in done.stderr
    assert (overlay_on / "bin" / "bash").exists()
    assert (rootfs / STAMP).read_text() == "stale\n"
