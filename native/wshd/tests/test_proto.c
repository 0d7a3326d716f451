/*
 * test_proto.c: unit tests of proto.c, the only code that reads what clients send. Each case
 * builds a datagram with proto_writer (or by hand, for what the writer cannot produce), decodes
 * it, and checks the result or the error text. Prints TAP lines; exits 1 if any case failed.
 * Needs no root and no kernel features.
 */
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_CAP (PROTO_MAX_DATAGRAM + 4096)

struct suite {
    int run;
    int failed;
    struct proto_request *req;
    uint8_t buf[BUF_CAP];
    char big[PROTO_MAX_STRING + 2];
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

static void expect_error(struct suite *s, const char *name, const uint8_t *buf, size_t len,
                         const char *fragment)
{
    struct wshd_error err = {0};
    char detail[400];
    int rc = proto_decode_request(buf, len, s->req, &err);

    snprintf(detail, sizeof detail, "rc=%d msg=\"%s\", want \"%s\"", rc, err.msg, fragment);
    report(s, rc < 0 && strstr(err.msg, fragment) != NULL, name, detail);
}

static int expect_ok(struct suite *s, const char *name, const struct proto_writer *w)
{
    struct wshd_error err = {0};
    int rc = w->overflow ? -1 : proto_decode_request(w->buf, w->len, s->req, &err);

    report(s, rc == 0, name, w->overflow ? "writer overflow" : err.msg);
    return rc == 0;
}

static void start(struct suite *s, struct proto_writer *w, uint16_t kind)
{
    proto_writer_init(w, s->buf, sizeof s->buf, kind);
}

/* ARG, UID and GID: the smallest valid SPAWN, to which a case adds its fields. */
static void start_spawn(struct suite *s, struct proto_writer *w)
{
    start(s, w, PROTO_KIND_SPAWN);
    proto_put_string(w, PROTO_TAG_ARG, "/bin/true");
    proto_put_u32(w, PROTO_TAG_UID, 1000);
    proto_put_u32(w, PROTO_TAG_GID, 1000);
}

static void test_valid_spawn(struct suite *s)
{
    struct proto_writer w;
    struct proto_rlimit nofile = {7, 1234, 1234};
    struct proto_rlimit core = {4, 0, PROTO_RLIM_INFINITY};
    const struct proto_spawn *sp = &s->req->spawn;

    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_string(&w, PROTO_TAG_ARG, "/bin/sh");
    proto_put_string(&w, PROTO_TAG_ARG, "-c");
    proto_put_string(&w, PROTO_TAG_ARG, "");
    proto_put_string(&w, PROTO_TAG_ENV, "PATH=/bin");
    proto_put_string(&w, PROTO_TAG_ENV, "EMPTY=");
    proto_put_string(&w, PROTO_TAG_DIR, "/home/vcap");
    proto_put_u32(&w, PROTO_TAG_UID, 10001);
    proto_put_u32(&w, PROTO_TAG_GID, 10002);
    proto_put_rlimit(&w, &nofile);
    proto_put_rlimit(&w, &core);
    if (!expect_ok(s, "valid spawn decodes", &w))
        return;
    report(s, sp->argc == 3 && strcmp(sp->argv[0], "/bin/sh") == 0 &&
                  strcmp(sp->argv[1], "-c") == 0 && sp->argv[2][0] == '\0' && sp->argv[3] == NULL,
           "valid spawn: argv in order, NULL-terminated", "");
    report(s, sp->envc == 2 && strcmp(sp->envp[1], "EMPTY=") == 0 && sp->envp[2] == NULL,
           "valid spawn: envp", "");
    report(s, strcmp(sp->dir, "/home/vcap") == 0 && sp->uid == 10001 && sp->gid == 10002,
           "valid spawn: dir, uid, gid", "");
    report(s, sp->nrlimits == 2 && sp->rlimits[0].resource == 7 && sp->rlimits[0].soft == 1234 &&
                  sp->rlimits[1].hard == PROTO_RLIM_INFINITY,
           "valid spawn: rlimits", "");
}

static void test_valid_minimal(struct suite *s)
{
    struct proto_writer w;

    start_spawn(s, &w);
    if (expect_ok(s, "minimal spawn decodes", &w))
        report(s, strcmp(s->req->spawn.dir, "/") == 0 && s->req->spawn.envc == 0 &&
                      s->req->spawn.envp[0] == NULL && s->req->spawn.nrlimits == 0,
               "minimal spawn: dir defaults to /, empty env", "");
    start(s, &w, PROTO_KIND_WAIT);
    proto_put_u32(&w, PROTO_TAG_PID, 42);
    if (expect_ok(s, "wait decodes", &w))
        report(s, s->req->target.pid == 42, "wait: pid", "");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 42);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 9);
    proto_put_u8(&w, PROTO_TAG_GROUP, 1);
    if (expect_ok(s, "signal decodes", &w))
        report(s, s->req->target.pid == 42 && s->req->target.signo == 9 && s->req->target.group,
               "signal: pid, signo, group", "");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 43);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 15);
    if (expect_ok(s, "signal without GROUP decodes", &w))
        report(s, !s->req->target.group, "signal: group defaults to 0", "");
    start(s, &w, PROTO_KIND_PING);
    if (expect_ok(s, "ping decodes", &w))
        report(s, s->req->kind == PROTO_KIND_PING, "ping: kind", "");
}

