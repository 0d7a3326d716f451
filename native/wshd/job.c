/*
 * job.c: spawn one job and keep the table of live jobs. The request arrives validated (proto.c),
 * so the forked child only applies it: new session, stdio (stdin made the controlling terminal
 * when the SPAWN says TTY), every other descriptor closed at exec, rlimits (while still root;
 * the launcher raised the hard limits, see sandbox.c), groups, gid, capabilities (bounding set
 * first: that needs CAP_SETPCAP, which setuid takes away), uid, no_new_privs, cwd (after setuid,
 * so it is checked with the job's rights), execve. The seccomp filter is already in force: the
 * child inherits it from wshd (see sandbox.c), and nothing above needs a call it refuses. The
 * child shares wshd's memory until execve (see job_spawn) and reports a failure in it. The table
 * also holds each job's copied output (output.c): a job whose output passes its limit has its
 * process group killed here, and a reaped job stays, marked reaped, while its pipes are open.
 */
#include "job.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static int job_reset_signals(struct wshd_error *err)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;

    /* wshd blocks SIGCHLD/SIGTERM for its signalfd and ignores SIGPIPE; jobs must not inherit. */
    if (sigemptyset(&none) < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        return wshd_error_set(err, errno, "unblock signals");
    if (sigemptyset(&dfl.sa_mask) < 0 || sigaction(SIGPIPE, &dfl, NULL) < 0)
        return wshd_error_set(err, errno, "reset SIGPIPE");
    return 0;
}

static int job_apply_rlimits(const struct proto_spawn *plan, struct wshd_error *err)
{
    for (size_t i = 0; i < plan->nrlimits; i++) {
        const struct proto_rlimit *r = &plan->rlimits[i];
        struct rlimit rl = {
            .rlim_cur = r->soft == PROTO_RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)r->soft,
            .rlim_max = r->hard == PROTO_RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)r->hard,
        };

        if (setrlimit((__rlimit_resource_t)r->resource, &rl) < 0)
            return wshd_error_set(err, errno, "set rlimit %u to %llu:%llu", r->resource,
                                  (unsigned long long)r->soft, (unsigned long long)r->hard);
    }
    return 0;
}

