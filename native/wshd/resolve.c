/*
 * resolve.c: find and create mount targets inside the container root. Every lookup is
 * openat2(root_fd, path) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: a symlink, absolute or
 * "../..", is resolved as if root_fd were "/", so the answer is always inside the root. A
 * missing name is created with mkdirat/openat relative to the descriptor of its parent, which
 * was itself resolved that way, and then looked up again from the root: the object mounted on
 * is the one that was checked. A dangling symlink on the way is read and its target walked
 * instead, still inside the root (so /evil -> /tmp/x makes <root>/tmp/x, never /tmp/x).
 * Paths are only ever joined inside the root, never to its host path.
 */
#include "resolve.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RESOLVE_INSIDE (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
#define RESOLVE_MAX_LINKS 40 /* as the kernel's own limit on symlinks in one lookup */

static int resolve_openat2(int dir_fd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = resolve};

    return (int)syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
}

const char *resolve_fd_path(char *buf, int fd)
{
    snprintf(buf, RESOLVE_FD_PATH_MAX, "/proc/self/fd/%d", fd);
    return buf;
}

int resolve_open(int root_fd, const char *path, struct wshd_error *err)
{
    int fd = resolve_openat2(root_fd, path, O_PATH, RESOLVE_INSIDE);

    if (fd < 0)
        return wshd_error_set(err, errno, "open %s in the root", path);
    return fd;
}

int resolve_open_source(const char *path, struct wshd_error *err)
{
    int fd = resolve_openat2(AT_FDCWD, path, O_PATH, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);

    if (fd < 0)
        return wshd_error_set(err, errno, "open bind source %s", path);
    return fd;
}

/* The walk of one path: buf holds it, [start, end) is the name at hand, parent its directory. */
struct resolve_walk {
    int root_fd;
    bool dir; /* the last name is a directory (else a file) */
    char buf[PATH_MAX];
    size_t start;
    size_t end;
    int parent;
    int links; /* dangling symlinks followed so far */
};

static bool resolve_is_last(const struct resolve_walk *w)
{
    const char *rest = w->buf + w->end;

    while (*rest == '/')
        rest++;
    return *rest == '\0';
}

/* Make the missing name below its parent: a directory, or the file a file bind needs. */
static int resolve_make(const struct resolve_walk *w, bool as_dir, const char *prefix,
                        struct wshd_error *err)
{
    const char *name = w->buf + w->start;
    int fd;

