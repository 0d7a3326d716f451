/*
 * rootfs.h: building the container's root. rootfs_build runs in the launcher before the clone
 * (host root, its own mount namespace) and leaves its cwd at the root; rootfs_enter runs in the
 * released init and ends with the init's / being the container root.
 */
#ifndef WSHD_ROOTFS_H
#define WSHD_ROOTFS_H

#include "error.h"

struct wshd_config;

/* unshare the mount namespace, make mounts private, bind the root, /dev and the --bind mounts. */
int rootfs_build(const struct wshd_config *c, struct wshd_error *err);

/* In the init: mount and mask proc, set the hostname, pivot_root into the cwd. */
int rootfs_enter(const char *hostname, struct wshd_error *err);

#endif
