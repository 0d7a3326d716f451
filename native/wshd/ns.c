/*
 * ns.c: the two halves of start-up. The parent (started by the server) clones the container init
 * into new pid, mount, net, uts and ipc namespaces, prints its host pid and waits for "go" on
 * stdin: meanwhile the server puts the child in its cgroups and gives it its veth end, so the
 * child must run nothing before the release. The released child makes every mount private (so
 * nothing below leaks to the host), mounts /proc and /dev, does the --bind mounts last (so no
 * later mount hides them), sets the hostname, pivots into the root and writes wshd.pid through a
 * run-dir descriptor opened before the pivot. It reports "ready" or its error on a pipe; the
 * parent relays that and exits.
 */
#include "cleanup.h"
#include "wshd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS_CLONE_FLAGS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)
#define NS_READY "ready"
#define NS_REPORT_MAX 320

struct ns_dev_node {
    const char *name;
    unsigned int major;
    unsigned int minor;
    bool optional; /* fuse: some hosts refuse the node; the container then has no fuse */
};

static const struct ns_dev_node ns_dev_nodes[] = {
    {"null", 1, 3, false},   {"zero", 1, 5, false}, {"full", 1, 7, false},
    {"random", 1, 8, false}, {"urandom", 1, 9, false}, {"tty", 5, 0, false},
    {"fuse", 10, 229, true},
};

