/* attack: the syscalls an attacker inside a container would try, one per argument.
 *
 * Each argument is one step, "op:arg:arg...". Steps run in order in one process (so
 * "unshare:user,mnt" changes what later steps may do) and each prints one line:
 *     <op> <OK|ERRNO-NAME> [detail]
 * where the detail of a successful read is what was read (non-printable bytes as '.').
 * Opens are non-blocking (a device that opens must not hang the test; "open" reports the
 * open alone), and the program kills itself after 20 s.
 * The tests read these lines and assert the kernel refused.
 *
 * Built static by the tests (gcc -static -O2), because the default rootfs has no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FIELDS 6

static void say(const char *op, int err, const char *detail)
{
    printf("%s %s%s%s\n", op, err ? strerrorname_np(err) : "OK", detail ? " " : "",
           detail ? detail : "");
    fflush(stdout);
}

static void printable(char *buf, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            buf[i] = '.';
    buf[n < 0 ? 0 : n] = 0;
}

/* read up to 256 bytes of an open fd and report them */
static void report_read(const char *op, int fd)
{
    char buf[257];
    ssize_t n = read(fd, buf, 256);
    int err = n < 0 ? errno : 0;
    close(fd);
    if (err) {
        say(op, err, NULL);
        return;
    }
    printable(buf, n);
    say(op, 0, buf);
}

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, strlen(data));
    int err = errno;
    close(fd);
    errno = err;
    return n < 0 ? -1 : 0;
}

static int ns_flags(const char *names)
{
    int flags = 0;
    if (strstr(names, "user")) flags |= CLONE_NEWUSER;
    if (strstr(names, "mnt")) flags |= CLONE_NEWNS;
    if (strstr(names, "pid")) flags |= CLONE_NEWPID;
    if (strstr(names, "net")) flags |= CLONE_NEWNET;
    if (strstr(names, "uts")) flags |= CLONE_NEWUTS;
    if (strstr(names, "ipc")) flags |= CLONE_NEWIPC;
    if (strstr(names, "cgroup")) flags |= CLONE_NEWCGROUP;
    return flags;
}

/* unshare; in a new user namespace become its root (as an attacker would, to get its caps) */
static int do_unshare(const char *names)
{
    int flags = ns_flags(names);
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(flags) < 0)
        return -1;
    if (flags & CLONE_NEWUSER) {
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        if (write_file("/proc/self/uid_map", map) < 0)
            return -1;
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (write_file("/proc/self/gid_map", map) < 0)
            return -1;
    }
    return 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* open_by_handle_at(mount_fd of `mount_path`, handle of `type` with bytes `hex`) */
static void do_open_handle(const char *op, const char *mount_path, const char *type, const char *hex)
{
    size_t len = strlen(hex) / 2;
    struct file_handle *fh = calloc(1, sizeof *fh + len + 1);
    fh->handle_bytes = len;
    fh->handle_type = atoi(type);
    for (size_t i = 0; i < len; i++)
        fh->f_handle[i] = (unsigned char)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
    int mfd = open(mount_path, O_RDONLY);
    if (mfd < 0) {
        say(op, errno, "(mount fd)");
        return;
    }
    int fd = open_by_handle_at(mfd, fh, O_RDONLY);
    int err = errno;
    close(mfd);
    free(fh);
    if (fd < 0) {
        say(op, err, NULL);
        return;
    }
    report_read(op, fd);
}

static void do_handle_of(const char *op, const char *path)
{
    struct file_handle *fh = calloc(1, sizeof *fh + MAX_HANDLE_SZ);
    int mount_id;
    fh->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) < 0) {
        say(op, errno, NULL);
        return;
    }
    char out[2 * MAX_HANDLE_SZ + 32];
    int n = snprintf(out, sizeof out, "%d ", fh->handle_type);
    for (unsigned i = 0; i < fh->handle_bytes; i++)
        n += snprintf(out + n, sizeof out - n, "%02x", fh->f_handle[i]);
    say(op, 0, out);
}

/* the classic chroot break-out: chroot into a subdirectory, walk up from the old cwd */
static void do_chroot_escape(const char *op, const char *path)
{
    mkdir("/tmp/.attack-chroot", 0700);
    if (chroot("/tmp/.attack-chroot") < 0) {
        say(op, errno, "(chroot)");
        return;
    }
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            break;
    chroot(".");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        say(op, errno, NULL);
        return;
    }
    report_read(op, fd);
}

