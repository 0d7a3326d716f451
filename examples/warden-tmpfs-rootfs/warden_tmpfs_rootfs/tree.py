"""Copies into and out of a container's tmpfs root: the base rootfs at setup, its ids shifted
into the container's range, and copy_in / copy_out with `rsync -r -p --links` semantics
(a trailing `/` on the source copies the directory's contents).

A container path is resolved once, with openat2 RESOLVE_IN_ROOT (kernel.open_in_root), to a
directory fd; below it every step is a name relative to a directory fd, opened O_NOFOLLOW, on
both sides. So a symlink the container planted can only lead back into its own tree, and a
tree it changes during a copy cannot redirect the copy to the host. Regular files, directories
and symlinks are copied; fifos, sockets and devices are skipped (as rsync without -D does);
hard links become separate files.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from warden_framework.idmap import IdMap

from . import kernel
from .etc import HOME  # rsync's remote side starts in vcap's home: relative paths are in it

_NOFOLLOW_DIR = kernel.O_DIR | os.O_NOFOLLOW


class CopyError(Exception):
    """A copy that failed; the text names the path and the reason."""


@dataclass(frozen=True)
class _Policy:
    """Who owns what the receiving end makes, which mode bits survive, and as whom it writes
    (copy_in writes with vcap's file system ids, so the kernel refuses what vcap may not do)."""

    owner: Callable[[os.stat_result], tuple[int, int]]
    mode_mask: int
    writer: tuple[int, int] | None = None

    def writing(self) -> AbstractContextManager[None]:
        return kernel.fs_ids(*self.writer) if self.writer else nullcontext()


@dataclass(frozen=True)
class _Side:
    """Where the top-level paths of one end are resolved: the host (root_fd None) or a root."""

    root_fd: int | None

    def open_dir(self, path: str) -> int:
        if self.root_fd is None:
            return os.open(path, kernel.O_DIR)
        return kernel.open_in_root(self.root_fd, path)


def copy_base(lower: Path, root: Path, id_map: IdMap | None) -> None:
    """Copy the whole `lower` rootfs into the (empty, mounted) `root`, each entry owned by the
    host ids `id_map` gives its owner; ids outside the container's range are refused."""
    def shifted(st: os.stat_result) -> tuple[int, int]:
        if id_map is None:
            return st.st_uid, st.st_gid
        return id_map.to_host(st.st_uid), id_map.to_host(st.st_gid)

    policy = _Policy(owner=shifted, mode_mask=0o7777)
    with _opened(os.open(lower, kernel.O_DIR)) as src, _opened(os.open(root, kernel.O_DIR)) as dst:
        _copy_children(src, str(lower), dst, policy)


def copy_in(root: Path, src_path: str, dst_path: str, vcap: tuple[int, int]) -> None:
    """Copy host `src_path` to container `dst_path` as vcap (host ids `vcap`), which owns
    what is made; set-uid and set-gid bits are dropped. The source is read as root."""
    policy = _Policy(owner=lambda st: vcap, mode_mask=0o1777, writer=vcap)
    with _opened(os.open(root, kernel.O_DIR)) as root_fd:
        _transfer(_Side(None), src_path, _Side(root_fd), _in_home(dst_path), policy)


def copy_out(root: Path, src_path: str, dst_path: str, owner: tuple[int, int]) -> None:
    """Copy container `src_path` to host `dst_path`, what is made owned by `owner`."""
    policy = _Policy(owner=lambda st: owner, mode_mask=0o1777)
    with _opened(os.open(root, kernel.O_DIR)) as root_fd:
        _transfer(_Side(root_fd), _in_home(src_path), _Side(None), dst_path, policy)


def _in_home(path: str) -> str:
    return path if path.startswith("/") else f"{HOME}/{path}"


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rstrip("/").rpartition("/")
    return (parent or "/") if "/" in path else ".", name


@contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _transfer(src: _Side, src_path: str, dst: _Side, dst_path: str, policy: _Policy) -> None:
    if not src_path or not dst_path:
        raise CopyError("empty path")
    if src_path.endswith("/"):  # the directory's contents, into dst_path
        with _opened(src.open_dir(src_path)) as src_dir:
            mode = stat.S_IMODE(os.fstat(src_dir).st_mode)
            with _opened(_open_or_make_dir(dst, dst_path, mode, policy)) as dst_dir:
                _copy_children(src_dir, src_path, dst_dir, policy)
        return
    parent, name = _split(src_path)
    with _opened(src.open_dir(parent)) as src_parent:
        if dst_path.endswith("/") or _is_dir(dst, dst_path):  # into it, under the same name
            with _opened(_open_or_make_dir(dst, dst_path, 0o755, policy)) as dst_dir:
                _copy_entry(src_parent, name, src_path, dst_dir, name, policy)
            return
        dst_parent, dst_name = _split(dst_path)
        with _opened(dst.open_dir(dst_parent)) as dst_dir:
            _copy_entry(src_parent, name, src_path, dst_dir, dst_name, policy)


def _is_dir(side: _Side, path: str) -> bool:
    try:
        os.close(side.open_dir(path))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _open_or_make_dir(side: _Side, path: str, mode: int, policy: _Policy) -> int:
    """Directory `path`; its last component made if missing (rsync makes no parents)."""
    try:
        return side.open_dir(path)
    except FileNotFoundError:
        parent, name = _split(path)
        with _opened(side.open_dir(parent)) as parent_fd, policy.writing():
            fd, _ = _make_dir(parent_fd, name, policy.owner(os.fstat(parent_fd)))
            os.fchmod(fd, mode & policy.mode_mask)
            return fd


def _copy_children(src_dir: int, src_path: str, dst_dir: int, policy: _Policy) -> None:
    with os.scandir(src_dir) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        _copy_entry(src_dir, name, f"{src_path.rstrip('/')}/{name}", dst_dir, name, policy)


def _copy_entry(src_dir: int, name: str, src_path: str, dst_dir: int, dst_name: str,
                policy: _Policy) -> None:
    try:
        st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    except FileNotFoundError:  # gone since it was listed
        return
    try:
        owner = policy.owner(st)
    except ValueError as exc:  # an id outside the container's range
        raise CopyError(f"{src_path}: {exc}") from None
    if stat.S_ISDIR(st.st_mode):
        with _opened(os.open(name, _NOFOLLOW_DIR, dir_fd=src_dir)) as sub_src:
            with policy.writing():
                sub_dst, made = _make_dir(dst_dir, dst_name, owner)
            with _opened(sub_dst):
                _copy_children(sub_src, src_path, sub_dst, policy)
                if made:  # mode last, so that a read-only directory could still be filled
                    with policy.writing():
                        os.fchmod(sub_dst, stat.S_IMODE(st.st_mode) & policy.mode_mask)
    elif stat.S_ISREG(st.st_mode):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with _opened(os.open(name, flags, dir_fd=src_dir)) as src_fd, policy.writing():
            _place(dst_dir, dst_name, lambda tmp: _write_file(
                src_fd, dst_dir, tmp, stat.S_IMODE(st.st_mode) & policy.mode_mask, owner))
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=src_dir)
        with policy.writing():
            _place(dst_dir, dst_name, lambda tmp: _make_symlink(target, dst_dir, tmp, owner))


