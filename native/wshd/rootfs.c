/*
 * rootfs.c: the container's / in two halves. rootfs_build runs in the launcher, as host root,
 * before the clone: in a mount namespace of its own with every mount private (so the host never
 * sees them) it binds ROOT onto itself if it is not a mount point, mounts /dev (tmpfs, nodes
 * made by host root, devpts, shm) and the --bind mounts (nosuid, nodev, ro where asked), every
 * target resolved inside the root (resolve.c), and leaves its cwd at the root. The clone copies
 * that tree and, when the init gets a user namespace, the kernel locks every copied mount: a
 * read-only bind stays read-only and nothing can be unmounted to show what is below.
 *
 * rootfs_enter runs in the released init, whose cwd is the root's copy in its own namespace (a
 * descriptor opened before the clone would name the launcher's mount, which pivot_root refuses).
 * It never looks up a host path: it clones the root's tree onto itself (a fresh mount, which
 * unlike the locked copy can be pivoted to), mounts proc relative to it, masks proc like Docker,
 * sets the hostname, pivots and detaches the old root.
 */
#include "rootfs.h"

#include "cleanup.h"
#include "resolve.h"
#include "wshd.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct rootfs_dev_node {
    const char *name;
    unsigned int major;
    unsigned int minor;
};

static const struct rootfs_dev_node rootfs_dev_nodes[] = {
    {"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
    {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

static const char *const rootfs_dev_links[][2] = {
    {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

/* Docker's masked and read-only proc paths, relative to the root (the init's cwd). */
static const char *const rootfs_proc_null[] = {
    "proc/kcore",       "proc/keys",        "proc/latency_stats", "proc/timer_list",
    "proc/timer_stats", "proc/sched_debug", "proc/sysrq-trigger",
};
static const char *const rootfs_proc_empty[] = {"proc/acpi", "proc/scsi", "proc/asound"};
static const char *const rootfs_proc_readonly[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys"};

#define ROOTFS_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* pivot_root needs the new root to be a mount point; a plain directory is bound onto itself. */
static int rootfs_bind_root(const char *root, struct wshd_error *err)
{
    struct statx stx;

    if (statx(AT_FDCWD, root, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
        return wshd_error_set(err, errno, "stat %s", root);
    if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
        (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0)
        return 0;
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
        return wshd_error_set(err, errno, "bind %s onto itself", root);
    return 0;
}

static int rootfs_mount_at(int root_fd, const char *path, const char *source, const char *type,
                           unsigned long flags, const char *data, struct wshd_error *err)
{
    char target[RESOLVE_FD_PATH_MAX];
    cleanup_close int fd = resolve_open(root_fd, path, err);

    if (fd < 0)
        return -1;
    if (mount(source, resolve_fd_path(target, fd), type, flags, data) < 0)
        return wshd_error_set(err, errno, "mount %s on %s", type, path);
    return 0;
}

/*
 * Nodes are made by host root: a user namespace could not mknod them. They and the links
 * belong to the container's root (`owner`: host id of its container id 0), as the tmpfs does.
 */
static int rootfs_dev_entries(int dev_fd, uid_t owner, struct wshd_error *err)
{
    for (size_t i = 0; i < ROOTFS_COUNT(rootfs_dev_nodes); i++) {
        const struct rootfs_dev_node *n = &rootfs_dev_nodes[i];

        if (mknodat(dev_fd, n->name, S_IFCHR | 0666, makedev(n->major, n->minor)) < 0)
            return wshd_error_set(err, errno, "mknod /dev/%s", n->name);
        /* mknod applies the umask; the nodes must be usable by every uid. */
        if (fchmodat(dev_fd, n->name, 0666, 0) < 0)
            return wshd_error_set(err, errno, "chmod /dev/%s", n->name);
        if (fchownat(dev_fd, n->name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0)
            return wshd_error_set(err, errno, "chown /dev/%s", n->name);
    }
    for (size_t i = 0; i < ROOTFS_COUNT(rootfs_dev_links); i++) {
        const char *name = rootfs_dev_links[i][0];

        if (symlinkat(rootfs_dev_links[i][1], dev_fd, name) < 0)
            return wshd_error_set(err, errno, "symlink /dev/%s", name);
        if (fchownat(dev_fd, name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0)
            return wshd_error_set(err, errno, "chown /dev/%s", name);
    }
    if (mkdirat(dev_fd, "pts", 0755) < 0)
        return wshd_error_set(err, errno, "mkdir /dev/pts");
    if (mkdirat(dev_fd, "shm", 0755) < 0)
        return wshd_error_set(err, errno, "mkdir /dev/shm");
    return 0;
}

static int rootfs_mount_dev(int root_fd, uid_t owner, struct wshd_error *err)
{
    char target[RESOLVE_FD_PATH_MAX];
    char data[64];
    cleanup_close int dev = resolve_plain_dir(root_fd, "dev", 0755, err);

    if (dev < 0)
        return -1;
    snprintf(data, sizeof data, "mode=755,uid=%u,gid=%u", (unsigned)owner, (unsigned)owner);
    if (mount("tmpfs", resolve_fd_path(target, dev), "tmpfs", MS_NOSUID | MS_STRICTATIME,
              data) < 0)
        return wshd_error_set(err, errno, "mount tmpfs on /dev");
    /* The descriptor names the directory below the tmpfs: look /dev up again to enter it. */
    (void)close(take_fd(&dev));
    dev = resolve_plain_dir(root_fd, "dev", 0755, err);
    if (dev < 0 || rootfs_dev_entries(dev, owner, err) < 0)
        return -1;
    if (rootfs_mount_at(root_fd, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                        "newinstance,ptmxmode=0666,mode=620", err) < 0)
        return -1;
    snprintf(data, sizeof data, "mode=1777,uid=%u,gid=%u", (unsigned)owner, (unsigned)owner);
    return rootfs_mount_at(root_fd, "/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV, data, err);
}

/* nosuid and nodev always, read-only if asked or if the source is; noexec kept from the source. */
static int rootfs_bind_flags(int target, const struct wshd_bind *b, unsigned long *flags,
                             struct wshd_error *err)
{
    struct statvfs sv;

    if (fstatvfs(target, &sv) < 0)
        return wshd_error_set(err, errno, "stat the mount on %s", b->dst);
    *flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV;
    if (b->read_only || (sv.f_flag & ST_RDONLY) != 0)
        *flags |= MS_RDONLY;
    if ((sv.f_flag & ST_NOEXEC) != 0)
        *flags |= MS_NOEXEC;
    return 0;
}

static int rootfs_bind(int root_fd, const struct wshd_bind *b, struct wshd_error *err)
{
    char from[RESOLVE_FD_PATH_MAX];
    char onto[RESOLVE_FD_PATH_MAX];
    cleanup_close int src = resolve_open_source(b->src, err);
    cleanup_close int dst = -1;
    unsigned long flags = 0;
    struct stat st;

    if (src < 0)
        return -1;
    if (fstat(src, &st) < 0)
        return wshd_error_set(err, errno, "stat bind source %s", b->src);
    dst = resolve_target(root_fd, b->dst, S_ISDIR(st.st_mode), err);
    if (dst < 0)
        return wshd_error_wrap(err, "bind onto %s", b->dst);
    if (mount(resolve_fd_path(from, src), resolve_fd_path(onto, dst), NULL, MS_BIND, NULL) < 0)
        return wshd_error_set(err, errno, "bind %s onto %s", b->src, b->dst);
    /* The remount must name the new mount's root, not the directory it covers. */
    (void)close(take_fd(&dst));
    dst = resolve_open(root_fd, b->dst, err);
    if (dst < 0 || rootfs_bind_flags(dst, b, &flags, err) < 0)
        return -1;
    if (mount(NULL, resolve_fd_path(onto, dst), NULL, flags, NULL) < 0)
        return wshd_error_set(err, errno, "remount %s%s", b->dst,
                              (flags & MS_RDONLY) != 0 ? " read-only" : " nosuid,nodev");
    return 0;
}

int rootfs_build(const struct wshd_config *c, struct wshd_error *err)
{
    cleanup_close int root_fd = -1;
    cleanup_close int proc = -1;

    if (unshare(CLONE_NEWNS) < 0)
        return wshd_error_set(err, errno, "unshare the mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return wshd_error_set(err, errno, "make every mount private");
    if (rootfs_bind_root(c->root_dir, err) < 0)
        return -1;
    root_fd = open(c->root_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0)
        return wshd_error_set(err, errno, "open %s", c->root_dir);
    /* The init mounts proc on "proc" relative to the root: it must not be a symlink. */
    proc = resolve_plain_dir(root_fd, "proc", 0555, err);
    if (proc < 0 || rootfs_mount_dev(root_fd, c->id_map ? c->id_base : 0, err) < 0)
        return -1;
    for (size_t i = 0; i < c->nbinds; i++)
        if (rootfs_bind(root_fd, &c->binds[i], err) < 0)
            return -1;
    /* The clone gives the init this cwd, translated into its copy of the mounts. */
    if (fchdir(root_fd) < 0)
        return wshd_error_set(err, errno, "chdir %s", c->root_dir);
    return 0;
}

static int rootfs_mask_proc(struct wshd_error *err)
{
    const unsigned long ro = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

    /* ENOENT: the kernel has no such file (timer_stats, sched_debug, acpi vary). */
    for (size_t i = 0; i < ROOTFS_COUNT(rootfs_proc_null); i++)
        if (mount("dev/null", rootfs_proc_null[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
            return wshd_error_set(err, errno, "mask /%s", rootfs_proc_null[i]);
    for (size_t i = 0; i < ROOTFS_COUNT(rootfs_proc_empty); i++)
        if (mount("tmpfs", rootfs_proc_empty[i], "tmpfs",
                  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=555") < 0 &&
            errno != ENOENT)
            return wshd_error_set(err, errno, "mask /%s", rootfs_proc_empty[i]);
    for (size_t i = 0; i < ROOTFS_COUNT(rootfs_proc_readonly); i++) {
        const char *p = rootfs_proc_readonly[i];

        if (mount(p, p, NULL, MS_BIND, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            return wshd_error_set(err, errno, "bind /%s onto itself", p);
        }
        if (mount(NULL, p, NULL, ro, NULL) < 0)
            return wshd_error_set(err, errno, "remount /%s read-only", p);
    }
    return 0;
}

/* A fresh recursive copy of the cwd's tree, mounted on it, becomes the cwd. */
static int rootfs_fresh_root(struct wshd_error *err)
{
    cleanup_close int tree =
        open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

    if (tree < 0)
        return wshd_error_set(err, errno, "copy the root's mount tree");
    if (move_mount(tree, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return wshd_error_set(err, errno, "mount the copy of the root");
    if (fchdir(tree) < 0)
        return wshd_error_set(err, errno, "chdir into the copy of the root");
    return 0;
}

int rootfs_enter(const char *hostname, struct wshd_error *err)
{
    if (rootfs_fresh_root(err) < 0)
        return -1;
    /* Mounted by pid 1 of the new pid namespace, so it shows the container's processes. */
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return wshd_error_set(err, errno, "mount proc on /proc");
    if (rootfs_mask_proc(err) < 0)
        return -1;
    if (sethostname(hostname, strlen(hostname)) < 0)
        return wshd_error_set(err, errno, "set hostname %s", hostname);
    /* The old root ends up stacked on the new one; detaching "." removes it. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return wshd_error_set(err, errno, "pivot_root into the root");
    if (umount2(".", MNT_DETACH) < 0)
        return wshd_error_set(err, errno, "detach the old root");
    if (chdir("/") < 0)
        return wshd_error_set(err, errno, "chdir /");
    return 0;
}
