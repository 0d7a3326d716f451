/*
 * reap.h: child exits. wshd is pid 1 of its pid namespace, so every orphan in the container
 * becomes its child; all are reaped, but only jobs get a status written and an EXIT sent.
 */
#ifndef WSHD_REAP_H
#define WSHD_REAP_H

#include "error.h"

#include <stdbool.h>

struct wshd;

/* Block SIGCHLD and SIGTERM and return a non-blocking signalfd that delivers them. */
int reap_signalfd_open(struct wshd_error *err);

/* Drain the signalfd; *term is set if a SIGTERM was among the signals. */
int reap_drain(int signal_fd, bool *term, struct wshd_error *err);

/* Reap every exited child, finishing the jobs among them. Returns true if children remain. */
bool reap_children(struct wshd *w);

#endif
