/*
 * sandbox.c: the seccomp filter, capabilities and hard rlimits of jobs. The filter is built
 * once with libseccomp by the released init (so it overlaps the server's network work; a failure
 * is reported like any other of the init's set-up errors) and
 * kept as BPF in struct sandbox. The init loads it with one prctl once it is set up, before it
 * serves, and every job inherits it: a filter loaded per job costs its JIT compile and, at the
 * job's exit, its deferred free, which on a 2-CPU VM made `run true` ~5 times slower (a
 * median of 2.6 ms instead of 0.5 ms for spawn and wait). Nothing the init or a job's child does
 * after the load needs a call the filter refuses. Order in a job's child (job.c): rlimits,
 * groups, gid, sandbox_drop_caps (needs CAP_SETPCAP, so before setuid), uid, no_new_privs,
 * chdir, execve.
 */
#include "sandbox.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Docker's default capability set: what a root job keeps. */
static const int sandbox_root_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,  CAP_FOWNER,  CAP_MKNOD,
    CAP_NET_RAW, CAP_SETGID,       CAP_SETUID,  CAP_SETFCAP, CAP_SETPCAP,
    CAP_NET_BIND_SERVICE,          CAP_SYS_CHROOT,           CAP_KILL,
    CAP_AUDIT_WRITE,
};

/* Docker's default profile refuses these (EPERM); names unknown to the arch are skipped. */
static const char *const sandbox_blocked[] = {
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot",
    "request_key", "set_mempolicy", "setns", "settimeofday", "swapon", "swapoff", "sysfs",
    "_sysctl", "umount", "umount2", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "syslog", "unshare",
};

/* clone() with any of these flags makes a namespace: refused, as unshare and setns are. */
static const unsigned long sandbox_clone_ns[] = {
    CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
    CLONE_NEWUTS,  CLONE_NEWIPC, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

/*
 * The personas Docker allows: PER_LINUX, PER_LINUX32, UNAME26 alone and with PER_LINUX32,
 * and 0xffffffff (query). Below, "free" bits are the ones an allowed persona may set.
 */
#define SANDBOX_PERSONA_FREE 0x20008ULL
#define SANDBOX_PERSONA_QUERY 0xffffffffULL

static uint64_t sandbox_root_mask(void)
{
    uint64_t mask = 0;

    for (size_t i = 0; i < sizeof sandbox_root_caps / sizeof sandbox_root_caps[0]; i++)
        mask |= 1ULL << sandbox_root_caps[i];
    return mask;
}

/*
 * libseccomp takes one comparison per argument and rule, and rules are or-ed, so "not one of
 * five values" is spelled as patterns. With T the 30 non-free bits of the low 32, x is refused
 * when its T bits are not all equal (then two neighbouring T bits differ: one pattern per
 * neighbour pair and order) or when they are all set and a free bit is clear (not the query).
 */
size_t sandbox_persona_patterns(struct sandbox_pattern *out, size_t cap)
{
    const uint64_t t_bits = SANDBOX_PERSONA_QUERY & ~SANDBOX_PERSONA_FREE;
    uint64_t prev = 0;
    size_t n = 0;

    for (int bit = 0; bit < 32; bit++) {
        uint64_t cur = 1ULL << bit;

        if ((t_bits & cur) == 0)
            continue;
        if (prev != 0 && n + 2 <= cap) {
            out[n++] = (struct sandbox_pattern){prev | cur, prev};
            out[n++] = (struct sandbox_pattern){prev | cur, cur};
        }
        prev = cur;
    }
    for (int bit = 0; bit < 32; bit++) {
        uint64_t free_bit = 1ULL << bit;

        if ((SANDBOX_PERSONA_FREE & free_bit) != 0 && n < cap)
            out[n++] = (struct sandbox_pattern){t_bits | free_bit, t_bits};
    }
    return n;
}

static int sandbox_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned int n,
                        const struct scmp_arg_cmp *cmp, struct wshd_error *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    int rc;

    /* Not a system call of this architecture (vm86 or umount on x86_64): nothing to refuse. */
    if (nr == __NR_SCMP_ERROR || nr < 0)
        return 0;
    rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc < 0)
        return wshd_error_set(err, -rc, "add seccomp rule for %s", name);
    return 0;
}

