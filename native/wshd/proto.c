/*
 * proto.c: encode and decode wshd datagrams. Decoding checks every length against what is left
 * of the datagram before reading, refuses unknown tags, fields that do not belong to the kind,
 * repeated singular fields and missing required ones, so that a decoded request can be acted on
 * without further checks. Field rules are one table; a new field is one line there plus its
 * value check.
 */
#include "proto.h"

#include <string.h>

#define KIND_BIT(k) (1u << (k))
#define RULE_BIT(r) (1u << (r))

enum field_rule_id {
    R_ARG,
    R_ENV,
    R_DIR,
    R_UID,
    R_GID,
    R_RLIMIT,
    R_OUTPUT_LIMIT,
    R_TTY,
    R_STATUS,
    R_PID,
    R_MESSAGE,
    R_EXIT_CODE,
    R_SIGNAL,
    R_SIGNO,
    R_GROUP,
    R_COUNT,
};

struct field_rule {
    uint16_t tag;
    const char *name;
    uint32_t kinds; /* request kinds the field may appear in; 0 = reply-only */
    uint32_t size;  /* exact value length, 0 = variable (a string) */
    bool repeated;
};

static const struct field_rule field_rules[R_COUNT] = {
    [R_ARG] = {PROTO_TAG_ARG, "ARG", KIND_BIT(PROTO_KIND_SPAWN), 0, true},
    [R_ENV] = {PROTO_TAG_ENV, "ENV", KIND_BIT(PROTO_KIND_SPAWN), 0, true},
    [R_DIR] = {PROTO_TAG_DIR, "DIR", KIND_BIT(PROTO_KIND_SPAWN), 0, false},
    [R_UID] = {PROTO_TAG_UID, "UID", KIND_BIT(PROTO_KIND_SPAWN), 4, false},
    [R_GID] = {PROTO_TAG_GID, "GID", KIND_BIT(PROTO_KIND_SPAWN), 4, false},
    [R_RLIMIT] = {PROTO_TAG_RLIMIT, "RLIMIT", KIND_BIT(PROTO_KIND_SPAWN), PROTO_RLIMIT_SIZE, true},
    [R_OUTPUT_LIMIT] = {PROTO_TAG_OUTPUT_LIMIT, "OUTPUT_LIMIT", KIND_BIT(PROTO_KIND_SPAWN), 8,
                        false},
    [R_TTY] = {PROTO_TAG_TTY, "TTY", KIND_BIT(PROTO_KIND_SPAWN), 1, false},
    [R_STATUS] = {PROTO_TAG_STATUS, "STATUS", 0, 1, false},
    [R_PID] = {PROTO_TAG_PID, "PID", KIND_BIT(PROTO_KIND_WAIT) | KIND_BIT(PROTO_KIND_SIGNAL), 4,
               false},
    [R_MESSAGE] = {PROTO_TAG_MESSAGE, "MESSAGE", 0, 0, false},
    [R_EXIT_CODE] = {PROTO_TAG_EXIT_CODE, "EXIT_CODE", 0, 4, false},
    [R_SIGNAL] = {PROTO_TAG_SIGNAL, "SIGNAL", 0, 4, false},
    [R_SIGNO] = {PROTO_TAG_SIGNO, "SIGNO", KIND_BIT(PROTO_KIND_SIGNAL), 4, false},
    [R_GROUP] = {PROTO_TAG_GROUP, "GROUP", KIND_BIT(PROTO_KIND_SIGNAL), 1, false},
};

struct kind_rule {
    const char *name;
    bool request;      /* a client may send it */
    uint32_t required; /* RULE_BIT set of fields that must be present */
};

static const struct kind_rule kind_rules[] = {
    [PROTO_KIND_ERROR] = {"ERROR", false, 0},
    [PROTO_KIND_SPAWN] = {"SPAWN", true, RULE_BIT(R_ARG) | RULE_BIT(R_UID) | RULE_BIT(R_GID)},
    [PROTO_KIND_WAIT] = {"WAIT", true, RULE_BIT(R_PID)},
    [PROTO_KIND_EXIT] = {"EXIT", false, 0},
    [PROTO_KIND_SIGNAL] = {"SIGNAL", true, RULE_BIT(R_PID) | RULE_BIT(R_SIGNO)},
    [PROTO_KIND_PING] = {"PING", true, 0},
};

#define KIND_COUNT (sizeof kind_rules / sizeof kind_rules[0])

struct decoder {
    struct proto_request *req;
    uint32_t seen; /* RULE_BIT set of fields met so far */
    size_t used;   /* bytes of req->strings in use */
};

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t proto_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)proto_get_u32(p) << 32 | proto_get_u32(p + 4);
}