/* a system call Docker's default seccomp profile denies, with harmless arguments */
static long denied_syscall(const char *name)
{
    if (!strcmp(name, "kexec_load"))
        return syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0UL);
    if (!strcmp(name, "init_module"))
        return syscall(SYS_init_module, NULL, 0UL, "");
    if (!strcmp(name, "finit_module"))
        return syscall(SYS_finit_module, -1, "", 0);
    if (!strcmp(name, "delete_module"))
        return syscall(SYS_delete_module, "attack_none", 0);
    if (!strcmp(name, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    }
    if (!strcmp(name, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_CPU_CLOCK;
        attr.exclude_kernel = 1;
        return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL);
    }
    if (!strcmp(name, "keyctl"))
        return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "attack", "x", 1UL, KEY_SPEC_PROCESS_KEYRING);
    if (!strcmp(name, "request_key"))
        return syscall(SYS_request_key, "user", "attack", NULL, KEY_SPEC_PROCESS_KEYRING);
    if (!strcmp(name, "userfaultfd"))
        return syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (!strcmp(name, "open_by_handle_at")) {
        struct file_handle fh = {.handle_bytes = 0, .handle_type = 1};
        return syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY);
    }
    if (!strcmp(name, "mount"))
        return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0UL, NULL);
    if (!strcmp(name, "umount2"))
        return syscall(SYS_umount2, "/proc", MNT_DETACH);
    if (!strcmp(name, "pivot_root"))
        return syscall(SYS_pivot_root, "/", "/");
    if (!strcmp(name, "unshare"))
        return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(name, "setns"))
        return syscall(SYS_setns, open("/proc/self/ns/mnt", O_RDONLY), 0);
    if (!strcmp(name, "ptrace")) /* seize: no stop left behind should it be allowed */
        return syscall(SYS_ptrace, PTRACE_SEIZE, 1, NULL, NULL);
    if (!strcmp(name, "swapon"))
        return syscall(SYS_swapon, "/dev/null", 0);
    if (!strcmp(name, "reboot"))
        return syscall(SYS_reboot, 0, 0, 0, NULL); /* bad magic: EINVAL if allowed */
    if (!strcmp(name, "acct"))
        return syscall(SYS_acct, NULL);
    if (!strcmp(name, "settimeofday"))
        return syscall(SYS_settimeofday, NULL, NULL);
    errno = ENOSYS;
    return -2;
}

static void step(char *arg)
{
    char *f[MAX_FIELDS] = {0};
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(arg, ":", &save); tok && n < MAX_FIELDS; tok = strtok_r(NULL, ":", &save))
        f[n++] = tok;
    const char *op = f[0] ? f[0] : "";
    int rc;

    if (!strcmp(op, "euid")) {
        char out[64];
        snprintf(out, sizeof out, "%u %u", (unsigned)geteuid(), (unsigned)getuid());
        say(op, 0, out);
    } else if (!strcmp(op, "open") && f[1]) {
        int fd = open(f[1], O_RDWR | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 && (errno == EISDIR || errno == EROFS))
            fd = open(f[1], O_RDONLY | O_NONBLOCK | O_NOCTTY);
        say(op, fd < 0 ? errno : 0, NULL);
        if (fd >= 0)
            close(fd);
    } else if (!strcmp(op, "read") && f[1]) {
        int fd = open(f[1], O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
            say(op, errno, NULL);
        else
            report_read(op, fd);
    } else if (!strcmp(op, "write") && f[1]) {
        int fd = open(f[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            say(op, errno, NULL);
            return;
        }
        const char *data = f[2] ? f[2] : "pwned\n";
        ssize_t w = write(fd, data, strlen(data));
        int err = w < 0 ? errno : 0;
        if (close(fd) < 0 && !err)
            err = errno;
        say(op, err, NULL);
    } else if (!strcmp(op, "mount") && f[3]) {
        mkdir(f[2], 0755);
        rc = mount(f[1], f[2], f[3], 0, f[4]);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "bind") && f[2]) {
        mkdir(f[2], 0755);
        rc = mount(f[1], f[2], NULL, MS_BIND | MS_REC, NULL);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "remount-rw") && f[1]) {
        rc = mount(NULL, f[1], NULL, MS_REMOUNT | MS_BIND, NULL);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "remount-sb-rw") && f[1]) {
        rc = mount("none", f[1], NULL, MS_REMOUNT, NULL);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "umount") && f[1]) {
        rc = umount2(f[1], MNT_DETACH);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "unshare") && f[1]) {
        rc = do_unshare(f[1]);
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "clone") && f[1]) {
        pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)ns_flags(f[1]) | SIGCHLD, NULL, NULL, NULL, 0UL);
        if (pid == 0)
            _exit(0);
        int err = pid < 0 ? errno : 0;
        if (pid > 0)
            waitpid(pid, NULL, 0);
        say(op, err, NULL);
    } else if (!strcmp(op, "setns") && f[1]) {
        int fd = open(f[1], O_RDONLY);
        if (fd < 0) {
            say(op, errno, "(open)");
            return;
        }
        rc = setns(fd, 0);
        say(op, rc < 0 ? errno : 0, NULL);
        close(fd);
    } else if (!strcmp(op, "handle-of") && f[1]) {
        do_handle_of(op, f[1]);
    } else if (!strcmp(op, "open-handle") && f[3]) {
        do_open_handle(op, f[1], f[2], f[3]);
    } else if (!strcmp(op, "ptrace") && f[1]) {
        pid_t pid = atoi(f[1]);
        rc = (int)ptrace(PTRACE_ATTACH, pid, NULL, NULL);
        int err = rc < 0 ? errno : 0;
        if (!err) {
            waitpid(pid, NULL, __WALL);
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        }
        say(op, err, NULL);
    } else if (!strcmp(op, "mknod") && f[4]) {
        mode_t type = f[2][0] == 'b' ? S_IFBLK : S_IFCHR;
        rc = mknod(f[1], type | 0600, makedev(atoi(f[3]), atoi(f[4])));
        say(op, rc < 0 ? errno : 0, NULL);
    } else if (!strcmp(op, "chroot-escape") && f[1]) {
        do_chroot_escape(op, f[1]);
    } else if (!strcmp(op, "syscall") && f[1]) {
        long r = denied_syscall(f[1]);
        say(op, r == -2 ? ENOSYS : r < 0 ? errno : 0, f[1]);
    } else {
        say(op, EINVAL, "(unknown step)");
    }
}

int main(int argc, char **argv)
{
    alarm(20);
    for (int i = 1; i < argc; i++)
        step(argv[i]);
    return 0;
}
