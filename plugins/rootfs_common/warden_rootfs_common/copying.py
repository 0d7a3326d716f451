"""CopyIn and CopyOut between host paths and paths inside a container's root, in-process,
with the semantics of Warden's `rsync -r -p --links` (warden-facts §5.5).

Owns: which destination a source lands at (a trailing `/` on the source copies its
contents), the recursive copy, ownership, and CopyOut's `owner`. Not which container
states allow a copy, nor the client's error text (the driver maps CopyError to it).

Container paths are resolved inside the container root (inroot.py): a symlink in the
container can never make a copy read or write a host file. Below the top-level path every
step is relative to directory fds and never follows a symlink, on both sides, so a tree
the container changes during the copy cannot redirect it either.

Deliberate differences from rsync: a directory that already exists at the destination is
merged into but keeps its mode and owner (rsync -p would chmod it; run as vcap it fails on
directories vcap does not own); CopyOut drops set-uid/set-gid bits, since its files belong
to a host user rather than the container's; fifos, sockets and devices are skipped, as
rsync without -D skips them. Relative container paths are relative to vcap's home, as
rsync's remote side starts there.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from warden_rootfs_common import inroot, kernel
from warden_rootfs_common.etcfiles import HOME

log = logging.getLogger(__name__)

_SENDFILE_CHUNK = 1 << 30


class CopyError(Exception):
    """A copy that failed; the text names the operation, the path and the reason."""


@dataclass(frozen=True)
class _Side:
    """Where top-level paths of one end of a copy are resolved: the host, or a root fd."""

    root_fd: int | None

    def open_dir(self, path: str) -> int:
        if self.root_fd is None:
            return os.open(path, inroot.O_DIR)
        return inroot.open_dir(self.root_fd, path)

    def open_or_make_dir(self, path: str, mode: int, owner: tuple[int, int]) -> int:
        """Directory `path`, its last component made if missing (rsync makes no parents)."""
        if self.root_fd is not None:
            return inroot.open_or_make_dir(self.root_fd, path, mode, owner)[0]
        try:
            return os.open(path, inroot.O_DIR)
        except FileNotFoundError:
            parent, name = inroot.split(path.rstrip("/") or "/")
            with _closing(os.open(parent, inroot.O_DIR)) as parent_fd:
                return inroot.make_dir(parent_fd, name, mode, owner)[0]


@dataclass(frozen=True)
class _Policy:
    """What the receiving end does with new entries, and as whom it writes: copy_in writes
    with vcap's file system ids (`writer`), so the kernel refuses what vcap may not do."""

    op: str
    owner: tuple[int, int]
    mode_mask: int
    writer: tuple[int, int] | None = None

    def writing(self) -> AbstractContextManager[None]:
        return fs_ids(*self.writer) if self.writer else nullcontext()


@contextmanager
def fs_ids(uid: int, gid: int) -> Iterator[None]:
    """Run the block with this thread's file system uid and gid set to uid, gid.

    Linux keeps them per thread (glibc's setfsuid does not touch other threads), and a
    non-zero fsuid drops the file capabilities (DAC override, chown, fowner) of the thread,
    which come back when it is 0 again.
    """
    try:
        if not kernel.set_fs_ids(uid, gid):
            raise CopyError(f"cannot take file system ids {uid}:{gid}")
        yield
    finally:
        kernel.reset_fs_ids()


@contextmanager
def _naming(op: str, path: str) -> Iterator[None]:
    try:
        yield
    except CopyError:
        raise
    except OSError as e:
        raise CopyError(f"{op}: {path}: {e.strerror or e}") from e


def copy_in(rootfs_mount: Path, src_host: str, dst_container: str, uid: int, gid: int) -> None:
    """Copy host `src_host` to `dst_container` inside the root as uid:gid (vcap's host ids),
    which own the new files; set-uid and set-gid bits are dropped, as copy_out does. The
    source is read as root, as Warden's host-side rsync did."""
    policy = _Policy("copy_in", (uid, gid), 0o1777, writer=(uid, gid))
    with _opened_root(policy.op, rootfs_mount) as root:
        _transfer(_Side(None), src_host, _Side(root), _container_path(dst_container), policy)