/* Everything between fork and execve. stdio fds are >= 3: wshd keeps 0-2 open on /dev/null. */
static int job_child_prepare(const struct proto_spawn *plan, const int stdio[3],
                             const struct sandbox *sandbox, struct wshd_error *err)
{
    if (job_reset_signals(err) < 0)
        return -1;
    if (setsid() < 0)
        return wshd_error_set(err, errno, "start session");
    for (int i = 0; i < 3; i++)
        if (dup2(stdio[i], i) < 0)
            return wshd_error_set(err, errno, "dup descriptor %d onto %d", stdio[i], i);
    /* The session is new and has no terminal yet: stdin becomes its controlling terminal, so
     * the job's group is the foreground one (job control, SIGINT, SIGWINCH, /dev/tty). */
    if (plan->tty && ioctl(0, TIOCSCTTY, 0) < 0)
        return wshd_error_set(err, errno, "make stdin the controlling terminal");
    /* The child has its own descriptor table: wshd's sockets close in it at execve. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "mark descriptors close-on-exec");
    if (job_apply_rlimits(plan, err) < 0)
        return -1;
    if (setgroups(0, NULL) < 0)
        return wshd_error_set(err, errno, "drop supplementary groups");
    if (setgid(plan->gid) < 0)
        return wshd_error_set(err, errno, "setgid %u", plan->gid);
    if (sandbox_drop_caps(sandbox, plan->uid == 0, err) < 0)
        return -1;
    if (setuid(plan->uid) < 0)
        return wshd_error_set(err, errno, "setuid %u", plan->uid);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return wshd_error_set(err, errno, "set no_new_privs");
    if (chdir(plan->dir) < 0)
        return wshd_error_set(err, errno, "chdir %s", plan->dir);
    return 0;
}

static const char *job_env_path(const struct proto_spawn *plan)
{
    for (size_t i = 0; i < plan->envc; i++)
        if (strncmp(plan->envp[i], "PATH=", 5) == 0)
            return plan->envp[i] + 5;
    return JOB_DEFAULT_PATH;
}

/* execvpe's search, but through the job's PATH rather than wshd's own environment. */
static void job_exec_search(const struct proto_spawn *plan, struct wshd_error *err)
{
    const char *file = plan->argv[0];
    const char *dir = job_env_path(plan);
    int found = ENOENT;
    char candidate[PATH_MAX];

    for (;;) {
        const char *end = strchrnul(dir, ':');
        int dirlen = (int)(end - dir);
        int n = snprintf(candidate, sizeof candidate, "%.*s%s%s", dirlen, dir,
                         dirlen > 0 ? "/" : "", file);

        if (n >= 0 && (size_t)n < sizeof candidate) {
            execve(candidate, plan->argv, plan->envp);
            if (errno == EACCES)
                found = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
                found = errno;
        }
        if (*end == '\0')
            break;
        dir = end + 1;
    }
    wshd_error_set(err, found, "exec %s", file);
}

static void job_child_exec(const struct proto_spawn *plan, struct wshd_error *err)
{
    if (strchr(plan->argv[0], '/') != NULL) {
        execve(plan->argv[0], plan->argv, plan->envp);
        wshd_error_set(err, errno, "exec %s", plan->argv[0]);
        return;
    }
    job_exec_search(plan, err);
}

/* The child's own stack: room for a PATH_MAX candidate and an error message. */
#define JOB_CHILD_STACK (64 * 1024)

/* What the parent and the vfork-style child share: the child fills err before it dies. */
struct job_child {
    const struct proto_spawn *plan;
    const int *stdio;
    const struct sandbox *sandbox;
    struct wshd_error err;
    int failed;
};

/*
 * Runs on its own stack in wshd's memory (CLONE_VM) while wshd waits (CLONE_VFORK): only
 * system calls and formatting into its own stack or the shared struct, as posix_spawn's
 * child does. A failure is written into the struct, which wshd reads once the child died.
 */
static int job_child_main(void *arg)
{
    struct job_child *c = arg;

    if (job_child_prepare(c->plan, c->stdio, c->sandbox, &c->err) == 0)
        job_child_exec(c->plan, &c->err);
    c->failed = 1;
    _exit(127);
}

/*
 * clone(CLONE_VM | CLONE_VFORK) rather than fork: no copy of wshd's page tables, no
 * copy-on-write faults in wshd afterwards, and no pipe for the exec report; wshd resumes
 * the moment execve succeeded or the child died. ~0.1 ms less per job.
 */
int job_spawn(const struct proto_spawn *plan, const int stdio[3], const struct sandbox *sandbox,
              pid_t *pid, struct wshd_error *err)
{
    struct job_child child = {.plan = plan, .stdio = stdio, .sandbox = sandbox};
    char *stack;
    pid_t cpid;
    int saved;

    stack = mmap(NULL, JOB_CHILD_STACK, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return wshd_error_set(err, errno, "map a stack for %s", plan->argv[0]);
    cpid = clone(job_child_main, stack + JOB_CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD,
                 &child);
    saved = errno;
    if (munmap(stack, JOB_CHILD_STACK) < 0) {
        saved = errno;
        /* A spawn that fails leaves no process: the reap loop collects the killed child. */
        if (cpid > 0 && !child.failed && kill(cpid, SIGKILL) < 0 && errno != ESRCH)
            saved = errno;
        return wshd_error_set(err, saved, "unmap the stack of %s", plan->argv[0]);
    }
    if (cpid < 0)
        return wshd_error_set(err, saved, "clone for %s", plan->argv[0]);
    /* A failed child is not a job: the reap loop collects it without writing a status. */
    if (child.failed) {
        child.err.msg[sizeof child.err.msg - 1] = '\0';
        *err = child.err;
        return -1;
    }
    *pid = cpid;
    return 0;
}

int job_table_reserve(struct job_table *t, struct wshd_error *err)
{
    size_t cap;
    struct job *jobs;

    if (t->len < t->cap)
        return 0;
    if (t->cap >= JOB_MAX_JOBS)
        return wshd_error_set(err, EAGAIN, "add job: %d jobs running", JOB_MAX_JOBS);
    cap = t->cap == 0 ? 16 : t->cap * 2;
    jobs = reallocarray(t->jobs, cap, sizeof *jobs);
    if (jobs == NULL)
        return wshd_error_set(err, errno, "grow job table to %zu", cap);
    t->jobs = jobs;
    t->cap = cap;
    return 0;
}

struct job *job_table_add(struct job_table *t, pid_t pid, int status_fd, const struct output *out)
{
    struct job *j = &t->jobs[t->len++];

    j->pid = pid;
    j->reaped = false;
    j->status_fd = status_fd;
    j->nwaiters = 0;
    j->out = *out;
    return j;
}

struct job *job_table_find(struct job_table *t, pid_t pid)
{
    for (size_t i = 0; i < t->len; i++)
        if (t->jobs[i].pid == pid && !t->jobs[i].reaped)
            return &t->jobs[i];
    return NULL;
}

struct job *job_table_find_output(struct job_table *t, int fd, int *stream)
{
    for (size_t i = 0; i < t->len; i++) {
        *stream = output_stream_of(&t->jobs[i].out, fd);
        if (*stream >= 0)
            return &t->jobs[i];
    }
    return NULL;
}

/*
 * The job ran `setsid`, so -pid is its group, which its background processes share. After the
 * reap the number stays the group's while any member lives; if it is a new job's pid by now,
 * that job is left alone (it is its own group).
 */
static void job_kill_group(struct job_table *t, const struct job *j)
{
    if (j->reaped && job_table_find(t, j->pid) != NULL)
        return;
    /* ESRCH: nobody is left in the group. There is nobody to report another failure to. */
    if (kill(-j->pid, SIGKILL) < 0 && errno != ESRCH)
        return;
}

void job_copy_output(struct job_table *t, struct job *j, int stream, uint64_t budget)
{
    if (output_copy(&j->out, stream, budget) == OUTPUT_LIMIT)
        job_kill_group(t, j);
}

void job_drain_output(struct job_table *t, struct job *j)
{
    for (int i = 0; i < OUTPUT_STREAMS; i++) {
        uint64_t pending = output_pending(&j->out, i);

        if (pending > 0)
            job_copy_output(t, j, i, pending);
    }
}

void job_table_remove(struct job_table *t, struct job *j)
{
    *j = t->jobs[--t->len];
}

int job_add_waiter(struct job *j, int fd, struct wshd_error *err)
{
    for (size_t i = 0; i < j->nwaiters; i++)
        if (j->waiters[i] == fd)
            return 0;
    if (j->nwaiters == JOB_MAX_WAITERS)
        return wshd_error_set(err, 0, "wait for pid %d: %d clients already waiting", j->pid,
                              JOB_MAX_WAITERS);
    j->waiters[j->nwaiters++] = fd;
    return 0;
}

void job_table_forget_waiter(struct job_table *t, int fd)
{
    for (size_t i = 0; i < t->len; i++) {
        struct job *j = &t->jobs[i];

        for (size_t w = 0; w < j->nwaiters;)
            if (j->waiters[w] == fd)
                j->waiters[w] = j->waiters[--j->nwaiters];
            else
                w++;
    }
}
