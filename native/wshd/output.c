/*
 * output.c: copy a job's stdout and stderr from its pipes into the client's files, under the
 * job's OUTPUT_LIMIT (stdout and stderr counted together). Copies are splice(2) calls of at most
 * OUTPUT_CHUNK bytes from the non-blocking read end into the file: no user-space copy, and an
 * idle job costs nothing (its pipes wait in the epoll set). splice refuses an O_APPEND file (the
 * server opens them so): the first refusal clears O_APPEND on that file and moves its offset to
 * the end; a file that cannot take a splice at all is copied with read and write instead.
 * Ordering: the count is checked after each chunk, so the chunk that passes the limit is
 * written whole and nothing after it; then everything is closed at once, so writers holding the
 * other pipe cannot add either. What to kill is the caller's business (job.c).
 */
#include "output.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char *const output_names[OUTPUT_STREAMS] = {"stdout", "stderr"};

void output_none(struct output *o)
{
    o->limit = 0;
    o->copied = 0;
    for (int i = 0; i < OUTPUT_STREAMS; i++) {
        o->streams[i].pipe_fd = -1;
        o->streams[i].file_fd = -1;
        o->streams[i].no_splice = false;
        o->streams[i].grown = false;
    }
}

/* Make stream i's pipe, keep its read end (non-blocking, watched); *write_end gets the other. */
static int output_open_pipe(struct output *o, int i, int epoll_fd, int *write_end,
                            struct wshd_error *err)
{
    struct epoll_event ev = {.events = EPOLLIN};
    int ends[2];

    if (pipe2(ends, O_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "make the %s pipe", output_names[i]);
    o->streams[i].pipe_fd = ends[0];
    *write_end = ends[1];
    if (fcntl(ends[0], F_SETFL, O_NONBLOCK) < 0)
        return wshd_error_set(err, errno, "make the %s pipe non-blocking", output_names[i]);
    ev.data.u64 = OUTPUT_EPOLL_TAG | (uint32_t)ends[0];
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, ends[0], &ev) < 0)
        return wshd_error_set(err, errno, "watch the %s pipe", output_names[i]);
    return 0;
}

int output_open(struct output *o, uint64_t limit, int files[OUTPUT_STREAMS], int epoll_fd,
                int write_ends[OUTPUT_STREAMS], struct wshd_error *err)
{
    output_none(o);
    o->limit = limit;
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        write_ends[i] = -1;
    for (int i = 0; i < OUTPUT_STREAMS; i++) {
        if (output_open_pipe(o, i, epoll_fd, &write_ends[i], err) < 0) {
            output_close(o);
            for (int k = 0; k < OUTPUT_STREAMS; k++)
                cleanup_close_fd(&write_ends[k]);
            return -1;
        }
    }
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        o->streams[i].file_fd = take_fd(&files[i]);
    return 0;
}

/* 1 if fd had O_APPEND (now cleared, offset at the end), 0 if not, -1 on failure. */
static int output_unappend(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0)
        return -1;
    if ((flags & O_APPEND) == 0)
        return 0;
    if (fcntl(fd, F_SETFL, flags & ~O_APPEND) < 0)
        return -1;
    if (lseek(fd, 0, SEEK_END) < 0 && errno != ESPIPE)
        return -1;
    return 1;
}

/* The fallback for files without splice: one read, then the whole of it written. */
static ssize_t output_read_write(struct output_stream *s, size_t len)
{
    char buf[OUTPUT_CHUNK];
    ssize_t n;

    do
        n = read(s->pipe_fd, buf, len < sizeof buf ? len : sizeof buf);
    while (n < 0 && errno == EINTR);
    for (ssize_t done = 0; done < n;) {
        ssize_t w = write(s->file_fd, buf + done, (size_t)(n - done));

        if (w < 0 && errno != EINTR)
            return -1;
        done += w > 0 ? w : 0;
    }
    return n;
}

/* Move up to len bytes: >0 moved, 0 end-of-file, -1 with errno (EAGAIN: pipe empty). */
static ssize_t output_move(struct output_stream *s, size_t len)
{
    ssize_t n;

    while (!s->no_splice) {
        n = splice(s->pipe_fd, NULL, s->file_fd, NULL, len, SPLICE_F_NONBLOCK);
        if (n >= 0 || (errno != EINTR && errno != EINVAL))
            return n;
        if (errno == EINVAL && output_unappend(s->file_fd) != 1)
            s->no_splice = true;
    }
    return output_read_write(s, len);
}

static void output_close_stream(struct output_stream *s)
{
    /* Close errors: the descriptors are released either way, and nobody waits for a reply. */
    cleanup_close_fd(&s->pipe_fd);
    cleanup_close_fd(&s->file_fd);
    s->pipe_fd = -1;
    s->file_fd = -1;
}

/*
 * A pipe starts at the kernel's default (64 KiB): a job that fills it is a heavy writer, and a
 * bigger pipe lets it write on while wshd copies (1 GiB of dd: ~1.3 s instead of ~2-3 s on a
 * loaded 2-CPU VM). Only such pipes grow, since the kernel charges pipe pages to the container's
 * user and shrinks its new pipes past pipe-user-pages-soft. A refusal keeps the default size.
 */
static void output_grow(struct output_stream *s)
{
    s->grown = true;
    if (fcntl(s->pipe_fd, F_SETPIPE_SZ, OUTPUT_PIPE_SIZE) < 0)
        return;
}

/*
 * The length of the next move: within budget, and never more than OUTPUT_CHUNK past the
 * limit, so that the file ends at most one chunk past it (copied <= limit while open).
 */
static size_t output_next_len(const struct output *o, uint64_t budget)
{
    uint64_t room = o->limit - o->copied + OUTPUT_CHUNK;

    return (size_t)(budget < room ? budget : room);
}

enum output_result output_copy(struct output *o, int stream, uint64_t budget)
{
    struct output_stream *s = &o->streams[stream];

    while (s->pipe_fd >= 0 && budget > 0) {
        ssize_t n = output_move(s, output_next_len(o, budget));

        if (n < 0 && errno == EAGAIN)
            return OUTPUT_AGAIN;
        /* End-of-file, or the file refused the bytes (full disk): this stream is over. */
        if (n <= 0) {
            output_close_stream(s);
            return OUTPUT_CLOSED;
        }
        o->copied += (uint64_t)n;
        budget -= (uint64_t)n;
        if (o->copied > o->limit) {
            output_close(o);
            return OUTPUT_LIMIT;
        }
        if (n >= OUTPUT_CHUNK && !s->grown)
            output_grow(s);
    }
    return s->pipe_fd >= 0 ? OUTPUT_AGAIN : OUTPUT_CLOSED;
}

uint64_t output_pending(const struct output *o, int stream)
{
    int n = 0;

    if (o->streams[stream].pipe_fd < 0 || ioctl(o->streams[stream].pipe_fd, FIONREAD, &n) < 0)
        return 0;
    return n > 0 ? (uint64_t)n : 0;
}

int output_stream_of(const struct output *o, int fd)
{
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        if (o->streams[i].pipe_fd == fd)
            return i;
    return -1;
}

bool output_is_open(const struct output *o)
{
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        if (o->streams[i].pipe_fd >= 0)
            return true;
    return false;
}

void output_close(struct output *o)
{
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        output_close_stream(&o->streams[i]);
}
