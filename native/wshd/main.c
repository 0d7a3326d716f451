/*
 * main.c: wshd's entry point and event loop. Start-up order, in the launcher: validate the whole
 * command line; ignore SIGPIPE; join the --cgroup-tasks groups (the init is then born in them);
 * raise the hard rlimits (before the clone: a user namespace cannot raise them) and build the
 * seccomp filter (sandbox.c); bind the socket while the mounts are still the host's (so its
 * path is a host path) and open the run dir; build the root in a private copy of the server's
 * mount seed, or of the host's mount namespace without one (rootfs.c); clone the
 * container init; the launcher then relays the barrier and exits (ns.c). The init enters its
 * root, opens its signalfd and epoll set, puts itself under the seccomp filter (which its jobs
 * inherit), and only then reports ready, so that every failure before serving ends start-up
 * with a message. Once serving, nothing a client sends stops the daemon: a bad request gets an
 * ERROR reply, a client that leaves is dropped. The epoll set holds the listening socket, the
 * signalfd, clients and the jobs' output pipes; an event's data.u64 is the fd, with
 * OUTPUT_EPOLL_TAG set for a pipe (a SPAWN with OUTPUT_LIMIT makes them before the clone, so a
 * failure leaves no job, and closes wshd's copies of their write ends right after it).
 */
#include "cleanup.h"
#include "fdpass.h"
#include "reap.h"
#include "rootfs.h"
#include "wshd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAIN_LISTEN_BACKLOG 64
#define MAIN_EPOLL_BATCH 16

static const char main_usage[] =
    "usage: wshd --run RUNDIR --root ROOTDIR --hostname NAME [--bind SRC:DST:ro|rw]...\n"
    "            [--cgroup-tasks FILE]... [--id-map HOSTBASE:COUNT] [--mount-seed-fd FD]\n"
    "       wshd --make-mount-seed DIR\n";

static void __attribute__((noreturn)) main_die(const struct wshd_error *err, int status)
{
    char text[320];

    dprintf(STDERR_FILENO, "wshd: %s\n", wshd_error_text(err, text, sizeof text));
    if (status == 2)
        dprintf(STDERR_FILENO, "%s", main_usage);
    exit(status);
}

static int main_real_dir(const char *opt, const char *path, char **out, struct wshd_error *err)
{
    struct stat st;

    *out = realpath(path, NULL);
    if (*out == NULL)
        return wshd_error_set(err, errno, "%s %s", opt, path);
    if (stat(*out, &st) < 0)
        return wshd_error_set(err, errno, "%s %s", opt, path);
    if (!S_ISDIR(st.st_mode))
        return wshd_error_set(err, ENOTDIR, "%s %s", opt, path);
    return 0;
}

/* DST is a path inside the container: absolute, not "/", and no ".." to climb out of it. */
static int main_check_dst(const char *dst, struct wshd_error *err)
{
    size_t len = strlen(dst);

    if (dst[0] != '/' || len < 2 || len >= PATH_MAX / 2)
        return wshd_error_set(err, 0, "--bind: destination %s must be an absolute path below /",
                              dst);
    for (const char *p = dst; (p = strstr(p, "..")) != NULL; p += 2)
        if (p[-1] == '/' && (p[2] == '/' || p[2] == '\0'))
            return wshd_error_set(err, 0, "--bind: destination %s contains ..", dst);
    return 0;
}