static void set_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void set_u32(uint8_t *p, uint32_t v)
{
    set_u16(p, (uint16_t)(v >> 16));
    set_u16(p + 2, (uint16_t)v);
}

static void set_u64(uint8_t *p, uint64_t v)
{
    set_u32(p, (uint32_t)(v >> 32));
    set_u32(p + 4, (uint32_t)v);
}

const char *proto_kind_name(uint16_t kind)
{
    return kind < KIND_COUNT ? kind_rules[kind].name : "?";
}

int proto_read_header(const uint8_t *buf, size_t len, uint16_t *kind, struct proto_reader *r,
                      struct wshd_error *err)
{
    uint16_t version;

    if (len > PROTO_MAX_DATAGRAM)
        return wshd_error_set(err, 0, "message too long (%zu bytes, max %d)", len,
                              PROTO_MAX_DATAGRAM);
    if (len < PROTO_HEADER_SIZE)
        return wshd_error_set(err, 0, "truncated header (%zu bytes, want %d)", len,
                              PROTO_HEADER_SIZE);
    if (memcmp(buf, PROTO_MAGIC, 4) != 0)
        return wshd_error_set(err, 0, "bad magic (want \"%s\")", PROTO_MAGIC);
    version = get_u16(buf + 4);
    if (version != PROTO_VERSION)
        return wshd_error_set(err, 0, "unsupported version %u (want %d)", version,
                              PROTO_VERSION);
    *kind = get_u16(buf + 6);
    r->buf = buf;
    r->len = len;
    r->pos = PROTO_HEADER_SIZE;
    return 0;
}

int proto_next_field(struct proto_reader *r, struct proto_field *f, struct wshd_error *err)
{
    size_t left = r->len - r->pos;

    if (left == 0)
        return 0;
    if (left < PROTO_FIELD_HEADER_SIZE)
        return wshd_error_set(err, 0, "truncated field header at offset %zu", r->pos);
    f->tag = get_u16(r->buf + r->pos);
    f->len = proto_get_u32(r->buf + r->pos + 2);
    if (f->len > left - PROTO_FIELD_HEADER_SIZE)
        return wshd_error_set(err, 0, "field tag %u at offset %zu: length %u runs past the end",
                              f->tag, r->pos, f->len);
    f->value = r->buf + r->pos + PROTO_FIELD_HEADER_SIZE;
    r->pos += PROTO_FIELD_HEADER_SIZE + f->len;
    return 1;
}

static int rule_for_tag(uint16_t tag)
{
    for (int id = 0; id < R_COUNT; id++)
        if (field_rules[id].tag == tag)
            return id;
    return -1;
}

static int decode_string(struct decoder *d, const struct proto_field *f, const char *name,
                         char **out, struct wshd_error *err)
{
    char *s;

    if (f->len > PROTO_MAX_STRING)
        return wshd_error_set(err, 0, "field %s: %u bytes, max %d", name, f->len,
                              PROTO_MAX_STRING);
    if (memchr(f->value, '\0', f->len) != NULL)
        return wshd_error_set(err, 0, "field %s: contains a NUL byte", name);
    /* Cannot trigger: every string costs a 6-byte field header but only 1 byte of NUL here. */
    if (f->len >= sizeof d->req->strings - d->used)
        return wshd_error_set(err, 0, "field %s: string space exhausted", name);
    s = d->req->strings + d->used;
    memcpy(s, f->value, f->len);
    s[f->len] = '\0';
    d->used += (size_t)f->len + 1;
    *out = s;
    return 0;
}

static int decode_arg(struct decoder *d, const struct proto_field *f, struct wshd_error *err)
{
    struct proto_spawn *sp = &d->req->spawn;

    if (sp->argc == PROTO_MAX_ARGS)
        return wshd_error_set(err, 0, "too many ARG fields (max %d)", PROTO_MAX_ARGS);
    if (decode_string(d, f, "ARG", &sp->argv[sp->argc], err) < 0)
        return -1;
    sp->argv[++sp->argc] = NULL;
    return 0;
}

static int decode_env(struct decoder *d, const struct proto_field *f, struct wshd_error *err)
{
    struct proto_spawn *sp = &d->req->spawn;
    char *entry;
    char *eq;

    if (sp->envc == PROTO_MAX_ENV)
        return wshd_error_set(err, 0, "too many ENV fields (max %d)", PROTO_MAX_ENV);
    if (decode_string(d, f, "ENV", &entry, err) < 0)
        return -1;
    eq = strchr(entry, '=');
    if (eq == NULL || eq == entry)
        return wshd_error_set(err, 0, "field ENV: \"%.40s\" is not NAME=VALUE", entry);
    sp->envp[sp->envc++] = entry;
    sp->envp[sp->envc] = NULL;
    return 0;
}

