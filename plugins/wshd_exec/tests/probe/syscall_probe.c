/*
 * syscall_probe: a static test helper the wshd tests copy into a container root. Each mode
 * makes one kind of system call and prints its result as "ok" or the errno name's number, so
 * the tests can check what the seccomp filter lets through. Not part of wshd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, long rc)
{
    if (rc < 0)
        printf("%s errno %d\n", what, errno);
    else
        printf("%s ok\n", what);
}

/* personality(arg) for each argument; the query 0xffffffff leaves the persona as it was. */
static int personas(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        unsigned long arg = strtoul(argv[i], NULL, 0);
        long rc = syscall(SYS_personality, arg);

        report(argv[i], rc);
        if (rc >= 0)
            syscall(SYS_personality, (unsigned long)rc);
    }
    return 0;
}

/* clone(flags | SIGCHLD): the child exits at once. */
static int clone_flags(const char *text)
{
    unsigned long flags = strtoul(text, NULL, 0);
    long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);

    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    report(text, pid);
    return 0;
}

static int clone3_plain(void)
{
    struct clone_args args = {.exit_signal = SIGCHLD};
    long pid = syscall(SYS_clone3, &args, sizeof args);

    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    report("clone3", pid);
    return 0;
}

/*
 * System calls the filter refuses, each made with zero arguments: harmless (or a plain error)
 * if it were let through, EPERM when refused.
 */
static const struct {
    const char *name;
    long nr;
} blocked[] = {
    {"ptrace", SYS_ptrace},           {"unshare", SYS_unshare},
    {"setns", SYS_setns},             {"mount", SYS_mount},
    {"umount2", SYS_umount2},         {"pivot_root", SYS_pivot_root},
    {"keyctl", SYS_keyctl},           {"add_key", SYS_add_key},
    {"bpf", SYS_bpf},                 {"userfaultfd", SYS_userfaultfd},
    {"io_uring_setup", SYS_io_uring_setup}, {"perf_event_open", SYS_perf_event_open},
    {"open_by_handle_at", SYS_open_by_handle_at}, {"process_vm_readv", SYS_process_vm_readv},
    {"kexec_load", SYS_kexec_load},   {"init_module", SYS_init_module},
    {"syslog", SYS_syslog},           {"open_tree", SYS_open_tree},
    {"fsopen", SYS_fsopen},           {"move_mount", SYS_move_mount},
};

static int blocked_calls(void)
{
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        report(blocked[i].name, syscall(blocked[i].nr, 0, 0, 0, 0, 0, 0));
    return 0;
}

/* getpid through the i386 (int 0x80) or x32 entry: the filter must kill the process. */
static int foreign_abi(const char *abi)
{
    long rc;

    if (strcmp(abi, "i386") == 0) {
        rc = 20; /* __NR_getpid on i386 */
        __asm__ volatile("int $0x80" : "+a"(rc) : : "memory");
    } else {
        rc = syscall(0x40000000 | SYS_getpid);
    }
    printf("%s survived %ld\n", abi, rc);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && strcmp(argv[1], "personality") == 0)
        return personas(argc, argv);
    if (argc == 3 && strcmp(argv[1], "clone") == 0)
        return clone_flags(argv[2]);
    if (argc == 2 && strcmp(argv[1], "clone3") == 0)
        return clone3_plain();
    if (argc == 3 && strcmp(argv[1], "abi") == 0)
        return foreign_abi(argv[2]);
    if (argc == 2 && strcmp(argv[1], "blocked") == 0)
        return blocked_calls();
    fprintf(stderr, "usage: syscall_probe personality ARG... | clone FLAGS | clone3 | blocked | "
                    "abi i386|x32\n");
    return 2;
}
