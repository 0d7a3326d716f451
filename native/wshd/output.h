/*
 * output.h: a job's stdout and stderr when its SPAWN carried OUTPUT_LIMIT. The job writes into
 * two pipes; wshd holds their read ends in its epoll set and copies each into the file the
 * client sent, counting stdout and stderr together. The chunk that takes the count past the limit
 * is the last one copied: then every descriptor of the output is closed (writers get EPIPE) and
 * the caller kills the job's group. The pipes outlive the job's main process while any other
 * process holds a write end, so whatever writes them and whenever, at most one chunk lands past
 * the limit.
 */
#ifndef WSHD_OUTPUT_H
#define WSHD_OUTPUT_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OUTPUT_STREAMS 2             /* stdout, stderr */
#define OUTPUT_CHUNK (64 * 1024)      /* the most that lands past the limit */
#define OUTPUT_EVENT_BUDGET (1 << 20) /* per readiness event, so one job cannot starve the rest */
#define OUTPUT_PIPE_SIZE (1 << 20)    /* a pipe that filled up grows to this (pipe-max-size) */
/* Set in an epoll event's data.u64 (the pipe's fd is the low 32 bits): an output pipe. */
#define OUTPUT_EPOLL_TAG ((uint64_t)1 << 32)

struct output_stream {
    int pipe_fd; /* read end, non-blocking; -1 once closed */
    int file_fd; /* the client's file; -1 once closed */
    bool no_splice; /* the file cannot take a splice: read and write instead */
    bool grown;     /* the pipe was sized up to OUTPUT_PIPE_SIZE (see output.c) */
};

struct output {
    uint64_t limit;
    uint64_t copied; /* stdout + stderr so far */
    struct output_stream streams[OUTPUT_STREAMS];
};

enum output_result {
    OUTPUT_AGAIN,  /* the pipe is empty for now, or the budget is spent */
    OUTPUT_CLOSED, /* this stream ended (end-of-file or a failed write) */
    OUTPUT_LIMIT,  /* the limit was passed: every stream is closed now */
};

/* Nothing open: a job without OUTPUT_LIMIT, whose fds went to it directly. */
void output_none(struct output *o);

/*
 * Make the two pipes and watch their read ends in epoll_fd. On success o takes files[0] and
 * files[1] (set to -1) and write_ends[] get the job's ends, which the caller closes once the job
 * holds them. On failure nothing is left open and files[] are untouched.
 */
int output_open(struct output *o, uint64_t limit, int files[OUTPUT_STREAMS], int epoll_fd,
                int write_ends[OUTPUT_STREAMS], struct wshd_error *err);

/* Copy up to budget bytes of stream (0 stdout, 1 stderr) without blocking. */
enum output_result output_copy(struct output *o, int stream, uint64_t budget);

/* Bytes waiting in stream's pipe now (0 if closed or unknown). */
uint64_t output_pending(const struct output *o, int stream);

/* The stream whose pipe is fd, or -1. */
int output_stream_of(const struct output *o, int fd);

bool output_is_open(const struct output *o);

/* Close everything still open; closing a pipe also takes it out of the epoll set. */
void output_close(struct output *o);

#endif