static void test_header(struct suite *s)
{
    uint8_t raw[16] = {'W', 'S', 'H', 'D', 0, 1, 0, 5};

    expect_error(s, "empty datagram", raw, 0, "truncated header");
    expect_error(s, "7-byte header", raw, 7, "truncated header");
    raw[0] = 'X';
    expect_error(s, "bad magic", raw, 8, "bad magic");
    raw[0] = 'W';
    raw[5] = 2;
    expect_error(s, "unsupported version", raw, 8, "unsupported version 2");
    raw[5] = 1;
    raw[7] = 9;
    expect_error(s, "unknown kind", raw, 8, "unknown kind 9");
    raw[7] = PROTO_KIND_EXIT;
    expect_error(s, "EXIT is not a request", raw, 8, "kind EXIT is not a request");
    raw[7] = PROTO_KIND_ERROR;
    expect_error(s, "ERROR is not a request", raw, 8, "kind ERROR is not a request");
}

static void test_truncation(struct suite *s)
{
    struct proto_writer w;
    uint8_t raw[32] = {'W', 'S', 'H', 'D', 0, 1, 0, 2, 0, 101, 0, 0};

    expect_error(s, "truncated field header", raw, 11, "truncated field header at offset 8");
    raw[13] = 4; /* PID field claims 4 bytes, 2 present */
    expect_error(s, "field runs past the end", raw, 16, "runs past the end");
    raw[10] = 0xff; /* length 0xff000004: must not wrap */
    expect_error(s, "huge field length", raw, 18, "runs past the end");
    start_spawn(s, &w);
    expect_error(s, "datagram cut inside a field", w.buf, w.len - 1, "runs past the end");
    expect_error(s, "oversize datagram", w.buf, PROTO_MAX_DATAGRAM + 1, "message too long");
}

static void test_size_limits(struct suite *s)
{
    struct proto_writer w;

    /* Exactly PROTO_MAX_DATAGRAM: 8 header + 2 * 10 ids + two ARG fields of 6 + 32768/32728. */
    memset(s->big, 'a', PROTO_MAX_STRING + 1);
    s->big[PROTO_MAX_STRING] = '\0';
    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_u32(&w, PROTO_TAG_UID, 1);
    proto_put_u32(&w, PROTO_TAG_GID, 1);
    proto_put_string(&w, PROTO_TAG_ARG, s->big);
    proto_put_bytes(&w, PROTO_TAG_ARG, s->big, PROTO_MAX_DATAGRAM - w.len - 6);
    report(s, w.len == PROTO_MAX_DATAGRAM, "datagram of exactly the maximum size built", "");
    expect_ok(s, "datagram of exactly the maximum size decodes", &w);
    s->big[PROTO_MAX_STRING] = 'a';
    s->big[PROTO_MAX_STRING + 1] = '\0';
    start_spawn(s, &w);
    proto_put_string(&w, PROTO_TAG_ARG, s->big);
    expect_error(s, "string longer than 32 KiB", w.buf, w.len, "field ARG: 32769 bytes");
    start_spawn(s, &w);
    for (int i = 0; i < PROTO_MAX_ARGS; i++)
        proto_put_string(&w, PROTO_TAG_ARG, "a");
    expect_error(s, "1025 args", w.buf, w.len, "too many ARG fields");
    start_spawn(s, &w);
    for (int i = 0; i <= PROTO_MAX_ENV; i++)
        proto_put_string(&w, PROTO_TAG_ENV, "A=1");
    expect_error(s, "1025 env entries", w.buf, w.len, "too many ENV fields");
}