/* Splits a copy of the option: argv stays intact for ps and /proc/PID/cmdline. */
static int main_parse_bind(const char *option, struct wshd_bind *b, struct wshd_error *err)
{
    char *arg = strdup(option);
    char *mode;
    char *dst;

    if (arg == NULL)
        return wshd_error_set(err, errno, "--bind %s", option);
    mode = strrchr(arg, ':');
    if (mode == NULL)
        return wshd_error_set(err, 0, "--bind %s: want SRC:DST:ro|rw", option);
    *mode++ = '\0';
    dst = strrchr(arg, ':');
    if (dst == NULL)
        return wshd_error_set(err, 0, "--bind %s: want SRC:DST:ro|rw", option);
    *dst++ = '\0';
    if (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
        return wshd_error_set(err, 0, "--bind %s: mode %s is not ro or rw", option, mode);
    b->read_only = mode[1] == 'o';
    /* Taken as given, never resolved here: the server checked this path, and the mount
     * refuses a symlink planted on it since (resolve_open_source). */
    if (arg[0] != '/')
        return wshd_error_set(err, 0, "--bind source %s: not an absolute path", arg);
    b->src = arg;
    b->dst = dst;
    return main_check_dst(dst, err);
}

/* Digits only: strtoull alone would also take a sign and leading blanks. */
static bool main_parse_decimal(const char *text, const char **end, unsigned long long *out)
{
    char *stop;

    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    *out = strtoull(text, &stop, 10);
    *end = stop;
    return errno == 0 && *out <= UINT32_MAX;
}

/* HOSTBASE:COUNT: the range holds neither host root (0) nor the invalid id 2^32-1. */
static int main_parse_id_map(struct wshd_config *c, const char *arg, struct wshd_error *err)
{
    unsigned long long base;
    unsigned long long count;
    const char *end;

    if (!main_parse_decimal(arg, &end, &base) || *end != ':' ||
        !main_parse_decimal(end + 1, &end, &count) || *end != '\0' || base == 0 || count == 0 ||
        base + count > UINT32_MAX)
        return wshd_error_set(err, 0, "--id-map %s: want HOSTBASE:COUNT, HOSTBASE > 0", arg);
    c->id_map = true;
    c->id_base = (uint32_t)base;
    c->id_count = (uint32_t)count;
    return 0;
}

/* The descriptor of a mount namespace made by --make-mount-seed, inherited from the server. */
static int main_parse_seed_fd(struct wshd_config *c, const char *arg, struct wshd_error *err)
{
    char *end = NULL;
    long fd;

    errno = 0;
    fd = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || fd < 3 || fd > INT_MAX)
        return wshd_error_set(err, 0, "--mount-seed-fd %s: not a descriptor number above 2", arg);
    c->mount_seed_fd = (int)fd;
    return 0;
}

static int main_parse_option(struct wshd_config *c, int opt, char *arg, struct wshd_error *err)
{
    switch (opt) {
    case 'r':
        return main_real_dir("--run", arg, &c->run_dir, err);
    case 'R':
        return main_real_dir("--root", arg, &c->root_dir, err);
    case 'h':
        c->hostname = arg;
        return 0;
    case 'b':
        if (c->nbinds == WSHD_MAX_BINDS)
            return wshd_error_set(err, 0, "too many --bind options (max %d)", WSHD_MAX_BINDS);
        return main_parse_bind(arg, &c->binds[c->nbinds++], err);
    case 'c':
        if (c->ncgroups == WSHD_MAX_CGROUPS)
            return wshd_error_set(err, 0, "too many --cgroup-tasks options (max %d)",
                                  WSHD_MAX_CGROUPS);
        if (arg[0] != '/')
            return wshd_error_set(err, 0, "--cgroup-tasks %s: not an absolute path", arg);
        c->cgroup_tasks[c->ncgroups++] = arg;
        return 0;
    case 'u':
        return main_parse_id_map(c, arg, err);
    case 's':
        return main_parse_seed_fd(c, arg, err);
    default:
        return wshd_error_set(err, 0, "unknown option");
    }
}

static int main_parse_args(struct wshd_config *c, int argc, char **argv, struct wshd_error *err)
{
    static const struct option options[] = {
        {"run", required_argument, NULL, 'r'},
        {"root", required_argument, NULL, 'R'},
        {"hostname", required_argument, NULL, 'h'},
        {"bind", required_argument, NULL, 'b'},
        {"cgroup-tasks", required_argument, NULL, 'c'},
        {"id-map", required_argument, NULL, 'u'},
        {"mount-seed-fd", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1)
        if (main_parse_option(c, opt, optarg, err) < 0)
            return -1;
    if (optind != argc)
        return wshd_error_set(err, 0, "unexpected argument %s", argv[optind]);
    if (c->run_dir == NULL || c->root_dir == NULL || c->hostname == NULL)
        return wshd_error_set(err, 0, "--run, --root and --hostname are required");
    if (strcmp(c->root_dir, "/") == 0)
        return wshd_error_set(err, 0, "--root must not be the host's /");
    if (c->hostname[0] == '\0' || strlen(c->hostname) > WSHD_MAX_HOSTNAME)
        return wshd_error_set(err, 0, "--hostname must be 1 to %d bytes", WSHD_MAX_HOSTNAME);
    return 0;
}

/*
 * Move this (still single-threaded) process into each cgroup by writing "0" to its `tasks`
 * file, so the init cloned next is born inside them. A thread moving itself skips the kernel's
 * thread-group lock, whose RCU wait makes moving another process by pid cost ~10 ms.
 */
static int main_join_cgroups(const struct wshd_config *c, struct wshd_error *err)
{
    for (size_t i = 0; i < c->ncgroups; i++) {
        int fd = open(c->cgroup_tasks[i], O_WRONLY | O_CLOEXEC);

        if (fd < 0)
            return wshd_error_set(err, errno, "open %s", c->cgroup_tasks[i]);
        if (write(fd, "0", 1) != 1) {
            int saved = errno;

            (void)close(fd);
            return wshd_error_set(err, saved, "join cgroup %s", c->cgroup_tasks[i]);
        }
        if (close(fd) < 0)
            return wshd_error_set(err, errno, "join cgroup %s", c->cgroup_tasks[i]);
    }
    return 0;
}

static int main_ignore_sigpipe(struct wshd_error *err)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};

    if (sigemptyset(&ign.sa_mask) < 0 || sigaction(SIGPIPE, &ign, NULL) < 0)
        return wshd_error_set(err, errno, "ignore SIGPIPE");
    return 0;
}

