/*
 * proto.h: the wshd socket protocol. One request or reply is one SOCK_SEQPACKET datagram of at
 * most PROTO_MAX_DATAGRAM bytes: an 8-byte header ("WSHD", u16 version, u16 kind, big-endian)
 * then TLV fields (u16 tag, u32 length, value). A request is decoded and validated completely
 * into struct proto_request before anything acts on it; nothing here touches the kernel.
 * plugins/wshd_exec/warden_wshd_exec/wshd_client.py holds the same constants.
 */
#ifndef WSHD_PROTO_H
#define WSHD_PROTO_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC "WSHD"
#define PROTO_VERSION 1
#define PROTO_HEADER_SIZE 8
#define PROTO_FIELD_HEADER_SIZE 6
#define PROTO_MAX_DATAGRAM 65536
#define PROTO_MAX_ARGS 1024
#define PROTO_MAX_ENV 1024
#define PROTO_MAX_STRING (32 * 1024)
#define PROTO_MAX_RLIMITS 16 /* RLIM_NLIMITS: one entry per resource at most */
#define PROTO_RLIMIT_SIZE 20 /* u32 resource, u64 soft, u64 hard */
#define PROTO_RLIM_INFINITY UINT64_MAX
#define PROTO_MAX_SIGNO 64
#define PROTO_SPAWN_FDS 4 /* stdin, stdout, stderr, status */
/* OUTPUT_LIMIT is compared with file sizes (off_t) and has a chunk added: it stays below 2^63. */
#define PROTO_MAX_OUTPUT_LIMIT ((uint64_t)INT64_MAX - (1u << 20))

enum proto_kind {
    PROTO_KIND_ERROR = 0,
    PROTO_KIND_SPAWN = 1,
    PROTO_KIND_WAIT = 2,
    PROTO_KIND_EXIT = 3,
    PROTO_KIND_SIGNAL = 4,
    PROTO_KIND_PING = 5,
};

enum proto_tag {
    PROTO_TAG_ARG = 1,
    PROTO_TAG_ENV = 2,
    PROTO_TAG_DIR = 3,
    PROTO_TAG_UID = 4,
    PROTO_TAG_GID = 5,
    PROTO_TAG_RLIMIT = 6,
    PROTO_TAG_OUTPUT_LIMIT = 7,
    PROTO_TAG_TTY = 8,
    PROTO_TAG_STATUS = 100,
    PROTO_TAG_PID = 101,
    PROTO_TAG_MESSAGE = 102,
    PROTO_TAG_EXIT_CODE = 103,
    PROTO_TAG_SIGNAL = 104,
    PROTO_TAG_SIGNO = 105,
    PROTO_TAG_GROUP = 106,
};

struct proto_rlimit {
    uint32_t resource;
    uint64_t soft;
    uint64_t hard;
};

/*
 * A validated SPAWN: argv and envp are NULL-terminated; dir defaults to "/". With
 * has_output_limit, wshd copies the job's stdout and stderr into the received fds itself and
 * kills the job's group once more than output_limit bytes came (see output.c). With tty, the
 * received stdin is a terminal that becomes the job's controlling terminal (TTY field).
 */
struct proto_spawn {
    size_t argc;
    size_t envc;
    size_t nrlimits;
    char *argv[PROTO_MAX_ARGS + 1];
    char *envp[PROTO_MAX_ENV + 1];
    const char *dir;
    uint32_t uid;
    uint32_t gid;
    bool has_output_limit;
    bool tty;
    uint64_t output_limit;
    struct proto_rlimit rlimits[PROTO_MAX_RLIMITS];
};

/* The job a WAIT or SIGNAL names. */
struct proto_target {
    uint32_t pid;
    uint32_t signo;
    bool group;
};

struct proto_request {
    uint16_t kind;
    struct proto_spawn spawn;
    struct proto_target target;
    char strings[PROTO_MAX_DATAGRAM]; /* NUL-terminated copies of the string fields */
};

struct proto_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

struct proto_field {
    uint16_t tag;
    uint32_t len;
    const uint8_t *value;
};

struct proto_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow; /* set once a field did not fit; the message must not be sent */
};

/* Check magic, version and size; set *kind and point r at the first field. */
int proto_read_header(const uint8_t *buf, size_t len, uint16_t *kind, struct proto_reader *r,
                      struct wshd_error *err);

/* Read the next field: 1 = *f filled, 0 = end of message, -1 = truncated (err set). */
int proto_next_field(struct proto_reader *r, struct proto_field *f, struct wshd_error *err);

/* Decode and validate a whole request; req->strings owns the strings argv/envp/dir point to. */
int proto_decode_request(const uint8_t *buf, size_t len, struct proto_request *req,
                         struct wshd_error *err);

/* Name of a kind for messages ("SPAWN"), or "?" for an unknown one. */
const char *proto_kind_name(uint16_t kind);

void proto_writer_init(struct proto_writer *w, uint8_t *buf, size_t cap, uint16_t kind);
void proto_put_bytes(struct proto_writer *w, uint16_t tag, const void *value, size_t len);
void proto_put_string(struct proto_writer *w, uint16_t tag, const char *value);
void proto_put_u8(struct proto_writer *w, uint16_t tag, uint8_t value);
void proto_put_u32(struct proto_writer *w, uint16_t tag, uint32_t value);
void proto_put_u64(struct proto_writer *w, uint16_t tag, uint64_t value);
void proto_put_rlimit(struct proto_writer *w, const struct proto_rlimit *rl);

uint32_t proto_get_u32(const uint8_t *p);

#endif
