/*
 * rootfs.h: building the container's root. rootfs_build runs in the launcher before the clone
 * (host root, its own mount namespace) and leaves its cwd at the root; rootfs_enter runs in the
 * released init and ends with the init's / being the container root.
 */
#ifndef WSHD_ROOTFS_H
#define WSHD_ROOTFS_H

#include "error.h"

struct wshd_config;

/* Where the root is attached in a copy of the mount seed. */
#define ROOTFS_SEED_ROOT "/root"

/* Copy the root and bind sources, enter a private copy of the seed (or of the current mount
 * namespace), attach the root there, mount /dev and the --bind mounts; cwd ends at the root. */
int rootfs_build(const struct wshd_config *c, struct wshd_error *err);

/* Turn this process's mount namespace into a seed: a tmpfs (mounted on `dir` first) as its /,
 * with /proc and an empty ROOTFS_SEED_ROOT, and nothing else of the host. */
int rootfs_make_seed(const char *dir, struct wshd_error *err);

/* In the init: mount and mask proc, set the hostname, pivot_root into the cwd. */
int rootfs_enter(const char *hostname, struct wshd_error *err);

#endif