static int main_listen(const char *run_dir, struct sockaddr_un *addr, struct wshd_error *err)
{
    int n = snprintf(addr->sun_path, sizeof addr->sun_path, "%s/%s", run_dir, WSHD_SOCKET_NAME);
    cleanup_close int fd = -1;
    mode_t old_mask;
    int rc;

    addr->sun_family = AF_UNIX;
    if (n < 0 || (size_t)n >= sizeof addr->sun_path)
        return wshd_error_set(err, ENAMETOOLONG, "bind %s/%s", run_dir, WSHD_SOCKET_NAME);
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return wshd_error_set(err, errno, "create socket");
    if (unlink(addr->sun_path) < 0 && errno != ENOENT)
        return wshd_error_set(err, errno, "remove old %s", addr->sun_path);
    old_mask = umask(0177); /* the socket is born 0600: no window where others may connect */
    rc = bind(fd, (struct sockaddr *)addr, sizeof *addr);
    if (rc < 0)
        rc = -errno;
    umask(old_mask);
    if (rc < 0)
        return wshd_error_set(err, -rc, "bind %s", addr->sun_path);
    if (listen(fd, MAIN_LISTEN_BACKLOG) < 0)
        return wshd_error_set(err, errno, "listen on %s", addr->sun_path);
    return take_fd(&fd);
}