static void test_fields(struct suite *s)
{
    struct proto_writer w;

    start_spawn(s, &w);
    proto_put_u32(&w, 77, 1);
    expect_error(s, "unknown tag", w.buf, w.len, "unknown field tag 77");
    start_spawn(s, &w);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 9);
    expect_error(s, "SIGNO in SPAWN", w.buf, w.len, "field SIGNO not allowed in SPAWN");
    start(s, &w, PROTO_KIND_PING);
    proto_put_string(&w, PROTO_TAG_ARG, "x");
    expect_error(s, "ARG in PING", w.buf, w.len, "field ARG not allowed in PING");
    start(s, &w, PROTO_KIND_WAIT);
    proto_put_u32(&w, PROTO_TAG_PID, 5);
    proto_put_u8(&w, PROTO_TAG_STATUS, 0);
    expect_error(s, "reply field STATUS in WAIT", w.buf, w.len, "field STATUS not allowed in WAIT");
    start_spawn(s, &w);
    proto_put_string(&w, PROTO_TAG_DIR, "/a");
    proto_put_string(&w, PROTO_TAG_DIR, "/b");
    expect_error(s, "DIR twice", w.buf, w.len, "field DIR given twice");
    start_spawn(s, &w);
    proto_put_u32(&w, PROTO_TAG_UID, 5);
    expect_error(s, "UID twice", w.buf, w.len, "field UID given twice");
    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_bytes(&w, PROTO_TAG_UID, "\0\0\1", 3);
    expect_error(s, "UID of 3 bytes", w.buf, w.len, "field UID: length 3, want 4");
}

static void test_missing(struct suite *s)
{
    struct proto_writer w;

    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_u32(&w, PROTO_TAG_UID, 1);
    proto_put_u32(&w, PROTO_TAG_GID, 1);
    expect_error(s, "SPAWN without ARG", w.buf, w.len, "SPAWN: missing field ARG");
    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_string(&w, PROTO_TAG_ARG, "/bin/true");
    proto_put_u32(&w, PROTO_TAG_GID, 1);
    expect_error(s, "SPAWN without UID", w.buf, w.len, "SPAWN: missing field UID");
    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_string(&w, PROTO_TAG_ARG, "/bin/true");
    proto_put_u32(&w, PROTO_TAG_UID, 1);
    expect_error(s, "SPAWN without GID", w.buf, w.len, "SPAWN: missing field GID");
    start(s, &w, PROTO_KIND_WAIT);
    expect_error(s, "WAIT without PID", w.buf, w.len, "WAIT: missing field PID");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    expect_error(s, "SIGNAL without SIGNO", w.buf, w.len, "SIGNAL: missing field SIGNO");
}

static void test_string_values(struct suite *s)
{
    struct proto_writer w;

    start_spawn(s, &w);
    proto_put_bytes(&w, PROTO_TAG_ARG, "a\0b", 3);
    expect_error(s, "ARG with a NUL", w.buf, w.len, "field ARG: contains a NUL byte");
    start_spawn(s, &w);
    proto_put_string(&w, PROTO_TAG_ENV, "NOEQUALS");
    expect_error(s, "ENV without =", w.buf, w.len, "is not NAME=VALUE");
    start_spawn(s, &w);
    proto_put_string(&w, PROTO_TAG_ENV, "=value");
    expect_error(s, "ENV with empty name", w.buf, w.len, "is not NAME=VALUE");
    start_spawn(s, &w);
    proto_put_string(&w, PROTO_TAG_DIR, "tmp");
    expect_error(s, "relative DIR", w.buf, w.len, "is not an absolute path");
}