static int sandbox_personality_rules(scmp_filter_ctx ctx, struct wshd_error *err)
{
    struct sandbox_pattern patterns[SANDBOX_MAX_PATTERNS];
    size_t n = sandbox_persona_patterns(patterns, SANDBOX_MAX_PATTERNS);
    struct scmp_arg_cmp above = SCMP_A0(SCMP_CMP_GT, SANDBOX_PERSONA_QUERY);

    if (sandbox_rule(ctx, SCMP_ACT_ERRNO(EPERM), "personality", 1, &above, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct scmp_arg_cmp cmp =
            SCMP_A0(SCMP_CMP_MASKED_EQ, patterns[i].mask, patterns[i].value);

        if (sandbox_rule(ctx, SCMP_ACT_ERRNO(EPERM), "personality", 1, &cmp, err) < 0)
            return -1;
    }
    return 0;
}

static int sandbox_rules(scmp_filter_ctx ctx, struct wshd_error *err)
{
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);

    /* i386 and x32 calls take the bad-arch action: libseccomp's x86_64 filter refuses both. */
    if (rc < 0)
        return wshd_error_set(err, -rc, "set seccomp bad-arch action");
    /*
     * A binary tree over the syscall numbers rather than a list: a call walks a few jumps
     * instead of one per refused call, and the kernel's check of which calls are always
     * allowed, made at load, costs ~60 us instead of ~150.
     */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc < 0)
        return wshd_error_set(err, -rc, "set seccomp filter optimization");
    for (size_t i = 0; i < sizeof sandbox_blocked / sizeof sandbox_blocked[0]; i++)
        if (sandbox_rule(ctx, SCMP_ACT_ERRNO(EPERM), sandbox_blocked[i], 0, NULL, err) < 0)
            return -1;
    for (size_t i = 0; i < sizeof sandbox_clone_ns / sizeof sandbox_clone_ns[0]; i++) {
        struct scmp_arg_cmp cmp =
            SCMP_A0(SCMP_CMP_MASKED_EQ, sandbox_clone_ns[i], sandbox_clone_ns[i]);

        if (sandbox_rule(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &cmp, err) < 0)
            return -1;
    }
    /* clone3 passes its flags in memory, out of the filter's sight: ENOSYS makes libc use clone. */
    if (sandbox_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0)
        return -1;
    return sandbox_personality_rules(ctx, err);
}

/* libseccomp 2.5 exports BPF only to a descriptor: a memfd, read back into memory. */
static int sandbox_export(scmp_filter_ctx ctx, struct sock_fprog *prog, struct wshd_error *err)
{
    cleanup_close int fd = memfd_create("wshd-seccomp", MFD_CLOEXEC);
    struct sock_filter *code;
    struct stat st;
    int rc;

    if (fd < 0)
        return wshd_error_set(err, errno, "create memfd for the seccomp filter");
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        return wshd_error_set(err, -rc, "export the seccomp filter");
    if (fstat(fd, &st) < 0)
        return wshd_error_set(err, errno, "stat the seccomp filter");
    if (st.st_size <= 0 || st.st_size % (off_t)sizeof *code != 0 ||
        st.st_size / (off_t)sizeof *code > BPF_MAXINSNS)
        return wshd_error_set(err, 0, "seccomp filter of %lld bytes", (long long)st.st_size);
    code = malloc((size_t)st.st_size);
    if (code == NULL)
        return wshd_error_set(err, errno, "allocate the seccomp filter");
    if (pread(fd, code, (size_t)st.st_size, 0) != st.st_size) {
        free(code);
        return wshd_error_set(err, errno, "read back the seccomp filter");
    }
    prog->filter = code;
    prog->len = (unsigned short)(st.st_size / (off_t)sizeof *code);
    return 0;
}