void wshd_send(int fd, const struct proto_writer *msg)
{
    ssize_t n;

    if (msg->overflow)
        return;
    /*
     * A client that left (EPIPE, ECONNRESET) or stopped reading (EAGAIN) loses this message and
     * nothing else: its hangup is handled by the loop, and a daemon that blocked on one client
     * would stop serving all the others.
     */
    do
        n = send(fd, msg->buf, msg->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
}

/* A reply: STATUS always, PID when pid > 0, MESSAGE when err is set. */
static void main_reply(int fd, uint16_t kind, pid_t pid, const struct wshd_error *err)
{
    uint8_t buf[512];
    char text[320];
    struct proto_writer msg;

    proto_writer_init(&msg, buf, sizeof buf, kind);
    proto_put_u8(&msg, PROTO_TAG_STATUS, err != NULL);
    if (pid > 0)
        proto_put_u32(&msg, PROTO_TAG_PID, (uint32_t)pid);
    if (err != NULL)
        proto_put_string(&msg, PROTO_TAG_MESSAGE, wshd_error_text(err, text, sizeof text));
    wshd_send(fd, &msg);
}

/*
 * With OUTPUT_LIMIT the job writes into pipes that wshd copies into the received files
 * (output.c); stdio[1..2] become the pipes' write ends, which *ends holds for closing.
 */
static int main_job_output(struct wshd *w, struct fdpass_fds *fds, struct output *out,
                           int stdio[3], int ends[OUTPUT_STREAMS], struct wshd_error *err)
{
    const struct proto_spawn *plan = &w->request->spawn;

    output_none(out);
    if (!plan->has_output_limit)
        return 0;
    if (output_open(out, plan->output_limit, &fds->fd[1], w->epoll_fd, ends, err) < 0)
        return -1;
    stdio[1] = ends[0];
    stdio[2] = ends[1];
    return 0;
}

static void main_handle_spawn(struct wshd *w, int fd, struct fdpass_fds *fds)
{
    int stdio[3] = {fds->fd[0], fds->fd[1], fds->fd[2]};
    int ends[OUTPUT_STREAMS] = {-1, -1};
    struct wshd_error err = {0};
    struct output out;
    struct job *job;
    pid_t pid;
    int rc;

    /* Room first: once the job runs, tracking it must not fail. */
    if (job_table_reserve(&w->jobs, &err) < 0 ||
        main_job_output(w, fds, &out, stdio, ends, &err) < 0) {
        main_reply(fd, PROTO_KIND_SPAWN, 0, &err);
        return;
    }
    rc = job_spawn(&w->request->spawn, stdio, &w->sandbox, &pid, &err);
    /* The job holds the write ends now: wshd's copies would keep the pipes from ever ending. */
    for (int i = 0; i < OUTPUT_STREAMS; i++)
        cleanup_close_fd(&ends[i]);
    if (rc < 0) {
        output_close(&out);
        main_reply(fd, PROTO_KIND_SPAWN, 0, &err);
        return;
    }
    job = job_table_add(&w->jobs, pid, take_fd(&fds->fd[3]), &out);
    /* Cannot fail: the job has no waiter yet. */
    (void)job_add_waiter(job, fd, &err);
    main_reply(fd, PROTO_KIND_SPAWN, pid, NULL);
}

static void main_handle_wait(struct wshd *w, int fd)
{
    pid_t pid = (pid_t)w->request->target.pid;
    struct job *job = job_table_find(&w->jobs, pid);
    struct wshd_error err = {0};

    /* No reply on success: the EXIT message is the answer. PID tells waits apart on failure. */
    if (job == NULL) {
        wshd_error_set(&err, 0, "no such job");
        main_reply(fd, PROTO_KIND_WAIT, pid, &err);
    } else if (job_add_waiter(job, fd, &err) < 0) {
        main_reply(fd, PROTO_KIND_WAIT, pid, &err);
    }
}

static void main_handle_signal(struct wshd *w, int fd)
{
    const struct proto_target *t = &w->request->target;
    struct wshd_error err = {0};

    if (job_table_find(&w->jobs, (pid_t)t->pid) == NULL) {
        wshd_error_set(&err, 0, "no such job");
        main_reply(fd, PROTO_KIND_SIGNAL, 0, &err);
        return;
    }
    /* Jobs are session and group leaders (setsid), so -pid is the job's process group. */
    if (kill(t->group ? -(pid_t)t->pid : (pid_t)t->pid, (int)t->signo) < 0) {
        wshd_error_set(&err, errno, "send signal %u to %s %u", t->signo,
                       t->group ? "process group" : "pid", t->pid);
        main_reply(fd, PROTO_KIND_SIGNAL, 0, &err);
        return;
    }
    main_reply(fd, PROTO_KIND_SIGNAL, 0, NULL);
}

/* Decode the datagram into w->request and check what came with it. */
static int main_decode(struct wshd *w, size_t len, int flags, const struct fdpass_fds *fds,
                       struct wshd_error *err)
{
    struct proto_request *req = w->request;
    size_t want;

    if (flags & MSG_TRUNC)
        return wshd_error_set(err, 0, "message too long (max %d bytes)", PROTO_MAX_DATAGRAM);
    if (flags & MSG_CTRUNC)
        return wshd_error_set(err, 0, "too many descriptors (max %d)", FDPASS_MAX_FDS);
    if (proto_decode_request(w->rx, len, req, err) < 0)
        return -1;
    want = req->kind == PROTO_KIND_SPAWN ? PROTO_SPAWN_FDS : 0;
    if (fds->count != want)
        return wshd_error_set(err, 0, "%s takes %zu descriptors, got %zu",
                              proto_kind_name(req->kind), want, fds->count);
    return 0;
}

static void main_handle_request(struct wshd *w, int fd, size_t len, int flags,
                                struct fdpass_fds *fds)
{
    struct wshd_error err = {0};

    if (main_decode(w, len, flags, fds, &err) < 0) {
        main_reply(fd, PROTO_KIND_ERROR, 0, &err);
        return;
    }
    switch (w->request->kind) {
    case PROTO_KIND_SPAWN:
        main_handle_spawn(w, fd, fds);
        break;
    case PROTO_KIND_WAIT:
        main_handle_wait(w, fd);
        break;
    case PROTO_KIND_SIGNAL:
        main_handle_signal(w, fd);
        break;
    default: /* PING: proto_decode_request admits no other kind */
        main_reply(fd, PROTO_KIND_PING, 0, NULL);
        break;
    }
}

static void main_pause_accept(struct wshd *w, bool pause)
{
    struct epoll_event ev = {.events = pause ? 0 : EPOLLIN, .data.u64 = (uint32_t)w->listen_fd};

    /* On failure the state stays as it was, and the next client or reap retries. */
    if (w->accept_paused != pause && epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, w->listen_fd, &ev) == 0)
        w->accept_paused = pause;
}

