/*
 * error.h: the error object every fallible function fills (crun's style). The failing call sets
 * errno plus "<action> <object>"; callers may wrap it with their own context; only the top level
 * turns it into text (for a reply, or for stderr before the socket is served).
 */
#ifndef WSHD_ERROR_H
#define WSHD_ERROR_H

#include <stddef.h>

struct wshd_error {
    int errnum;    /* errno of the failing call, 0 for a failure that has none */
    char msg[256]; /* "<action> <object>", e.g. "chdir /home/vcap" */
};

/* Fill err and return -1, so that `return wshd_error_set(...)` ends a failing function. */
int wshd_error_set(struct wshd_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix err->msg with "<context>: " and return -1. */
int wshd_error_wrap(struct wshd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Format err as "<msg>: <strerror>" (or just "<msg>" when errnum is 0) into buf; return buf. */
const char *wshd_error_text(const struct wshd_error *err, char *buf, size_t len);

#endif