def copy_out(rootfs_mount: Path, src_container: str, dst_host: str,
             owner: str | None = None) -> None:
    """Copy `src_container` from inside the root to host `dst_host`, owned by root; with
    `owner` ("USER:GROUP", names looked up on the host), then `chown -R` dst_host to it."""
    ids = _owner_ids(owner) if owner else None
    policy = _Policy("copy_out", (0, 0), 0o1777)
    with _opened_root(policy.op, rootfs_mount) as root:
        _transfer(_Side(root), _container_path(src_container), _Side(None), dst_host, policy)
    if ids is not None:
        _chown_tree(dst_host, *ids)


@contextmanager
def _opened_root(op: str, rootfs_mount: Path) -> Iterator[int]:
    with _naming(op, str(rootfs_mount)):
        fd = os.open(rootfs_mount, inroot.O_DIR)
    with _closing(fd):
        yield fd


def _container_path(path: str) -> str:
    return path if path.startswith("/") else f"{HOME}/{path}"


def _owner_ids(owner: str) -> tuple[int, int]:
    """uid and gid (-1: unchanged) of chown's "USER:GROUP", "USER", "USER:" or ":GROUP";
    names are looked up in the host's databases, numbers taken as they are."""
    user, sep, group = owner.partition(":")
    try:
        uid = _user_id(user) if user else -1
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        elif sep and user:  # "USER:" means the user's login group
            gid = pwd.getpwuid(uid).pw_gid
        else:
            gid = -1
    except KeyError as e:
        raise CopyError(f"copy_out: invalid owner {owner!r}: no such user or group") from e
    return uid, gid


def _user_id(user: str) -> int:
    return int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid


def _chown_tree(top: str, uid: int, gid: int) -> None:
    """`chown -R` without following symlinks (a symlink itself is re-owned)."""
    with _naming("copy_out", top):
        os.chown(top, uid, gid, follow_symlinks=False)
        for dirpath, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
            for name in dirs + files:
                with _naming("copy_out", os.path.join(dirpath, name)):
                    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


# ---- where the source lands -------------------------------------------------------------

def _transfer(src: _Side, src_path: str, dst: _Side, dst_path: str, policy: _Policy) -> None:
    op = policy.op
    if not src_path or not dst_path:
        raise CopyError(f"{op}: empty path")
    parent, name = inroot.split(src_path)
    if name in ("", ".", ".."):  # "dir/" (or "dir/."): the directory's contents
        with _naming(op, src_path):
            src_dir = src.open_dir(src_path)
        with _closing(src_dir), _dst_dir(dst, dst_path, policy, os.fstat(src_dir)) as dst_dir:
            _copy_children(src_dir, src_path, dst_dir, dst_path, policy)
        return
    with _naming(op, src_path):
        src_parent = src.open_dir(parent)
    with _closing(src_parent):
        with _naming(op, src_path):
            st = inroot.lstat_at(src_parent, name)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        with policy.writing():
            into_dir = dst_path.endswith("/") or _is_dir(dst, dst_path, op)
        if stat.S_ISDIR(st.st_mode) or into_dir:
            with _dst_dir(dst, dst_path, policy, None) as dst_dir:
                _copy_entry(src_parent, name, src_path, dst_dir, name,
                            _join(dst_path, name), policy)
            return
        dst_parent_path, dst_name = inroot.split(dst_path)
        with _naming(op, dst_path), policy.writing():
            dst_parent = dst.open_dir(dst_parent_path)
        with _closing(dst_parent):
            _copy_entry(src_parent, name, src_path, dst_parent, dst_name, dst_path, policy)


def _is_dir(side: _Side, path: str, op: str) -> bool:
    """Whether `path` is a directory, following symlinks (inside the root, for a container)."""
    with _naming(op, path):
        try:
            os.close(side.open_dir(path))
        except (FileNotFoundError, NotADirectoryError):
            return False
    return True


@contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _dst_dir(side: _Side, path: str, policy: _Policy,
             mode_from: os.stat_result | None) -> Iterator[int]:
    """The destination directory, made (last component only, like rsync) if missing."""
    mode = stat.S_IMODE(mode_from.st_mode) & policy.mode_mask if mode_from else 0o755
    with _naming(policy.op, path), policy.writing():
        fd = side.open_or_make_dir(path, mode, policy.owner)
    with _closing(fd):
        yield fd


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


# ---- the recursive copy -------------------------------------------------------------------