/* An output pipe is readable (or its writers are gone): copy, and forget a finished job. */
static void main_output(struct wshd *w, int fd)
{
    int stream;
    struct job *job = job_table_find_output(&w->jobs, fd, &stream);

    /* Cannot be NULL: a pipe leaves the epoll set when it is closed. */
    if (job == NULL)
        return;
    job_copy_output(&w->jobs, job, stream, OUTPUT_EVENT_BUDGET);
    if (job->reaped && !output_is_open(&job->out)) {
        job_table_remove(&w->jobs, job);
        main_pause_accept(w, false);
    }
}

static void main_drop_client(struct wshd *w, int fd)
{
    /* The fd number will be reused: no job may send its EXIT there any more. */
    job_table_forget_waiter(&w->jobs, fd);
    /* Closing also removes fd from the epoll set; a close error still releases the number. */
    (void)close(fd);
    main_pause_accept(w, false);
}

static void main_serve_client(struct wshd *w, int fd, uint32_t events)
{
    cleanup_fds struct fdpass_fds fds = {.count = 0};
    struct wshd_error err = {0};
    int flags = 0;
    ssize_t n;

    if ((events & EPOLLIN) == 0) {
        main_drop_client(w, fd);
        return;
    }
    n = fdpass_recv(fd, w->rx, PROTO_MAX_DATAGRAM, &fds, &flags, &err);
    if (n < 0 && err.errnum == EAGAIN)
        return;
    /* 0 bytes and no descriptors: the peer closed (an empty datagram ends a connection too). */
    if (n < 0 || (n == 0 && fds.count == 0)) {
        main_drop_client(w, fd);
        return;
    }
    main_handle_request(w, fd, (size_t)n, flags, &fds);
}

static void main_accept(struct wshd *w)
{
    for (;;) {
        struct epoll_event ev = {.events = EPOLLIN};
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        /* Out of descriptors: stop polling the socket until a client or a job frees one. */
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
            main_pause_accept(w, true);
        if (fd < 0)
            return;
        ev.data.u64 = (uint32_t)fd;
        /* A socket that cannot be watched cannot be served: the client sees it close. */
        if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
            (void)close(fd);
    }
}

/* Returns true when wshd should exit: SIGTERM arrived and no child is left. */
static bool main_signals(struct wshd *w)
{
    struct wshd_error err = {0};
    bool term = false;
    bool children;

    /* A failed read leaves the signals pending: the signalfd stays readable and is retried. */
    if (reap_drain(w->signal_fd, &term, &err) < 0)
        return false;
    children = reap_children(w);
    main_pause_accept(w, false);
    return term && !children;
}

static int main_serve(struct wshd *w)
{
    struct epoll_event events[MAIN_EPOLL_BATCH];

    for (;;) {
        int n = epoll_wait(w->epoll_fd, events, MAIN_EPOLL_BATCH, -1);

        if (n < 0 && errno == EINTR)
            continue;
        /* Only EBADF/EFAULT/EINVAL: a bug, and the socket is the only place to say so. */
        if (n < 0)
            return 1;
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            int fd = (int)(uint32_t)data;

            if (data & OUTPUT_EPOLL_TAG)
                main_output(w, fd);
            else if (fd == w->listen_fd)
                main_accept(w);
            else if (fd == w->signal_fd && main_signals(w))
                return 0;
            else if (fd != w->signal_fd)
                main_serve_client(w, fd, events[i].events);
        }
    }
}

static int main_watch(int epoll_fd, int fd, struct wshd_error *err)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint32_t)fd};

    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return wshd_error_set(err, errno, "watch descriptor %d", fd);
    return 0;
}

static int main_serve_init(struct wshd *w, struct wshd_error *err)
{
    w->request = malloc(sizeof *w->request);
    w->rx = malloc(PROTO_MAX_DATAGRAM);
    if (w->request == NULL || w->rx == NULL)
        return wshd_error_set(err, ENOMEM, "allocate request buffers");
    w->signal_fd = reap_signalfd_open(err);
    if (w->signal_fd < 0)
        return -1;
    w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epoll_fd < 0)
        return wshd_error_set(err, errno, "create epoll set");
    if (main_watch(w->epoll_fd, w->listen_fd, err) < 0 ||
        main_watch(w->epoll_fd, w->signal_fd, err) < 0)
        return -1;
    return 0;
}

