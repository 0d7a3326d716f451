/*
 * resolve.h: paths inside the container root, never followed out of it. The launcher resolves
 * every mount target with these before the clone, as host root, so a rootfs that holds a
 * symlink such as /evil -> /tmp/host-dir (or -> ../../..) cannot make it create or mount
 * anything outside the root.
 */
#ifndef WSHD_RESOLVE_H
#define WSHD_RESOLVE_H

#include "error.h"

#include <stdbool.h>
#include <sys/types.h>

/* Room for "/proc/self/fd/" and an int: the path the mount calls are given for a descriptor. */
#define RESOLVE_FD_PATH_MAX 32

/* An O_PATH descriptor of path (absolute, inside root_fd), or -1 with err; creates nothing. */
int resolve_open(int root_fd, const char *path, struct wshd_error *err);

/*
 * A bind source on the host, O_PATH, refusing any symlink on the way (ELOOP): the server
 * checked the source's resolved path against its allowed prefixes and passes that path, so a
 * symlink found now was planted since the check (a host user swapping a directory).
 */
int resolve_open_source(const char *path, struct wshd_error *err);

/*
 * An O_PATH descriptor of path inside root_fd, a directory if dir, else a file, made where
 * missing: each missing name is created (directories 0755, the file empty, 0644) below its
 * already-resolved parent, and a dangling symlink on the way is followed inside the root.
 */
int resolve_target(int root_fd, const char *path, bool dir, struct wshd_error *err);

/* A directory directly below the root, made if missing, that must not be a symlink. */
int resolve_plain_dir(int root_fd, const char *name, mode_t mode, struct wshd_error *err);

/* "/proc/self/fd/N" into buf (RESOLVE_FD_PATH_MAX bytes): how a mount call names fd. */
const char *resolve_fd_path(char *buf, int fd);

#endif
