/*
 * fdpass.h: receive one datagram together with the descriptors passed along with it
 * (SCM_RIGHTS). Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC) and belong to the
 * caller, who hands the ones it keeps on and lets fdpass_close() close the rest.
 */
#ifndef WSHD_FDPASS_H
#define WSHD_FDPASS_H

#include "error.h"

#include <stddef.h>
#include <sys/types.h>

#define FDPASS_MAX_FDS 8

struct fdpass_fds {
    int fd[FDPASS_MAX_FDS]; /* -1 once a slot's descriptor was taken or closed */
    size_t count;
};

/* Close every descriptor still held in fds (slots set to -1 are skipped). */
void fdpass_close(struct fdpass_fds *fds);

#define cleanup_fds __attribute__((cleanup(fdpass_close)))

/*
 * Receive one datagram into buf. Returns its length (0 = the peer closed), or -1 with err set.
 * *flags gets the message's MSG_TRUNC (datagram longer than cap) and MSG_CTRUNC (more
 * descriptors than FDPASS_MAX_FDS; the extra ones were closed) bits.
 */
ssize_t fdpass_recv(int sock, void *buf, size_t cap, struct fdpass_fds *fds, int *flags,
                    struct wshd_error *err);

#endif