static const char *const ns_dev_links[][2] = {
    {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

static int ns_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until len bytes or end-of-file; returns the count read, or -1. */
static ssize_t ns_read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int ns_path(char *out, size_t cap, const char *root, const char *rel,
                   struct wshd_error *err)
{
    int n = snprintf(out, cap, "%s%s", root, rel);

    if (n < 0 || (size_t)n >= cap)
        return wshd_error_set(err, ENAMETOOLONG, "build path %s%s", root, rel);
    return 0;
}

int ns_barrier_open(struct ns_barrier *b, struct wshd_error *err)
{
    if (pipe2(b->release, O_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "create release pipe");
    if (pipe2(b->ready, O_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "create ready pipe");
    return 0;
}

pid_t ns_clone(struct wshd_error *err)
{
    struct clone_args args = {.flags = NS_CLONE_FLAGS, .exit_signal = SIGCHLD};
    long pid = syscall(SYS_clone3, &args, sizeof args);

    if (pid < 0)
        return wshd_error_set(err, errno, "clone into new namespaces");
    return (pid_t)pid;
}

static int ns_read_go(struct wshd_error *err)
{
    char line[16];
    size_t len = 0;

    for (;;) {
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wshd_error_set(err, errno, "read go from stdin");
        if (n == 0)
            return wshd_error_set(err, 0, "stdin closed before go");
        if (c == '\n')
            break;
        if (len == sizeof line - 1)
            return wshd_error_set(err, 0, "expected go on stdin, got a long line");
        line[len++] = c;
    }
    line[len] = '\0';
    if (strcmp(line, "go") != 0)
        return wshd_error_set(err, 0, "expected go on stdin, got \"%s\"", line);
    return 0;
}

/* The child's report: "ready", or its error text. End-of-file with nothing means it died. */
static int ns_read_report(int fd, char *buf, size_t cap, struct wshd_error *err)
{
    ssize_t n = ns_read_full(fd, buf, cap - 1);

    if (n < 0)
        return wshd_error_set(err, errno, "read report of container init");
    buf[n] = '\0';
    if (n == 0)
        return wshd_error_set(err, 0, "container init died before ready");
    if (strcmp(buf, NS_READY) != 0)
        return wshd_error_set(err, 0, "%s", buf);
    return 0;
}

static int ns_parent_steps(struct ns_barrier *b, pid_t child, struct wshd_error *err)
{
    char report[NS_REPORT_MAX];

    /* The child's ends: end-of-file on ready must mean the child closed its copy. */
    if (close(b->release[0]) < 0 || close(b->ready[1]) < 0)
        return wshd_error_set(err, errno, "close the child's ends of the barrier");
    if (dprintf(STDOUT_FILENO, "pid %d\n", child) < 0)
        return wshd_error_set(err, errno, "write pid to stdout");
    if (ns_read_go(err) < 0)
        return -1;
    if (ns_write_all(b->release[1], &child, sizeof child) < 0)
        return wshd_error_set(err, errno, "release container init %d", child);
    if (close(b->release[1]) < 0)
        return wshd_error_set(err, errno, "close release pipe");
    if (ns_read_report(b->ready[0], report, sizeof report, err) < 0)
        return -1;
    if (dprintf(STDOUT_FILENO, NS_READY "\n") < 0)
        return wshd_error_set(err, errno, "write ready to stdout");
    return 0;
}

int ns_parent_run(struct ns_barrier *b, pid_t child, const char *socket_path)
{
    struct wshd_error err = {0};
    char text[NS_REPORT_MAX];

    if (ns_parent_steps(b, child, &err) == 0)
        return 0;
    dprintf(STDERR_FILENO, "wshd: %s\n", wshd_error_text(&err, text, sizeof text));
    if (kill(child, SIGKILL) < 0 && errno != ESRCH)
        dprintf(STDERR_FILENO, "wshd: kill container init %d: %s\n", child, strerror(errno));
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        continue;
    if (unlink(socket_path) < 0 && errno != ENOENT)
        dprintf(STDERR_FILENO, "wshd: remove %s: %s\n", socket_path, strerror(errno));
    return 1;
}

int ns_child_wait(struct ns_barrier *b, pid_t *host_pid, struct wshd_error *err)
{
    ssize_t n;

    if (close(b->release[1]) < 0 || close(b->ready[0]) < 0)
        return wshd_error_set(err, errno, "close the parent's ends of the barrier");
    n = ns_read_full(b->release[0], host_pid, sizeof *host_pid);
    if (n < 0)
        return wshd_error_set(err, errno, "wait for release");
    if ((size_t)n != sizeof *host_pid)
        return wshd_error_set(err, 0, "parent gave up before release");
    if (close(b->release[0]) < 0)
        return wshd_error_set(err, errno, "close release pipe");
    return 0;
}

int ns_child_report(struct ns_barrier *b, const struct wshd_error *err)
{
    char text[NS_REPORT_MAX];
    const char *msg = err != NULL ? wshd_error_text(err, text, sizeof text) : NS_READY;

    if (ns_write_all(b->ready[1], msg, strlen(msg)) < 0)
        return -1;
    return close(b->ready[1]);
}

static int ns_mkdir(const char *path, mode_t mode, struct wshd_error *err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return wshd_error_set(err, errno, "mkdir %s", path);
    return 0;
}

static int ns_mkdir_p(const char *path, struct wshd_error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof buf)
        return wshd_error_set(err, ENAMETOOLONG, "mkdir %s", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (ns_mkdir(buf, 0755, err) < 0)
            return -1;
        *p = '/';
    }
    return ns_mkdir(buf, 0755, err);
}

/* A file bind needs a file to mount over: create it (and its parents) when missing. */
static int ns_make_file(const char *path, struct wshd_error *err)
{
    char parent[PATH_MAX];
    char *slash;
    cleanup_close int fd = -1;

    if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent)
        return wshd_error_set(err, ENAMETOOLONG, "create %s", path);
    slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if (ns_mkdir_p(parent, err) < 0)
            return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return wshd_error_set(err, errno, "create %s", path);
    if (close(take_fd(&fd)) < 0)
        return wshd_error_set(err, errno, "close %s", path);
    return 0;
}

static int ns_bind_one(const char *root, const struct wshd_bind *b, struct wshd_error *err)
{
    char target[PATH_MAX];
    struct stat st;

    if (ns_path(target, sizeof target, root, b->dst, err) < 0)
        return -1;
    if (stat(b->src, &st) < 0)
        return wshd_error_set(err, errno, "stat bind source %s", b->src);
    if ((S_ISDIR(st.st_mode) ? ns_mkdir_p(target, err) : ns_make_file(target, err)) < 0)
        return -1;
    if (mount(b->src, target, NULL, MS_BIND, NULL) < 0)
        return wshd_error_set(err, errno, "bind %s onto %s", b->src, target);
    if (b->read_only && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
        return wshd_error_set(err, errno, "remount %s read-only", target);
    return 0;
}

/* pivot_root needs the new root to be a mount point; a plain directory is bound onto itself. */
static int ns_bind_root(const char *root, struct wshd_error *err)
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

static int ns_mount_proc(const char *root, struct wshd_error *err)
{
    char target[PATH_MAX];

    if (ns_path(target, sizeof target, root, "/proc", err) < 0 || ns_mkdir(target, 0555, err) < 0)
        return -1;
    /* Mounted by pid 1 of the new pid namespace, so it shows the container's processes. */
    if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return wshd_error_set(err, errno, "mount proc on %s", target);
    return 0;
}

static int ns_dev_entries(int devfd, const char *dev, struct wshd_error *err)
{
    for (size_t i = 0; i < sizeof ns_dev_nodes / sizeof ns_dev_nodes[0]; i++) {
        const struct ns_dev_node *n = &ns_dev_nodes[i];

        if (mknodat(devfd, n->name, S_IFCHR | 0666, makedev(n->major, n->minor)) < 0) {
            if (n->optional)
                continue;
            return wshd_error_set(err, errno, "mknod %s/%s", dev, n->name);
        }
        /* mknod applies the umask; the nodes must be usable by every uid. */
        if (fchmodat(devfd, n->name, 0666, 0) < 0)
            return wshd_error_set(err, errno, "chmod %s/%s", dev, n->name);
    }
    for (size_t i = 0; i < sizeof ns_dev_links / sizeof ns_dev_links[0]; i++)
        if (symlinkat(ns_dev_links[i][1], devfd, ns_dev_links[i][0]) < 0)
            return wshd_error_set(err, errno, "symlink %s/%s", dev, ns_dev_links[i][0]);
    if (mkdirat(devfd, "pts", 0755) < 0)
        return wshd_error_set(err, errno, "mkdir %s/pts", dev);
    if (mkdirat(devfd, "shm", 0755) < 0)
        return wshd_error_set(err, errno, "mkdir %s/shm", dev);
    return 0;
}

static int ns_mount_dev(const char *root, struct wshd_error *err)
{
    char dev[PATH_MAX];
    char sub[PATH_MAX];
    cleanup_close int devfd = -1;

    if (ns_path(dev, sizeof dev, root, "/dev", err) < 0 || ns_mkdir(dev, 0755, err) < 0)
        return -1;
    if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755") < 0)
        return wshd_error_set(err, errno, "mount tmpfs on %s", dev);
    devfd = open(dev, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (devfd < 0)
        return wshd_error_set(err, errno, "open %s", dev);
    if (ns_dev_entries(devfd, dev, err) < 0)
        return -1;
    if (ns_path(sub, sizeof sub, dev, "/pts", err) < 0)
        return -1;
    if (mount("devpts", sub, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620") < 0)
        return wshd_error_set(err, errno, "mount devpts on %s", sub);
    if (ns_path(sub, sizeof sub, dev, "/shm", err) < 0)
        return -1;
    if (mount("shm", sub, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
        return wshd_error_set(err, errno, "mount tmpfs on %s", sub);
    return 0;
}

static int ns_pivot(const char *root, struct wshd_error *err)
{
    char old[PATH_MAX];
    const char *inside;

    if (ns_path(old, sizeof old, root, "/.wshd-oldroot-XXXXXX", err) < 0)
        return -1;
    if (mkdtemp(old) == NULL)
        return wshd_error_set(err, errno, "create %s", old);
    if (syscall(SYS_pivot_root, root, old) < 0) {
        int saved = errno;

        /* Best effort: the error that matters is pivot_root's. */
        (void)rmdir(old);
        return wshd_error_set(err, saved, "pivot_root to %s", root);
    }
    inside = old + strlen(root);
    if (chdir("/") < 0)
        return wshd_error_set(err, errno, "chdir / after pivot_root");
    if (umount2(inside, MNT_DETACH) < 0)
        return wshd_error_set(err, errno, "unmount old root %s", inside);
    if (rmdir(inside) < 0)
        return wshd_error_set(err, errno, "remove %s", inside);
    return 0;
}

/* Drop the pipes to the server: it must see end-of-file once the parent has exited. */
static int ns_stdio_to_null(struct wshd_error *err)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return wshd_error_set(err, errno, "open /dev/null");
    for (int i = 0; i < 3; i++)
        if (fd != i && dup2(fd, i) < 0)
            return wshd_error_set(err, errno, "dup /dev/null onto %d", i);
    if (fd > 2 && close(fd) < 0)
        return wshd_error_set(err, errno, "close /dev/null");
    return 0;
}

static int ns_write_pidfile(int run_fd, const char *run_dir, pid_t pid, struct wshd_error *err)
{
    char text[24];
    int len = snprintf(text, sizeof text, "%d\n", pid);
    cleanup_close int fd = openat(run_fd, WSHD_PID_NAME ".tmp",
                                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0)
        return wshd_error_set(err, errno, "create %s/%s.tmp", run_dir, WSHD_PID_NAME);
    if (ns_write_all(fd, text, (size_t)len) < 0)
        return wshd_error_set(err, errno, "write %s/%s.tmp", run_dir, WSHD_PID_NAME);
    if (close(take_fd(&fd)) < 0)
        return wshd_error_set(err, errno, "close %s/%s.tmp", run_dir, WSHD_PID_NAME);
    if (renameat(run_fd, WSHD_PID_NAME ".tmp", run_fd, WSHD_PID_NAME) < 0)
        return wshd_error_set(err, errno, "rename %s/%s.tmp", run_dir, WSHD_PID_NAME);
    return 0;
}

int ns_child_setup(const struct wshd_config *c, pid_t host_pid, struct wshd_error *err)
{
    cleanup_close int run_fd = -1;

    /* Leave the server's session: its terminal and group signals are not the container's. */
    if (setsid() < 0)
        return wshd_error_set(err, errno, "start session");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return wshd_error_set(err, errno, "make every mount private");
    if (ns_bind_root(c->root_dir, err) < 0 || ns_mount_proc(c->root_dir, err) < 0 ||
        ns_mount_dev(c->root_dir, err) < 0)
        return -1;
    for (size_t i = 0; i < c->nbinds; i++)
        if (ns_bind_one(c->root_dir, &c->binds[i], err) < 0)
            return -1;
    if (sethostname(c->hostname, strlen(c->hostname)) < 0)
        return wshd_error_set(err, errno, "set hostname %s", c->hostname);
    /* A host path: after the pivot only this descriptor still reaches it. */
    run_fd = open(c->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (run_fd < 0)
        return wshd_error_set(err, errno, "open %s", c->run_dir);
    if (ns_pivot(c->root_dir, err) < 0 || ns_stdio_to_null(err) < 0)
        return -1;
    return ns_write_pidfile(run_fd, c->run_dir, host_pid, err);
}