    /* EEXIST: made meanwhile, or a dangling symlink, which the caller then follows. */
    if (as_dir) {
        if (mkdirat(w->parent, name, 0755) < 0 && errno != EEXIST)
            return wshd_error_set(err, errno, "mkdir %s in the root", prefix);
        return 0;
    }
    /* O_EXCL | O_NOFOLLOW: never create through a symlink. */
    fd = openat(w->parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
        return wshd_error_set(err, errno, "create %s in the root", prefix);
    if (fd >= 0)
        (void)close(fd);
    return 0;
}

/*
 * The name is a symlink whose target (inside the root) does not exist: go on with the target
 * in its place, relative to the root if absolute, else to the symlink's directory, so that
 * what is made lands where the container will see it, inside the root.
 */
static int resolve_follow(struct resolve_walk *w, struct wshd_error *err)
{
    char name[NAME_MAX + 1];
    char target[PATH_MAX];
    char next[PATH_MAX];
    int prefix = (int)w->end;
    ssize_t n;
    int len;

    snprintf(name, sizeof name, "%.*s", (int)(w->end - w->start), w->buf + w->start);
    n = readlinkat(w->parent, name, target, sizeof target - 1);
    if (n < 0)
        return wshd_error_set(err, ENOENT, "open %.*s in the root", prefix, w->buf);
    target[n] = '\0';
    if (++w->links > RESOLVE_MAX_LINKS)
        return wshd_error_set(err, ELOOP, "open %.*s in the root", prefix, w->buf);
    len = snprintf(next, sizeof next, "%.*s%s%s", target[0] == '/' ? 0 : (int)w->start, w->buf,
                   target, w->buf + w->end);
    if (len < 0 || (size_t)len >= sizeof next)
        return wshd_error_set(err, ENAMETOOLONG, "open %.*s in the root", prefix, w->buf);
    memcpy(w->buf, next, (size_t)len + 1);
    w->end = 0;
    return 0;
}

/* buf, cut after the name, resolved or made: -1 with err, -3 for a dangling symlink. */
static int resolve_lookup(struct resolve_walk *w, bool as_dir, struct wshd_error *err)
{
    int flags = O_PATH | (as_dir ? O_DIRECTORY : 0);
    int fd = resolve_openat2(w->root_fd, w->buf, flags, RESOLVE_INSIDE);

    if (fd >= 0)
        return fd;
    if (errno != ENOENT)
        return wshd_error_set(err, errno, "open %s in the root", w->buf);
    if (resolve_make(w, as_dir, w->buf, err) < 0)
        return -1;
    fd = resolve_openat2(w->root_fd, w->buf, flags, RESOLVE_INSIDE);
    if (fd < 0 && errno == ENOENT)
        return -3;
    if (fd < 0)
        return wshd_error_set(err, errno, "open %s in the root", w->buf);
    return fd;
}

/* The name at hand, resolved (made if missing); -1 with err, or -2 when the walk restarts. */
static int resolve_name(struct resolve_walk *w, struct wshd_error *err)
{
    bool as_dir = w->dir || !resolve_is_last(w);
    char saved = w->buf[w->end];
    int fd;

    w->buf[w->end] = '\0';
    fd = resolve_lookup(w, as_dir, err);
    w->buf[w->end] = saved;
    if (fd == -3)
        return resolve_follow(w, err) == 0 ? -2 : -1;
    return fd;
}

static int resolve_walk(struct resolve_walk *w, struct wshd_error *err)
{
    for (;;) {
        int fd;

        if (w->end == 0) {
            if (w->parent >= 0)
                (void)close(w->parent);
            w->parent = resolve_openat2(w->root_fd, "/", O_PATH | O_DIRECTORY, RESOLVE_INSIDE);
            if (w->parent < 0)
                return wshd_error_set(err, errno, "open the root");
        }
        w->start = w->end;
        while (w->buf[w->start] == '/')
            w->start++;
        if (w->buf[w->start] == '\0')
            return w->dir ? take_fd(&w->parent) : wshd_error_set(err, EISDIR, "open %s", w->buf);
        w->end = w->start;
        while (w->buf[w->end] != '\0' && w->buf[w->end] != '/')
            w->end++;
        fd = resolve_name(w, err);
        if (fd == -1)
            return -1;
        if (fd == -2)
            continue;
        (void)close(w->parent);
        w->parent = fd;
        if (resolve_is_last(w) && !w->dir)
            return take_fd(&w->parent);
    }
}

int resolve_target(int root_fd, const char *path, bool dir, struct wshd_error *err)
{
    struct resolve_walk w = {.root_fd = root_fd, .dir = dir, .parent = -1};
    size_t len = strlen(path);
    int fd;

    if (len >= sizeof w.buf)
        return wshd_error_set(err, ENAMETOOLONG, "open %s in the root", path);
    memcpy(w.buf, path, len + 1);
    fd = resolve_walk(&w, err);
    if (w.parent >= 0)
        (void)close(w.parent);
    return fd;
}

int resolve_plain_dir(int root_fd, const char *name, mode_t mode, struct wshd_error *err)
{
    int fd;

    if (mkdirat(root_fd, name, mode) < 0 && errno != EEXIST)
        return wshd_error_set(err, errno, "mkdir /%s in the root", name);
    fd = resolve_openat2(root_fd, name, O_PATH | O_DIRECTORY,
                         RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS);
    if (fd < 0 && errno == ELOOP)
        return wshd_error_set(err, errno, "/%s in the root must be a directory, not a symlink",
                              name);
    if (fd < 0)
        return wshd_error_set(err, errno, "open /%s in the root", name);
    return fd;
}