static int decode_dir(struct decoder *d, const struct proto_field *f, struct wshd_error *err)
{
    char *dir;

    if (decode_string(d, f, "DIR", &dir, err) < 0)
        return -1;
    if (dir[0] != '/')
        return wshd_error_set(err, 0, "field DIR: \"%.60s\" is not an absolute path", dir);
    d->req->spawn.dir = dir;
    return 0;
}

static int decode_id(const struct proto_field *f, const char *name, uint32_t *out,
                     struct wshd_error *err)
{
    uint32_t id = proto_get_u32(f->value);

    /* (uid_t)-1 means "leave unchanged" to setuid/setgid: never a real id. */
    if (id == UINT32_MAX)
        return wshd_error_set(err, 0, "field %s: %u is not a valid id", name, id);
    *out = id;
    return 0;
}

static int decode_rlimit(struct decoder *d, const struct proto_field *f, struct wshd_error *err)
{
    struct proto_spawn *sp = &d->req->spawn;
    struct proto_rlimit rl = {
        .resource = proto_get_u32(f->value),
        .soft = get_u64(f->value + 4),
        .hard = get_u64(f->value + 12),
    };

    if (rl.resource >= PROTO_MAX_RLIMITS)
        return wshd_error_set(err, 0, "field RLIMIT: unknown resource %u", rl.resource);
    if (rl.soft > rl.hard)
        return wshd_error_set(err, 0, "field RLIMIT: resource %u: soft limit above hard limit",
                              rl.resource);
    for (size_t i = 0; i < sp->nrlimits; i++)
        if (sp->rlimits[i].resource == rl.resource)
            return wshd_error_set(err, 0, "field RLIMIT: resource %u given twice", rl.resource);
    sp->rlimits[sp->nrlimits++] = rl;
    return 0;
}

static int decode_output_limit(struct decoder *d, const struct proto_field *f,
                               struct wshd_error *err)
{
    uint64_t limit = get_u64(f->value);

    if (limit > PROTO_MAX_OUTPUT_LIMIT)
        return wshd_error_set(err, 0, "field OUTPUT_LIMIT: %llu is too large (max %llu)",
                              (unsigned long long)limit,
                              (unsigned long long)PROTO_MAX_OUTPUT_LIMIT);
    d->req->spawn.has_output_limit = true;
    d->req->spawn.output_limit = limit;
    return 0;
}

/* A u8 flag (TTY, GROUP): 0 or 1, nothing else, so a typo in a client never reads as "on". */
static int decode_flag(const struct proto_field *f, const char *name, bool *out,
                       struct wshd_error *err)
{
    if (f->value[0] > 1)
        return wshd_error_set(err, 0, "field %s: %u is not 0 or 1", name, f->value[0]);
    *out = f->value[0] == 1;
    return 0;
}

static int decode_target(struct decoder *d, int id, const struct proto_field *f,
                         struct wshd_error *err)
{
    struct proto_target *t = &d->req->target;
    uint32_t v = f->len == 1 ? f->value[0] : proto_get_u32(f->value);

    switch (id) {
    case R_PID:
        if (v == 0 || v > INT32_MAX)
            return wshd_error_set(err, 0, "field PID: %u is not a valid pid", v);
        t->pid = v;
        return 0;
    case R_SIGNO:
        if (v == 0 || v > PROTO_MAX_SIGNO)
            return wshd_error_set(err, 0, "field SIGNO: %u is not a signal number", v);
        t->signo = v;
        return 0;
    default:
        return decode_flag(f, "GROUP", &t->group, err);
    }
}

static int decode_value(struct decoder *d, int id, const struct proto_field *f,
                        struct wshd_error *err)
{
    switch (id) {
    case R_ARG:
        return decode_arg(d, f, err);
    case R_ENV:
        return decode_env(d, f, err);
    case R_DIR:
        return decode_dir(d, f, err);
    case R_UID:
        return decode_id(f, "UID", &d->req->spawn.uid, err);
    case R_GID:
        return decode_id(f, "GID", &d->req->spawn.gid, err);
    case R_RLIMIT:
        return decode_rlimit(d, f, err);
    case R_OUTPUT_LIMIT:
        return decode_output_limit(d, f, err);
    case R_TTY:
        return decode_flag(f, "TTY", &d->req->spawn.tty, err);
    default:
        return decode_target(d, id, f, err);
    }
}

