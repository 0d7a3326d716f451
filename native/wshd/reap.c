/*
 * reap.c: SIGCHLD through a signalfd (no handler, no global), then a waitpid loop until nothing
 * is left to reap: signals coalesce, so one SIGCHLD may stand for many exits. Order for a reaped
 * job: first what its output pipes hold is copied into its files (under its limit, output.c),
 * so that a client reading them after EXIT sees all the job wrote before it exited; then
 * "exit N\n" or "signal N\n" is written to its status descriptor, which is then closed, and an
 * EXIT message is sent to every connection waiting for it. A job whose pipes are still open (a
 * background process holds them) stays in the table, marked reaped, until main.c sees them end.
 */
#include "reap.h"

#include "wshd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

int reap_signalfd_open(struct wshd_error *err)
{
    sigset_t set;
    int fd;

    if (sigemptyset(&set) < 0 || sigaddset(&set, SIGCHLD) < 0 || sigaddset(&set, SIGTERM) < 0)
        return wshd_error_set(err, errno, "build signal set");
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return wshd_error_set(err, errno, "block SIGCHLD and SIGTERM");
    fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return wshd_error_set(err, errno, "create signalfd");
    return fd;
}

int reap_drain(int signal_fd, bool *term, struct wshd_error *err)
{
    struct signalfd_siginfo si;
    ssize_t n;

    for (;;) {
        n = read(signal_fd, &si, sizeof si);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return wshd_error_set(err, errno, "read signalfd");
        if ((size_t)n != sizeof si)
            return wshd_error_set(err, EPROTO, "read signalfd: %zd bytes", n);
        if (si.ssi_signo == SIGTERM)
            *term = true;
    }
}

static int reap_write_status(struct job *j, int wstatus, struct wshd_error *err)
{
    char text[32];
    int len;
    int rc = 0;

    if (WIFEXITED(wstatus))
        len = snprintf(text, sizeof text, "exit %d\n", WEXITSTATUS(wstatus));
    else
        len = snprintf(text, sizeof text, "signal %d\n", WTERMSIG(wstatus));
    if (write(j->status_fd, text, (size_t)len) != len)
        rc = wshd_error_set(err, errno, "write status of pid %d", j->pid);
    if (close(j->status_fd) < 0 && rc == 0)
        rc = wshd_error_set(err, errno, "close status of pid %d", j->pid);
    j->status_fd = -1;
    return rc;
}

/* A failed status write has no other witness: it rides along in the EXIT message. */
static void reap_notify(const struct job *j, int wstatus, const struct wshd_error *status_err)
{
    uint8_t buf[512];
    char text[320];
    struct proto_writer msg;

    proto_writer_init(&msg, buf, sizeof buf, PROTO_KIND_EXIT);
    proto_put_u32(&msg, PROTO_TAG_PID, (uint32_t)j->pid);
    if (WIFEXITED(wstatus))
        proto_put_u32(&msg, PROTO_TAG_EXIT_CODE, (uint32_t)WEXITSTATUS(wstatus));
    else
        proto_put_u32(&msg, PROTO_TAG_SIGNAL, (uint32_t)WTERMSIG(wstatus));
    if (status_err != NULL)
        proto_put_string(&msg, PROTO_TAG_MESSAGE, wshd_error_text(status_err, text, sizeof text));
    for (size_t i = 0; i < j->nwaiters; i++)
        wshd_send(j->waiters[i], &msg);
}

static void reap_finish(struct wshd *w, pid_t pid, int wstatus)
{
    struct job *j = job_table_find(&w->jobs, pid);
    struct wshd_error err;

    /* Not a job: an orphan of the container, or a spawn whose exec failed. */
    if (j == NULL)
        return;
    job_drain_output(&w->jobs, j);
    if (reap_write_status(j, wstatus, &err) < 0)
        reap_notify(j, wstatus, &err);
    else
        reap_notify(j, wstatus, NULL);
    j->reaped = true;
    if (!output_is_open(&j->out))
        job_table_remove(&w->jobs, j);
}

bool reap_children(struct wshd *w)
{
    for (;;) {
        int wstatus;
        pid_t pid = waitpid(-1, &wstatus, WNOHANG);

        if (pid > 0) {
            reap_finish(w, pid, wstatus);
            continue;
        }
        if (pid == 0)
            return true;
        if (errno == EINTR)
            continue;
        /* ECHILD: none left. Any other errno cannot happen with these arguments. */
        return errno != ECHILD;
    }
}