/* The container init: exits when serving ends, never returns to main. */
static void __attribute__((noreturn)) main_child(struct wshd *w, struct ns_barrier *barrier)
{
    struct wshd_error err = {0};

    /* A host directory: the container must not hold it, whatever it finds later. */
    if (close(take_fd(&w->config.run_fd)) < 0)
        _exit(1);
    /* Released or abandoned: if the parent is gone there is nobody to report to. */
    if (ns_child_wait(barrier, &err) < 0)
        _exit(1);
    /*
     * The filter is built here, after the release, so that its ~0.3 ms overlap the server's
     * network work instead of delaying the pid the server waits for; loaded last: from then
     * on the init and every job it spawns run under it.
     */
    if (sandbox_init(&w->sandbox, &err) < 0 || ns_child_setup(&w->config, &err) < 0 ||
        main_serve_init(w, &err) < 0 || sandbox_load_filter(&w->sandbox, &err) < 0) {
        (void)ns_child_report(barrier, &err);
        _exit(1);
    }
    if (ns_child_report(barrier, NULL) < 0)
        _exit(1);
    _exit(main_serve(w));
}

/*
 * `wshd --make-mount-seed DIR`: make the mount namespace containers are built in (rootfs.c),
 * say "ready", and hold it until stdin closes; the server keeps a descriptor of it meanwhile.
 */
static int main_make_mount_seed(const char *dir)
{
    struct wshd_error err = {0};
    char buf[1];

    if (rootfs_make_seed(dir, &err) < 0)
        main_die(&err, 1);
    if (dprintf(STDOUT_FILENO, "ready\n") < 0)
        return 1;
    while (read(STDIN_FILENO, buf, sizeof buf) > 0)
        continue;
    return 0;
}

/* Whatever the starter leaked to us would otherwise live as long as the container. */
static int main_close_inherited(const struct wshd_config *c, struct wshd_error *err)
{
    int keep = c->mount_seed_fd;

    if (keep >= 0 && fcntl(keep, F_SETFD, FD_CLOEXEC) < 0)
        return wshd_error_set(err, errno, "--mount-seed-fd %d", keep);
    if (keep < 0 ? close_range(3, ~0U, 0) < 0
                 : (keep > 3 && close_range(3, (unsigned)keep - 1, 0) < 0) ||
                       close_range((unsigned)keep + 1, ~0U, 0) < 0)
        return wshd_error_set(err, errno, "close inherited descriptors");
    return 0;
}

int main(int argc, char **argv)
{
    struct wshd w = {.listen_fd = -1, .epoll_fd = -1, .signal_fd = -1,
                     .config = {.mount_seed_fd = -1, .run_fd = -1}};
    struct wshd_error err = {0};
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct ns_barrier barrier;
    pid_t child;

    if (argc == 3 && strcmp(argv[1], "--make-mount-seed") == 0)
        return main_make_mount_seed(argv[2]);
    if (main_parse_args(&w.config, argc, argv, &err) < 0)
        main_die(&err, 2);
    if (main_close_inherited(&w.config, &err) < 0)
        main_die(&err, 1);
    if (main_ignore_sigpipe(&err) < 0 || main_join_cgroups(&w.config, &err) < 0 ||
        sandbox_raise_hard_limits(&err) < 0)
        main_die(&err, 1);
    w.listen_fd = main_listen(w.config.run_dir, &addr, &err);
    if (w.listen_fd < 0)
        main_die(&err, 1);
    w.config.run_fd = open(w.config.run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w.config.run_fd < 0) {
        wshd_error_set(&err, errno, "open %s", w.config.run_dir);
        child = -1;
    } else if (rootfs_build(&w.config, &err) < 0 || ns_barrier_open(&barrier, &err) < 0) {
        child = -1;
    } else {
        child = ns_clone(&w.config, &err);
    }
    if (child < 0) {
        /* Best effort on the way out: the error worth reporting is the one above. */
        if (w.config.run_fd < 0 || unlinkat(w.config.run_fd, WSHD_SOCKET_NAME, 0) < 0)
            (void)unlink(addr.sun_path);
        main_die(&err, 1);
    }
    if (child == 0)
        main_child(&w, &barrier);
    return ns_parent_run(&barrier, child, &w.config);
}