static int decode_field(struct decoder *d, const struct proto_field *f, struct wshd_error *err)
{
    int id = rule_for_tag(f->tag);
    const struct field_rule *rule;

    if (id < 0)
        return wshd_error_set(err, 0, "unknown field tag %u", f->tag);
    rule = &field_rules[id];
    if ((rule->kinds & KIND_BIT(d->req->kind)) == 0)
        return wshd_error_set(err, 0, "field %s not allowed in %s", rule->name,
                              proto_kind_name(d->req->kind));
    if (!rule->repeated && (d->seen & RULE_BIT(id)) != 0)
        return wshd_error_set(err, 0, "field %s given twice", rule->name);
    if (rule->size != 0 && f->len != rule->size)
        return wshd_error_set(err, 0, "field %s: length %u, want %u", rule->name, f->len,
                              rule->size);
    d->seen |= RULE_BIT(id);
    return decode_value(d, id, f, err);
}

static int check_kind(uint16_t kind, struct wshd_error *err)
{
    if (kind >= KIND_COUNT)
        return wshd_error_set(err, 0, "unknown kind %u", kind);
    if (!kind_rules[kind].request)
        return wshd_error_set(err, 0, "kind %s is not a request", kind_rules[kind].name);
    return 0;
}

static int check_required(const struct decoder *d, struct wshd_error *err)
{
    uint32_t missing = kind_rules[d->req->kind].required & ~d->seen;

    for (int id = 0; id < R_COUNT; id++)
        if (missing & RULE_BIT(id))
            return wshd_error_set(err, 0, "%s: missing field %s",
                                  proto_kind_name(d->req->kind), field_rules[id].name);
    return 0;
}

static void request_reset(struct proto_request *req)
{
    req->spawn.argc = 0;
    req->spawn.envc = 0;
    req->spawn.nrlimits = 0;
    req->spawn.argv[0] = NULL;
    req->spawn.envp[0] = NULL;
    req->spawn.dir = "/";
    req->spawn.uid = 0;
    req->spawn.gid = 0;
    req->spawn.has_output_limit = false;
    req->spawn.tty = false;
    req->spawn.output_limit = 0;
    req->target.pid = 0;
    req->target.signo = 0;
    req->target.group = false;
}

int proto_decode_request(const uint8_t *buf, size_t len, struct proto_request *req,
                         struct wshd_error *err)
{
    struct decoder d = {.req = req};
    struct proto_reader r;
    struct proto_field f;
    int more;

    if (proto_read_header(buf, len, &req->kind, &r, err) < 0)
        return -1;
    if (check_kind(req->kind, err) < 0)
        return -1;
    request_reset(req);
    while ((more = proto_next_field(&r, &f, err)) > 0)
        if (decode_field(&d, &f, err) < 0)
            return -1;
    if (more < 0)
        return -1;
    return check_required(&d, err);
}

void proto_writer_init(struct proto_writer *w, uint8_t *buf, size_t cap, uint16_t kind)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = cap < PROTO_HEADER_SIZE;
    if (w->overflow)
        return;
    memcpy(buf, PROTO_MAGIC, 4);
    set_u16(buf + 4, PROTO_VERSION);
    set_u16(buf + 6, kind);
    w->len = PROTO_HEADER_SIZE;
}

void proto_put_bytes(struct proto_writer *w, uint16_t tag, const void *value, size_t len)
{
    if (w->overflow || len > UINT32_MAX || w->cap - w->len < PROTO_FIELD_HEADER_SIZE + len) {
        w->overflow = true;
        return;
    }
    set_u16(w->buf + w->len, tag);
    set_u32(w->buf + w->len + 2, (uint32_t)len);
    if (len > 0)
        memcpy(w->buf + w->len + PROTO_FIELD_HEADER_SIZE, value, len);
    w->len += PROTO_FIELD_HEADER_SIZE + len;
}

void proto_put_string(struct proto_writer *w, uint16_t tag, const char *value)
{
    proto_put_bytes(w, tag, value, strlen(value));
}

void proto_put_u8(struct proto_writer *w, uint16_t tag, uint8_t value)
{
    proto_put_bytes(w, tag, &value, 1);
}

void proto_put_u32(struct proto_writer *w, uint16_t tag, uint32_t value)
{
    uint8_t be[4];

    set_u32(be, value);
    proto_put_bytes(w, tag, be, sizeof be);
}

void proto_put_u64(struct proto_writer *w, uint16_t tag, uint64_t value)
{
    uint8_t be[8];

    set_u64(be, value);
    proto_put_bytes(w, tag, be, sizeof be);
}

void proto_put_rlimit(struct proto_writer *w, const struct proto_rlimit *rl)
{
    uint8_t be[PROTO_RLIMIT_SIZE];

    set_u32(be, rl->resource);
    set_u64(be + 4, rl->soft);
    set_u64(be + 12, rl->hard);
    proto_put_bytes(w, PROTO_TAG_RLIMIT, be, sizeof be);
}