def _copy_children(src_dir: int, src_path: str, dst_dir: int, dst_path: str,
                   policy: _Policy) -> None:
    with _naming(policy.op, src_path), os.scandir(src_dir) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        _copy_entry(src_dir, name, _join(src_path, name), dst_dir, name,
                    _join(dst_path, name), policy)


def _copy_entry(src_dir: int, src_name: str, src_path: str, dst_dir: int, dst_name: str,
                dst_path: str, policy: _Policy) -> None:
    with _naming(policy.op, src_path):
        st = inroot.lstat_at(src_dir, src_name)
    if st is None:  # vanished since it was listed
        return
    if stat.S_ISDIR(st.st_mode):
        _copy_dir(src_dir, src_name, src_path, dst_dir, dst_name, dst_path, policy)
    elif stat.S_ISREG(st.st_mode):
        _copy_file(src_dir, src_name, src_path, dst_dir, dst_name, dst_path, policy)
    elif stat.S_ISLNK(st.st_mode):
        with _naming(policy.op, src_path):
            target = os.readlink(src_name, dir_fd=src_dir)
        with _naming(policy.op, dst_path), policy.writing():
            _place(dst_dir, dst_name, lambda tmp: _make_symlink(target, dst_dir, tmp, policy))
    else:
        log.info("%s: skipping non-regular file %s", policy.op, src_path)


def _copy_dir(src_dir: int, src_name: str, src_path: str, dst_dir: int, dst_name: str,
              dst_path: str, policy: _Policy) -> None:
    with _naming(policy.op, src_path):
        sub_src = inroot.open_subdir(src_dir, src_name)
    with _closing(sub_src):
        with _naming(policy.op, dst_path), policy.writing():
            _clear_non_dir(dst_dir, dst_name)
            sub_dst, created = inroot.make_dir(dst_dir, dst_name, 0o700, policy.owner)
        with _closing(sub_dst):
            _copy_children(sub_src, src_path, sub_dst, dst_path, policy)
            if created:  # mode last, so a read-only source dir could still be filled
                with _naming(policy.op, dst_path), policy.writing():
                    os.fchmod(sub_dst, stat.S_IMODE(os.fstat(sub_src).st_mode) & policy.mode_mask)


def _clear_non_dir(dir_fd: int, name: str) -> None:
    st = inroot.lstat_at(dir_fd, name)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)


def _copy_file(src_dir: int, src_name: str, src_path: str, dst_dir: int, dst_name: str,
               dst_path: str, policy: _Policy) -> None:
    with _naming(policy.op, src_path):
        src_fd = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=src_dir)
    with _closing(src_fd):
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the lstat
            log.info("%s: skipping non-regular file %s", policy.op, src_path)
            return
        mode = stat.S_IMODE(st.st_mode) & policy.mode_mask
        with _naming(policy.op, dst_path), policy.writing():
            _place(dst_dir, dst_name,
                   lambda tmp: _write_file(src_fd, st.st_size, dst_dir, tmp, mode, policy))


def _write_file(src_fd: int, size: int, dir_fd: int, name: str, mode: int,
                policy: _Policy) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    with _closing(fd):
        offset = 0
        while offset < size:  # the size seen at open: a file growing meanwhile cannot stall us
            sent = os.sendfile(fd, src_fd, offset, min(_SENDFILE_CHUNK, size - offset))
            if sent == 0:
                break
            offset += sent
        os.fchown(fd, *policy.owner)
        os.fchmod(fd, mode)  # after fchown, which clears set-id bits


def _make_symlink(target: str, dir_fd: int, name: str, policy: _Policy) -> None:
    os.symlink(target, name, dir_fd=dir_fd)
    os.chown(name, *policy.owner, dir_fd=dir_fd, follow_symlinks=False)


def _place(dir_fd: int, name: str, make: Callable[[str], None]) -> None:
    """Build the new entry under a temporary name with `make(tmp)`, then rename it over
    `name`; a directory in the way is removed only when empty."""
    tmp = inroot.temp_name(name)
    try:
        make(tmp)
        old = inroot.lstat_at(dir_fd, name)
        if old is not None and stat.S_ISDIR(old.st_mode):
            os.rmdir(name, dir_fd=dir_fd)  # ENOTEMPTY: rsync too refuses to delete it
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
