/*
 * test_job.c: job_spawn's TTY flag on the real kernel. A pseudo-terminal's slave is the job's
 * stdin; with the flag the job's session gets it as controlling terminal with the job's group in
 * the foreground, without it the session has none. Read from /proc/<pid>/stat (tty_nr, tpgid)
 * of a `sleep` the test then kills. Prints TAP lines; needs root (the child drops groups and
 * capabilities as a job's does), and skips every case without it.
 */
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct suite {
    int run;
    int failed;
};

static void report(struct suite *s, int ok, const char *name, const char *detail)
{
    s->run++;
    if (ok) {
        printf("ok %d - %s\n", s->run, name);
        return;
    }
    s->failed++;
    printf("not ok %d - %s%s%s\n", s->run, name, detail[0] ? ": " : "", detail);
}

/* A new pseudo-terminal: *master and *slave (neither a controlling terminal of this test). */
static int open_pty(int *master, int *slave, char *detail, size_t cap)
{
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0 || unlockpt(*master) < 0) {
        snprintf(detail, cap, "open a pty: %s", strerror(errno));
        return -1;
    }
    *slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) {
        snprintf(detail, cap, "open the pty's slave: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* tty_nr and tpgid of pid (fields 7 and 8 of /proc/<pid>/stat). */
static int read_tty_fields(pid_t pid, long *tty_nr, long *tpgid)
{
    char path[64];
    char buf[1024];
    FILE *f;
    size_t n;
    char *p;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* After ") ": state ppid pgrp session tty_nr tpgid */
    return sscanf(p + 2, "%*c %*d %*d %*d %ld %ld", tty_nr, tpgid) == 2 ? 0 : -1;
}

/* Spawn `sleep 30` with the slave as stdin (and stdout, stderr), tty as given; kill it after. */
static void spawn_on_pty(struct suite *s, bool tty)
{
    static char sleep_arg[] = "sleep", seconds[] = "30", path[] = "PATH=/usr/bin:/bin";
    const char *name = tty ? "TTY: the slave is the job's controlling terminal, its group in front"
                           : "no TTY: the job's new session has no controlling terminal";
    struct proto_spawn plan = {.argc = 2, .envc = 1, .dir = "/", .uid = 0, .gid = 0, .tty = tty};
    struct sandbox sandbox = {.last_cap = -1}; /* keep the bounding set: not under test */
    struct wshd_error err = {0};
    struct stat st;
    char detail[300] = "";
    int master = -1, slave = -1;
    long tty_nr = -1, tpgid = -1;
    pid_t pid = -1;

    plan.argv[0] = sleep_arg;
    plan.argv[1] = seconds;
    plan.envp[0] = path;
    if (open_pty(&master, &slave, detail, sizeof detail) == 0 && fstat(slave, &st) == 0) {
        int stdio[3] = {slave, slave, slave};

        if (job_spawn(&plan, stdio, &sandbox, &pid, &err) < 0)
            snprintf(detail, sizeof detail, "spawn: %s", err.msg);
        else if (read_tty_fields(pid, &tty_nr, &tpgid) < 0)
            snprintf(detail, sizeof detail, "read /proc/%d/stat", (int)pid);
        else
            snprintf(detail, sizeof detail, "tty_nr %ld tpgid %ld, slave %lu, pid %d", tty_nr,
                     tpgid, (unsigned long)st.st_rdev, (int)pid);
    }
    if (tty)
        report(s, pid > 0 && tty_nr == (long)st.st_rdev && tpgid == pid, name, detail);
    else
        report(s, pid > 0 && tty_nr == 0 && tpgid == -1, name, detail);
    if (pid > 0 && kill(pid, SIGKILL) == 0)
        waitpid(pid, NULL, 0);
    if (slave >= 0)
        close(slave);
    if (master >= 0)
        close(master);
}

int main(void)
{
    struct suite s = {0};

    if (geteuid() != 0) {
        printf("ok 1 # skip needs root: a job's child drops groups and capabilities\n1..1\n");
        return 0;
    }
    spawn_on_pty(&s, true);
    spawn_on_pty(&s, false);
    printf("1..%d\n", s.run);
    if (s.failed > 0)
        printf("# %d of %d failed\n", s.failed, s.run);
    return s.failed > 0;
}
