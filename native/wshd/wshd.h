/*
 * wshd.h: the daemon's state (struct wshd, made once in main and passed down; there are no
 * mutable globals), its start-up configuration, and the declarations of ns.c and main.c, which
 * have no header of their own.
 */
#ifndef WSHD_H
#define WSHD_H

#include "error.h"
#include "job.h"
#include "proto.h"
#include "sandbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WSHD_MAX_BINDS 64
#define WSHD_MAX_CGROUPS 32
#define WSHD_MAX_HOSTNAME 64
#define WSHD_SOCKET_NAME "wshd.sock"
#define WSHD_PID_NAME "wshd.pid"

struct wshd_bind {
    char *src; /* absolute host path without symlinks (the server resolved it) */
    char *dst; /* absolute path inside the container, no ".." */
    bool read_only;
};

/* The command line, validated before anything is created. */
struct wshd_config {
    char *run_dir;  /* absolute */
    char *root_dir; /* absolute, a directory, not "/" */
    const char *hostname;
    struct wshd_bind binds[WSHD_MAX_BINDS];
    size_t nbinds;
    const char *cgroup_tasks[WSHD_MAX_CGROUPS]; /* `tasks` files the init is born in */
    size_t ncgroups;
    bool id_map;       /* --id-map given: the init gets a user namespace */
    uint32_t id_base;  /* host id of container id 0; never 0 */
    uint32_t id_count; /* container ids 0..id_count-1 are mapped */
    int mount_seed_fd; /* --mount-seed-fd: the namespace to build the root in, or -1 */
    int run_fd;        /* run_dir, opened before the launcher leaves the host's mounts */
};

/* Pipes between the start-up halves: release (launcher -> init), ready (init -> launcher). */
struct ns_barrier {
    int release[2];
    int ready[2];
};

struct wshd {
    struct wshd_config config;
    int listen_fd;
    int epoll_fd;
    int signal_fd;
    bool accept_paused; /* out of descriptors: stop accepting until a client leaves */
    struct job_table jobs;
    struct sandbox sandbox;        /* the seccomp filter and the capability range */
    struct proto_request *request; /* the request being handled */
    uint8_t *rx;                   /* its datagram */
};

/* ns.c */
int ns_barrier_open(struct ns_barrier *b, struct wshd_error *err);
pid_t ns_clone(const struct wshd_config *c, struct wshd_error *err);
int ns_parent_run(struct ns_barrier *b, pid_t child, const struct wshd_config *c);
int ns_child_wait(struct ns_barrier *b, struct wshd_error *err);
int ns_child_setup(const struct wshd_config *c, struct wshd_error *err);
int ns_child_report(struct ns_barrier *b, const struct wshd_error *err);

/* main.c: send one datagram to a client; failures only lose that message (see main.c). */
void wshd_send(int fd, const struct proto_writer *msg);

#endif
