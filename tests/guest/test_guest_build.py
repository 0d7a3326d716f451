"""What the guest runner builds on the host, checked without booting: module load order from
modules.dep, an initramfs the cpio tool reads back, the job file's quoting through a real
shell, and the kernel image qemu is handed."""

from __future__ import annotations

import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from warden_framework.testing.guest import host, initramfs, kernel, runner


def _modules_dir(tmp_path: Path, dep: str, builtin: str = "") -> Path:
    (tmp_path / "modules.dep").write_text(dep)
    (tmp_path / "modules.builtin").write_text(builtin)
    return tmp_path


def test_modules_load_after_their_dependencies_once_each(tmp_path):
    modules = _modules_dir(tmp_path, "k/9p.ko: k/9pnet.ko k/netfs.ko\nk/9pnet.ko:\nk/netfs.ko:\n"
                                     "k/9pnet_virtio.ko: k/9pnet.ko k/virtio.ko\nk/virtio.ko:\n")
    order = [p.name for p in initramfs.module_paths(modules, ("9pnet_virtio", "9p"))]
    assert order == ["9pnet.ko", "virtio.ko", "9pnet_virtio.ko", "netfs.ko", "9p.ko"]


def test_built_in_modules_are_skipped_missing_and_compressed_ones_named(tmp_path):
    modules = _modules_dir(tmp_path, "k/overlay.ko:\nk/ext4.ko.xz:\n",
                           builtin="kernel/fs/9p/9p.ko\n")
    assert [p.name for p in initramfs.module_paths(modules, ("9p", "overlay"))] == ["overlay.ko"]
    with pytest.raises(initramfs.InitramfsError, match="module virtio_pci is neither"):
        initramfs.module_paths(modules, ("virtio_pci",))
    with pytest.raises(initramfs.InitramfsError, match="ext4.ko.xz is compressed"):
        initramfs.module_paths(modules, ("ext4",))


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs the cpio tool (apt-get install cpio)")
def test_initramfs_is_a_newc_archive_cpio_reads_back(tmp_path):
    reason = host.skip_reason()
    if reason:
        pytest.skip(reason)
    found = host.find_host()
    image = tmp_path / "initramfs.cpio"
    initramfs.build(image, found.busybox, found.modules)
    listing = subprocess.run(["cpio", "-itv"], input=image.read_bytes(), capture_output=True,
                             check=True).stdout.decode()
    names = {line.split()[-1] for line in listing.splitlines()}
    assert {"init", "bin/busybox", "dev/console", "lib/modules/9p.ko",
            "lib/modules/load.order"} <= names
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw") and "5,   1" in console


def test_job_file_hands_every_argument_to_the_shell_unchanged(tmp_path):
    args = ["-k", "a and not b", "it's", "$HOME", "--", "*"]
    job = runner._job_env(args, {"PY_COLORS": "0"}, None)
    script = job + 'printf "%s\\n" "$python" "$PY_COLORS" "$@"\n'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [sys.executable, "0", *args]


def test_kernel_image_is_the_unpacked_elf_vmlinux_when_the_kernel_has_pvh(tmp_path):
    reason = host.skip_reason()
    if reason:
        pytest.skip(reason)
    found = host.find_host()
    image = kernel.bootable_image(found.kernel, found.config, tmp_path / "vmlinux")
    if "CONFIG_PVH=y" not in found.config.read_text():
        assert image == found.kernel
    else:
        assert image == tmp_path / "vmlinux" and image.read_bytes()[:4] == b"\x7fELF"
