/*
 * job.h: jobs, the processes wshd spawns for clients. job_spawn turns a validated SPAWN into a
 * running process (or an error: exec failure is an error, never a job); the job table tracks
 * live jobs with their status descriptor and the connections waiting for their exit, and the
 * output wshd copies for them (output.c). A job whose main process was reaped stays in the table,
 * marked reaped, while its output pipes are open (a background process still writes them); WAIT
 * and SIGNAL do not see it.
 */
#ifndef WSHD_JOB_H
#define WSHD_JOB_H

#include "error.h"
#include "output.h"
#include "proto.h"
#include "sandbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JOB_MAX_WAITERS 8
#define JOB_MAX_JOBS 65536
/* PATH for a bare command name when the job's environment has none. */
#define JOB_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct job {
    pid_t pid;                      /* in the container's pid namespace; its group and session */
    bool reaped;                    /* main process gone; kept only for its open output */
    int status_fd;                  /* gets "exit N\n" or "signal N\n" when reaped */
    int waiters[JOB_MAX_WAITERS];   /* client sockets to send EXIT to */
    size_t nwaiters;
    struct output out;              /* copied by wshd (OUTPUT_LIMIT), or nothing open */
};

struct job_table {
    struct job *jobs;
    size_t len;
    size_t cap;
};

/*
 * Start plan (a vfork-style clone, then execve) with stdio[0..2] as the job's stdin, stdout and
 * stderr, confined by sandbox (capabilities, no_new_privs; the seccomp filter is inherited
 * from wshd). Returns 0 with *pid once execve succeeded; -1 with err ("<action> <object>") if
 * any step up to execve failed.
 */
int job_spawn(const struct proto_spawn *plan, const int stdio[3], const struct sandbox *sandbox,
              pid_t *pid, struct wshd_error *err);

/* Make room for one more job, so that adding a job that is already running cannot fail. */
int job_table_reserve(struct job_table *t, struct wshd_error *err);
/* Add a job; job_table_reserve must have succeeded since the last add. Takes status_fd and out. */
struct job *job_table_add(struct job_table *t, pid_t pid, int status_fd, const struct output *out);
/* The job whose main process pid is live (not reaped), or NULL. */
struct job *job_table_find(struct job_table *t, pid_t pid);
/* The job one of whose output pipes is fd (*stream: which one), or NULL. */
struct job *job_table_find_output(struct job_table *t, int fd, int *stream);
/*
 * Copy up to budget bytes of j's stream; if that passes the job's limit, kill its process group.
 * The caller removes a reaped job whose output is then closed.
 */
void job_copy_output(struct job_table *t, struct job *j, int stream, uint64_t budget);
/* Copy what j's pipes hold right now (at its reap, before its status and EXIT). */
void job_drain_output(struct job_table *t, struct job *j);
/* Forget j (its status_fd must already be closed); pointers into the table become invalid. */
void job_table_remove(struct job_table *t, struct job *j);
/* Add client fd to j's waiters (once); fails when JOB_MAX_WAITERS are waiting. */
int job_add_waiter(struct job *j, int fd, struct wshd_error *err);
/* A client left: drop its socket from every job, so a reused fd number gets nothing. */
void job_table_forget_waiter(struct job_table *t, int fd);

#endif
