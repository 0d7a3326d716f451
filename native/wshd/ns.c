/*
 * ns.c: the two halves of start-up around the clone. The launcher (started by the server, host
 * root) has built the root in its own mount namespace (rootfs.c); here it clones the container
 * init into new mount, pid, net, uts, ipc and cgroup namespaces, and a user namespace when
 * --id-map is given. It writes the init's uid_map and gid_map before it prints `pid N`, so the
 * server never sees an init without its ids, then waits for "go" on stdin: meanwhile the server
 * gives the init its veth end, so the init must run nothing before the release. The released
 * init becomes root of its user namespace, enters the root (rootfs.c), drops its stdio and its
 * dumpable flag, and reports "ready" or its error on a pipe. Only then does the launcher write
 * RUNDIR/wshd.pid and print "ready": the init keeps no host path.
 */
#include "cleanup.h"
#include "rootfs.h"
#include "wshd.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS_CLONE_FLAGS                                                                        \
    (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP)
#define NS_READY "ready"
#define NS_REPORT_MAX 320

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

int ns_barrier_open(struct ns_barrier *b, struct wshd_error *err)
{
    if (pipe2(b->release, O_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "create release pipe");
    if (pipe2(b->ready, O_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "create ready pipe");
    return 0;
}

pid_t ns_clone(const struct wshd_config *c, struct wshd_error *err)
{
    struct clone_args args = {
        .flags = NS_CLONE_FLAGS | (c->id_map ? CLONE_NEWUSER : 0),
        .exit_signal = SIGCHLD,
    };
    long pid = syscall(SYS_clone3, &args, sizeof args);

    if (pid < 0)
        return wshd_error_set(err, errno, "clone into new namespaces");
    return (pid_t)pid;
}

/* "0 HOSTBASE COUNT": container ids 0..COUNT-1 are host ids HOSTBASE..; setgroups stays allowed. */
static int ns_write_id_map(pid_t child, const char *file, const struct wshd_config *c,
                           struct wshd_error *err)
{
    char path[64];
    char line[64];
    int len = snprintf(line, sizeof line, "0 %u %u\n", c->id_base, c->id_count);
    cleanup_close int fd = -1;

    snprintf(path, sizeof path, "/proc/%d/%s", child, file);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return wshd_error_set(err, errno, "open %s", path);
    /* The kernel takes a map in one write only. */
    if (write(fd, line, (size_t)len) != len)
        return wshd_error_set(err, errno, "write %s", path);
    if (close(take_fd(&fd)) < 0)
        return wshd_error_set(err, errno, "close %s", path);
    return 0;
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

/* RUNDIR/wshd.pid, written whole (tmp + rename) so a reader never sees half a pid. */
static int ns_write_pidfile(const struct wshd_config *c, pid_t pid, struct wshd_error *err)
{
    char text[24];
    int len = snprintf(text, sizeof text, "%d\n", pid);
    cleanup_close int fd = openat(c->run_fd, WSHD_PID_NAME ".tmp",
                                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);

    if (fd < 0)
        return wshd_error_set(err, errno, "create %s/%s.tmp", c->run_dir, WSHD_PID_NAME);
    if (ns_write_all(fd, text, (size_t)len) < 0)
        return wshd_error_set(err, errno, "write %s/%s.tmp", c->run_dir, WSHD_PID_NAME);
    if (close(take_fd(&fd)) < 0)
        return wshd_error_set(err, errno, "close %s/%s.tmp", c->run_dir, WSHD_PID_NAME);
    if (renameat(c->run_fd, WSHD_PID_NAME ".tmp", c->run_fd, WSHD_PID_NAME) < 0)
        return wshd_error_set(err, errno, "rename %s/%s.tmp", c->run_dir, WSHD_PID_NAME);
    return 0;
}

static int ns_parent_steps(struct ns_barrier *b, pid_t child, const struct wshd_config *c,
                           struct wshd_error *err)
{
    char report[NS_REPORT_MAX];

    /* The child's ends: end-of-file on ready must mean the child closed its copy. */
    if (close(b->release[0]) < 0 || close(b->ready[1]) < 0)
        return wshd_error_set(err, errno, "close the child's ends of the barrier");
    if (c->id_map && (ns_write_id_map(child, "uid_map", c, err) < 0 ||
                      ns_write_id_map(child, "gid_map", c, err) < 0))
        return -1;
    if (dprintf(STDOUT_FILENO, "pid %d\n", child) < 0)
        return wshd_error_set(err, errno, "write pid to stdout");
    if (ns_read_go(err) < 0)
        return -1;
    if (ns_write_all(b->release[1], "g", 1) < 0)
        return wshd_error_set(err, errno, "release container init %d", child);
    if (close(b->release[1]) < 0)
        return wshd_error_set(err, errno, "close release pipe");
    if (ns_read_report(b->ready[0], report, sizeof report, err) < 0 ||
        ns_write_pidfile(c, child, err) < 0)
        return -1;
    if (dprintf(STDOUT_FILENO, NS_READY "\n") < 0)
        return wshd_error_set(err, errno, "write ready to stdout");
    return 0;
}

int ns_parent_run(struct ns_barrier *b, pid_t child, const struct wshd_config *c)
{
    struct wshd_error err = {0};
    char text[NS_REPORT_MAX];

    if (ns_parent_steps(b, child, c, &err) == 0)
        return 0;
    dprintf(STDERR_FILENO, "wshd: %s\n", wshd_error_text(&err, text, sizeof text));
    if (kill(child, SIGKILL) < 0 && errno != ESRCH)
        dprintf(STDERR_FILENO, "wshd: kill container init %d: %s\n", child, strerror(errno));
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        continue;
    for (size_t i = 0; i < 2; i++) {
        const char *name = i == 0 ? WSHD_SOCKET_NAME : WSHD_PID_NAME;

        if (unlinkat(c->run_fd, name, 0) < 0 && errno != ENOENT)
            dprintf(STDERR_FILENO, "wshd: remove %s/%s: %s\n", c->run_dir, name, strerror(errno));
    }
    return 1;
}

int ns_child_wait(struct ns_barrier *b, struct wshd_error *err)
{
    char go;
    ssize_t n;

    if (close(b->release[1]) < 0 || close(b->ready[0]) < 0)
        return wshd_error_set(err, errno, "close the parent's ends of the barrier");
    n = ns_read_full(b->release[0], &go, 1);
    if (n < 0)
        return wshd_error_set(err, errno, "wait for release");
    if (n != 1)
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

/* Born with host root's ids, unmapped in its user namespace: become its root (the map's 0). */
static int ns_become_root(struct wshd_error *err)
{
    if (setgroups(0, NULL) < 0)
        return wshd_error_set(err, errno, "drop supplementary groups");
    if (setresgid(0, 0, 0) < 0)
        return wshd_error_set(err, errno, "setresgid 0 in the user namespace");
    if (setresuid(0, 0, 0) < 0)
        return wshd_error_set(err, errno, "setresuid 0 in the user namespace");
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

int ns_child_setup(const struct wshd_config *c, struct wshd_error *err)
{
    if (c->id_map && ns_become_root(err) < 0)
        return -1;
    /* Leave the server's session: its terminal and group signals are not the container's. */
    if (setsid() < 0)
        return wshd_error_set(err, errno, "start session");
    if (rootfs_enter(c->hostname, err) < 0 || ns_stdio_to_null(err) < 0)
        return -1;
    /* Container root must not read the init's memory, environment or descriptors in /proc/1. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return wshd_error_set(err, errno, "clear the dumpable flag");
    return 0;
}
