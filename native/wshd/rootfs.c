/*
 * rootfs.c: the container's / in two halves. rootfs_build runs in the launcher, as host root,
 * before the clone. It takes what it needs from the host first, as detached copies of mount
 * trees (open_tree): the root's tree and each --bind source, each made private so nothing
 * mounted on it later propagates back to the host. Then it leaves the host's mount namespace
 * for a copy of a small one: the server's mount seed (--mount-seed-fd: a tmpfs with /proc and an
 * empty /root, made once by `wshd --make-mount-seed`), else the host's own. Copying the
 * host's namespace costs a little per mount in it, three times a start (this copy, the clone's
 * and the init's detach of the old root), and the host holds a mount or two per container.
 * It attaches the root's copy (at /root, or on top of ROOT), mounts /dev (tmpfs, nodes made by
 * host root, devpts, shm) and attaches the bind copies (nosuid, nodev, ro where asked), every
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

/* A detached, private copy of the mount at `fd` (`path` relative to it; "" for fd itself). */
static int rootfs_copy_tree(int fd, const char *path, unsigned int recursive, const char *what,
                            struct wshd_error *err)
{
    struct mount_attr private = {.propagation = MS_PRIVATE};
    unsigned int empty = path[0] == '\0' ? AT_EMPTY_PATH : 0;
    cleanup_close int tree = open_tree(fd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                     AT_SYMLINK_NOFOLLOW | recursive | empty);

    if (tree < 0)
        return wshd_error_set(err, errno, "copy the mount of %s", what);
    if (mount_setattr(tree, "", AT_EMPTY_PATH | recursive, &private, sizeof private) < 0)
        return wshd_error_set(err, errno, "make the copy of %s private", what);
    return take_fd(&tree);
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

/* The host half of a --bind: its source, opened without following links, copied. */
static int rootfs_bind_source(const struct wshd_bind *b, bool *is_dir, struct wshd_error *err)
{
    cleanup_close int src = resolve_open_source(b->src, err);
    struct stat st;

    if (src < 0)
        return -1;
    if (fstat(src, &st) < 0)
        return wshd_error_set(err, errno, "stat bind source %s", b->src);
    *is_dir = S_ISDIR(st.st_mode);
    return rootfs_copy_tree(src, "", 0, b->src, err);
}

static int rootfs_bind(int root_fd, const struct wshd_bind *b, int source, bool is_dir,
                       struct wshd_error *err)
{
    char onto[RESOLVE_FD_PATH_MAX];
    cleanup_close int dst = resolve_target(root_fd, b->dst, is_dir, err);
    unsigned long flags = 0;