static void test_number_values(struct suite *s)
{
    struct proto_writer w;
    struct proto_rlimit bad_res = {PROTO_MAX_RLIMITS, 1, 1};
    struct proto_rlimit inverted = {7, 10, 5};
    struct proto_rlimit ok = {7, 5, 10};

    start(s, &w, PROTO_KIND_SPAWN);
    proto_put_string(&w, PROTO_TAG_ARG, "/bin/true");
    proto_put_u32(&w, PROTO_TAG_UID, UINT32_MAX);
    proto_put_u32(&w, PROTO_TAG_GID, 1);
    expect_error(s, "UID -1", w.buf, w.len, "field UID: 4294967295 is not a valid id");
    start_spawn(s, &w);
    proto_put_bytes(&w, PROTO_TAG_RLIMIT, "\0\0\0\7", 4);
    expect_error(s, "RLIMIT of 4 bytes", w.buf, w.len, "field RLIMIT: length 4, want 20");
    start_spawn(s, &w);
    proto_put_rlimit(&w, &bad_res);
    expect_error(s, "RLIMIT resource 16", w.buf, w.len, "unknown resource 16");
    start_spawn(s, &w);
    proto_put_rlimit(&w, &inverted);
    expect_error(s, "RLIMIT soft above hard", w.buf, w.len, "soft limit above hard limit");
    start_spawn(s, &w);
    proto_put_rlimit(&w, &ok);
    proto_put_rlimit(&w, &ok);
    expect_error(s, "RLIMIT resource twice", w.buf, w.len, "resource 7 given twice");
}

static void test_output_limit(struct suite *s)
{
    struct proto_writer w;

    start_spawn(s, &w);
    if (expect_ok(s, "spawn without OUTPUT_LIMIT decodes", &w))
        report(s, !s->req->spawn.has_output_limit, "no OUTPUT_LIMIT: output goes to the fds", "");
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, 102400);
    if (expect_ok(s, "OUTPUT_LIMIT decodes", &w))
        report(s, s->req->spawn.has_output_limit && s->req->spawn.output_limit == 102400,
               "OUTPUT_LIMIT: value read back", "");
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, 0);
    if (expect_ok(s, "OUTPUT_LIMIT 0 decodes", &w))
        report(s, s->req->spawn.has_output_limit && s->req->spawn.output_limit == 0,
               "OUTPUT_LIMIT 0: any output passes it", "");
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, PROTO_MAX_OUTPUT_LIMIT);
    expect_ok(s, "OUTPUT_LIMIT at its maximum decodes", &w);
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, PROTO_MAX_OUTPUT_LIMIT + 1);
    expect_error(s, "OUTPUT_LIMIT past its maximum", w.buf, w.len, "field OUTPUT_LIMIT: ");
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, UINT64_MAX);
    expect_error(s, "OUTPUT_LIMIT all ones", w.buf, w.len, "is too large");
    start_spawn(s, &w);
    proto_put_u32(&w, PROTO_TAG_OUTPUT_LIMIT, 5);
    expect_error(s, "OUTPUT_LIMIT of 4 bytes", w.buf, w.len, "field OUTPUT_LIMIT: length 4, want 8");
    start_spawn(s, &w);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, 1);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, 2);
    expect_error(s, "OUTPUT_LIMIT twice", w.buf, w.len, "field OUTPUT_LIMIT given twice");
    start(s, &w, PROTO_KIND_WAIT);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    proto_put_u64(&w, PROTO_TAG_OUTPUT_LIMIT, 1);
    expect_error(s, "OUTPUT_LIMIT in WAIT", w.buf, w.len, "field OUTPUT_LIMIT not allowed in WAIT");
}

static void test_tty(struct suite *s)
{
    struct proto_writer w;

    start_spawn(s, &w);
    if (expect_ok(s, "spawn without TTY decodes", &w))
        report(s, !s->req->spawn.tty, "no TTY: stdin is not made a controlling terminal", "");
    start_spawn(s, &w);
    proto_put_u8(&w, PROTO_TAG_TTY, 1);
    if (expect_ok(s, "TTY 1 decodes", &w))
        report(s, s->req->spawn.tty, "TTY 1: stdin becomes the controlling terminal", "");
    start_spawn(s, &w);
    proto_put_u8(&w, PROTO_TAG_TTY, 0);
    if (expect_ok(s, "TTY 0 decodes", &w))
        report(s, !s->req->spawn.tty, "TTY 0: no controlling terminal", "");
    start_spawn(s, &w);
    proto_put_u8(&w, PROTO_TAG_TTY, 1);
    if (expect_ok(s, "TTY set", &w)) {
        start_spawn(s, &w);
        if (expect_ok(s, "the next spawn without TTY decodes", &w))
            report(s, !s->req->spawn.tty, "TTY does not carry over to the next request", "");
    }
    start_spawn(s, &w);
    proto_put_u8(&w, PROTO_TAG_TTY, 2);
    expect_error(s, "TTY 2", w.buf, w.len, "field TTY: 2 is not 0 or 1");
    start_spawn(s, &w);
    proto_put_u32(&w, PROTO_TAG_TTY, 1);
    expect_error(s, "TTY of 4 bytes", w.buf, w.len, "field TTY: length 4, want 1");
    start_spawn(s, &w);
    proto_put_u8(&w, PROTO_TAG_TTY, 1);
    proto_put_u8(&w, PROTO_TAG_TTY, 1);
    expect_error(s, "TTY twice", w.buf, w.len, "field TTY given twice");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 28);
    proto_put_u8(&w, PROTO_TAG_TTY, 1);
    expect_error(s, "TTY in SIGNAL", w.buf, w.len, "field TTY not allowed in SIGNAL");
}

