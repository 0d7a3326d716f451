/*
 * cleanup.h: GCC cleanup attributes, so that a function's early returns release what it holds
 * (crun, bubblewrap). A variable marked cleanup_close is closed when it goes out of scope unless
 * its value was handed on with take_fd() first.
 */
#ifndef WSHD_CLEANUP_H
#define WSHD_CLEANUP_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_close_fd(int *fd)
{
    int saved = errno;

    /* A close error while unwinding has nobody to report to; the caller's errno is kept. */
    if (*fd >= 0)
        (void)close(*fd);
    errno = saved;
}

static inline void cleanup_free_ptr(void *p)
{
    free(*(void **)p);
}

#define cleanup_close __attribute__((cleanup(cleanup_close_fd)))
#define cleanup_free __attribute__((cleanup(cleanup_free_ptr)))

/* Return *fd and disarm its cleanup: ownership moves to the caller. */
static inline int take_fd(int *fd)
{
    int taken = *fd;

    *fd = -1;
    return taken;
}

#endif