    if (dst < 0)
        return wshd_error_wrap(err, "bind onto %s", b->dst);
    if (move_mount(source, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
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

/* Copies of the host mounts a container is built from, taken before leaving the host's namespace. */
struct rootfs_sources {
    int root;
    int binds[WSHD_MAX_BINDS];
    bool bind_is_dir[WSHD_MAX_BINDS];
    size_t nbinds;
};

static void rootfs_sources_close(struct rootfs_sources *s)
{
    if (s->root >= 0)
        (void)close(s->root);
    for (size_t i = 0; i < s->nbinds; i++)
        (void)close(s->binds[i]);
}

static int rootfs_take_sources(const struct wshd_config *c, struct rootfs_sources *s,
                               struct wshd_error *err)
{
    s->root = rootfs_copy_tree(AT_FDCWD, c->root_dir, AT_RECURSIVE, c->root_dir, err);
    if (s->root < 0)
        return -1;
    for (; s->nbinds < c->nbinds; s->nbinds++) {
        int fd = rootfs_bind_source(&c->binds[s->nbinds], &s->bind_is_dir[s->nbinds], err);

        if (fd < 0)
            return -1;
        s->binds[s->nbinds] = fd;
    }
    return 0;
}

/* A private copy of the seed's namespace (or of the current one), the root's copy attached. */
static int rootfs_enter_namespace(const struct wshd_config *c, int root_tree, const char **at,
                                  struct wshd_error *err)
{
    if (c->mount_seed_fd >= 0) {
        if (setns(c->mount_seed_fd, CLONE_NEWNS) < 0)
            return wshd_error_set(err, errno, "enter the mount seed");
        /* The init is cloned from this process: it must not inherit a way back. */
        if (close(c->mount_seed_fd) < 0)
            return wshd_error_set(err, errno, "close the mount seed");
        *at = ROOTFS_SEED_ROOT;
    } else {
        *at = c->root_dir;
    }
    if (unshare(CLONE_NEWNS) < 0)
        return wshd_error_set(err, errno, "unshare the mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return wshd_error_set(err, errno, "make every mount private");
    if (move_mount(root_tree, "", AT_FDCWD, *at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return wshd_error_set(err, errno, "mount the copy of %s", c->root_dir);
    return 0;
}

/* The cwd becomes /: the old root ends up stacked on the new one; detaching "." removes it. */
static int rootfs_pivot_to_cwd(const char *what, struct wshd_error *err)
{
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return wshd_error_set(err, errno, "pivot_root into %s", what);
    if (umount2(".", MNT_DETACH) < 0)
        return wshd_error_set(err, errno, "detach the old root from %s", what);
    if (chdir("/") < 0)
        return wshd_error_set(err, errno, "chdir /");
    return 0;
}

int rootfs_build(const struct wshd_config *c, struct wshd_error *err)
{
    struct rootfs_sources sources = {.root = -1};
    cleanup_close int root_fd = -1;
    cleanup_close int proc = -1;
    const char *at = NULL;
    int rc = -1;

    if (rootfs_take_sources(c, &sources, err) < 0 ||
        rootfs_enter_namespace(c, sources.root, &at, err) < 0)
        goto out;
    root_fd = open(at, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0) {
        wshd_error_set(err, errno, "open the root at %s", at);
        goto out;
    }
    /* The init mounts proc on "proc" relative to the root: it must not be a symlink. */
    proc = resolve_plain_dir(root_fd, "proc", 0555, err);
    if (proc < 0 || rootfs_mount_dev(root_fd, c->id_map ? c->id_base : 0, err) < 0)
        goto out;
    for (size_t i = 0; i < c->nbinds; i++)
        if (rootfs_bind(root_fd, &c->binds[i], sources.binds[i], sources.bind_is_dir[i], err) < 0)
            goto out;
    /* The clone gives the init this cwd, translated into its copy of the mounts. */
    if (fchdir(root_fd) < 0) {
        wshd_error_set(err, errno, "chdir %s", c->root_dir);
        goto out;
    }
    rc = 0;
out:
    rootfs_sources_close(&sources);
    return rc;
}

int rootfs_make_seed(const char *dir, struct wshd_error *err)
{
    if (unshare(CLONE_NEWNS) < 0)
        return wshd_error_set(err, errno, "unshare the mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return wshd_error_set(err, errno, "make every mount private");
    if (mount("seed", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k") < 0)
        return wshd_error_set(err, errno, "mount tmpfs on %s", dir);
    if (chdir(dir) < 0)
        return wshd_error_set(err, errno, "chdir %s", dir);
    if (mkdir("proc", 0555) < 0 || mkdir(ROOTFS_SEED_ROOT + 1, 0755) < 0)
        return wshd_error_set(err, errno, "mkdir in the seed");
    /* Paths of the form /proc/self/fd/N name descriptors in every step of rootfs_build. */
    if (mount("/proc", "proc", NULL, MS_BIND, NULL) < 0)
        return wshd_error_set(err, errno, "bind /proc into the seed");
    return rootfs_pivot_to_cwd("the seed", err);
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
    return rootfs_pivot_to_cwd("the root", err);
}
