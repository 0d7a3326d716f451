/*
 * error.c: fill, wrap and format struct wshd_error. Messages are truncated to fit the object;
 * a truncated message is still a message, so truncation is not an error here.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int wshd_error_set(struct wshd_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;

    err->errnum = errnum;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int wshd_error_wrap(struct wshd_error *err, const char *fmt, ...)
{
    char context[sizeof err->msg];
    char inner[sizeof err->msg];
    va_list ap;

    memcpy(inner, err->msg, sizeof inner);
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof err->msg, "%.120s: %.130s", context, inner);
    return -1;
}

const char *wshd_error_text(const struct wshd_error *err, char *buf, size_t len)
{
    if (err->errnum != 0)
        snprintf(buf, len, "%s: %s", err->msg, strerror(err->errnum));
    else
        snprintf(buf, len, "%s", err->msg);
    return buf;
}