static void test_target_values(struct suite *s)
{
    struct proto_writer w;

    start(s, &w, PROTO_KIND_WAIT);
    proto_put_u32(&w, PROTO_TAG_PID, 0);
    expect_error(s, "PID 0", w.buf, w.len, "field PID: 0 is not a valid pid");
    start(s, &w, PROTO_KIND_WAIT);
    proto_put_u32(&w, PROTO_TAG_PID, 0x80000000u);
    expect_error(s, "PID above INT32_MAX", w.buf, w.len, "is not a valid pid");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 0);
    expect_error(s, "SIGNO 0", w.buf, w.len, "field SIGNO: 0 is not a signal number");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 65);
    expect_error(s, "SIGNO 65", w.buf, w.len, "field SIGNO: 65 is not a signal number");
    start(s, &w, PROTO_KIND_SIGNAL);
    proto_put_u32(&w, PROTO_TAG_PID, 3);
    proto_put_u32(&w, PROTO_TAG_SIGNO, 9);
    proto_put_u8(&w, PROTO_TAG_GROUP, 2);
    expect_error(s, "GROUP 2", w.buf, w.len, "field GROUP: 2 is not 0 or 1");
}

static void test_writer(struct suite *s)
{
    uint8_t small[20];
    struct proto_writer w;
    struct proto_reader r;
    struct proto_field f;
    struct wshd_error err = {0};
    uint16_t kind = 0;
    int n;

    proto_writer_init(&w, small, sizeof small, PROTO_KIND_EXIT);
    proto_put_u32(&w, PROTO_TAG_PID, 7);
    report(s, !w.overflow && w.len == 18, "writer: EXIT with PID fits in 18 bytes", "");
    proto_put_u32(&w, PROTO_TAG_EXIT_CODE, 3);
    report(s, w.overflow, "writer: a field that does not fit sets overflow", "");
    proto_writer_init(&w, s->buf, sizeof s->buf, PROTO_KIND_EXIT);
    proto_put_u32(&w, PROTO_TAG_PID, 7);
    proto_put_u32(&w, PROTO_TAG_EXIT_CODE, 3);
    n = proto_read_header(w.buf, w.len, &kind, &r, &err) == 0 && kind == PROTO_KIND_EXIT;
    n = n && proto_next_field(&r, &f, &err) == 1 && f.tag == PROTO_TAG_PID &&
        proto_get_u32(f.value) == 7;
    n = n && proto_next_field(&r, &f, &err) == 1 && f.tag == PROTO_TAG_EXIT_CODE &&
        proto_get_u32(f.value) == 3;
    n = n && proto_next_field(&r, &f, &err) == 0;
    report(s, n, "writer: EXIT reads back field by field", err.msg);
}

int main(void)
{
    struct suite *s = calloc(1, sizeof *s);

    if (s == NULL || (s->req = malloc(sizeof *s->req)) == NULL) {
        printf("Bail out! out of memory\n");
        return 1;
    }
    test_valid_spawn(s);
    test_valid_minimal(s);
    test_header(s);
    test_truncation(s);
    test_size_limits(s);
    test_fields(s);
    test_missing(s);
    test_string_values(s);
    test_number_values(s);
    test_output_limit(s);
    test_tty(s);
    test_target_values(s);
    test_writer(s);
    printf("1..%d\n", s->run);
    if (s->failed > 0)
        printf("# %d of %d failed\n", s->failed, s->run);
    return s->failed > 0;
}