static int sandbox_build_filter(struct sock_fprog *prog, struct wshd_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int rc;

    if (ctx == NULL)
        return wshd_error_set(err, ENOMEM, "create the seccomp filter");
    rc = sandbox_rules(ctx, err);
    if (rc == 0)
        rc = sandbox_export(ctx, prog, err);
    seccomp_release(ctx);
    return rc;
}

/* The highest capability this kernel knows: PR_CAPBSET_READ says EINVAL past it. */
static int sandbox_last_cap(struct wshd_error *err)
{
    int cap = 0;

    while (cap < 64 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0)
        cap++;
    if (cap == 0 || (cap < 64 && errno != EINVAL))
        return wshd_error_set(err, errno, "read capability bounding set");
    return cap - 1;
}

int sandbox_init(struct sandbox *s, struct wshd_error *err)
{
    s->last_cap = sandbox_last_cap(err);
    if (s->last_cap < 0)
        return -1;
    return sandbox_build_filter(&s->filter, err);
}

static int sandbox_nr_open(rlim_t *out, struct wshd_error *err)
{
    char text[32];
    cleanup_close int fd = open("/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC);
    ssize_t n;
    char *end;

    if (fd < 0)
        return wshd_error_set(err, errno, "open /proc/sys/fs/nr_open");
    n = read(fd, text, sizeof text - 1);
    if (n <= 0)
        return wshd_error_set(err, n < 0 ? errno : 0, "read /proc/sys/fs/nr_open");
    text[n] = '\0';
    *out = strtoull(text, &end, 10);
    if (end == text || *out == 0)
        return wshd_error_set(err, 0, "read /proc/sys/fs/nr_open: \"%s\"", text);
    return 0;
}

int sandbox_raise_hard_limits(struct wshd_error *err)
{
    rlim_t nr_open = 0;

    if (sandbox_nr_open(&nr_open, err) < 0)
        return -1;
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit rl;

        if (getrlimit((__rlimit_resource_t)r, &rl) < 0)
            return wshd_error_set(err, errno, "get rlimit %d", r);
        /* RLIMIT_NOFILE cannot exceed fs.nr_open; every other limit can be infinite. */
        rl.rlim_max = r == RLIMIT_NOFILE ? nr_open : RLIM_INFINITY;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
            rl.rlim_cur = rl.rlim_max;
        /* EPERM: no CAP_SYS_RESOURCE on this host; jobs keep the limits the launcher had. */
        if (setrlimit((__rlimit_resource_t)r, &rl) < 0 && errno != EPERM)
            return wshd_error_set(err, errno, "raise hard rlimit %d", r);
    }
    return 0;
}

int sandbox_drop_caps(const struct sandbox *s, bool root, struct wshd_error *err)
{
    const uint64_t keep = sandbox_root_mask();
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];

    for (int cap = 0; cap <= s->last_cap; cap++)
        if ((!root || (keep & (1ULL << cap)) == 0) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return wshd_error_set(err, errno, "drop capability %d from the bounding set", cap);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return wshd_error_set(err, errno, "get capabilities");
    /* Only what wshd holds: a host without one of Docker's set still runs root jobs. */
    for (int i = 0; i < 2; i++) {
        data[i].permitted &= (uint32_t)(keep >> (32 * i));
        data[i].effective = data[i].permitted;
        data[i].inheritable = 0;
    }
    /* A non-root job keeps these only until setuid, which clears permitted and effective. */
    if (syscall(SYS_capset, &hdr, data) < 0)
        return wshd_error_set(err, errno, "set capabilities");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return wshd_error_set(err, errno, "clear ambient capabilities");
    return 0;
}

int sandbox_load_filter(const struct sandbox *s, struct wshd_error *err)
{
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &s->filter, 0, 0) < 0)
        return wshd_error_set(err, errno, "load seccomp filter");
    return 0;
}
