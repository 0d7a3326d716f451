/*
 * sandbox.h: what confines a job beyond its namespaces: the capabilities it keeps, the seccomp
 * filter it runs under, and the hard rlimits the launcher raises so that a job in a user
 * namespace (which can lower a hard limit but never raise one) can still get any limit.
 */
#ifndef WSHD_SANDBOX_H
#define WSHD_SANDBOX_H

#include "error.h"

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One pattern of the personality rule: an argument x matches when (x & mask) == value. */
struct sandbox_pattern {
    uint64_t mask;
    uint64_t value;
};

#define SANDBOX_MAX_PATTERNS 64

struct sandbox {
    struct sock_fprog filter; /* built once at start-up; the init loads it, jobs inherit it */
    int last_cap;             /* highest capability number the running kernel knows */
};

/*
 * Build the seccomp filter (libseccomp, exported to BPF in memory) and probe the highest
 * capability. Called once, before the socket is served; fails naming what failed.
 */
int sandbox_init(struct sandbox *s, struct wshd_error *err);

/* Raise this process's hard rlimits as far as the kernel allows (launcher, host root). */
int sandbox_raise_hard_limits(struct wshd_error *err);

/*
 * In a job's child, before setuid: shrink the bounding set (to Docker's default set for root,
 * to nothing otherwise), set permitted = effective = that set, clear inheritable and ambient.
 * Only system calls: it runs in the vfork-style child.
 */
int sandbox_drop_caps(const struct sandbox *s, bool root, struct wshd_error *err);

/*
 * Put the calling process (the init, set up, before it serves) under the filter; every job it
 * spawns inherits it. Needs CAP_SYS_ADMIN in the process's user namespace or no_new_privs.
 */
int sandbox_load_filter(const struct sandbox *s, struct wshd_error *err);

/*
 * The personality arguments the filter refuses, as patterns over the low 32 bits (the kernel
 * reads an unsigned int): every x below 2^32 matches some pattern unless x is one of the
 * allowed personas. Pure; tests/test_sandbox.c checks it. Returns the number of patterns.
 */
size_t sandbox_persona_patterns(struct sandbox_pattern *out, size_t cap);

#endif
