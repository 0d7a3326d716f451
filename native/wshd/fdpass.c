/*
 * fdpass.c: SCM_RIGHTS reception for wshd's socket. The socket is non-blocking; a datagram that
 * does not fit is reported through MSG_TRUNC rather than read in pieces (SOCK_SEQPACKET keeps
 * message boundaries, so the rest of it is gone).
 */
#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void fdpass_close(struct fdpass_fds *fds)
{
    for (size_t i = 0; i < fds->count; i++) {
        /* Descriptors of a refused request: nothing to report if close fails. */
        if (fds->fd[i] >= 0)
            (void)close(fds->fd[i]);
        fds->fd[i] = -1;
    }
    fds->count = 0;
}

static void collect_fds(struct msghdr *msg, struct fdpass_fds *fds, int *flags)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        size_t n;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (fds->count < FDPASS_MAX_FDS) {
                fds->fd[fds->count++] = fd;
            } else {
                (void)close(fd);
                *flags |= MSG_CTRUNC;
            }
        }
    }
}

ssize_t fdpass_recv(int sock, void *buf, size_t cap, struct fdpass_fds *fds, int *flags,
                    struct wshd_error *err)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof control.buf,
    };
    ssize_t n;

    fds->count = 0;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return wshd_error_set(err, errno, "receive from client socket %d", sock);
    *flags = msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
    collect_fds(&msg, fds, flags);
    return n;
}