def _make_dir(dir_fd: int, name: str, owner: tuple[int, int]) -> tuple[int, bool]:
    """(fd, made) of directory `name`: an existing directory is merged into as it is;
    anything else in the way (a symlink too) is replaced."""
    existing = _lstat(dir_fd, name)
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        existing = None
    if existing is None:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = os.open(name, _NOFOLLOW_DIR, dir_fd=dir_fd)
    if existing is None:  # through the fd: the name may have been swapped meanwhile
        os.fchown(fd, *owner)
    return fd, existing is None


def _write_file(src_fd: int, dir_fd: int, name: str, mode: int, owner: tuple[int, int]) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with _opened(os.open(name, flags, 0o600, dir_fd=dir_fd)) as fd:
        size, offset = os.fstat(src_fd).st_size, 0
        while offset < size:  # the size at open: a file growing meanwhile cannot stall us
            sent = os.sendfile(fd, src_fd, offset, size - offset)
            if sent == 0:
                break
            offset += sent
        os.fchown(fd, *owner)
        os.fchmod(fd, mode)  # after fchown, which clears set-id bits


def _make_symlink(target: str, dir_fd: int, name: str, owner: tuple[int, int]) -> None:
    os.symlink(target, name, dir_fd=dir_fd)
    os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)


def _place(dir_fd: int, name: str, make: Callable[[str], None]) -> None:
    """Make the entry under a fresh name with `make(tmp)`, then rename it over `name` (which is
    replaced, never followed); a directory in the way is removed only when empty."""
    tmp = f".{name}.{secrets.token_hex(4)}"
    try:
        make(tmp)
        old = _lstat(dir_fd, name)
        if old is not None and stat.S_ISDIR(old.st_mode):
            os.rmdir(name, dir_fd=dir_fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
