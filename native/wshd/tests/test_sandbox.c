/*
 * test_sandbox.c: unit tests of sandbox_persona_patterns, the pure part of the seccomp filter:
 * the patterns must refuse every personality argument below 2^32 except the five Docker
 * allows. Checked exhaustively over every value with at most two bits set or at most two bits
 * clear, and over a fixed pseudo-random sample. Prints TAP lines; needs no root.
 */
#include "sandbox.h"

#include <stdint.h>
#include <stdio.h>

static const uint64_t allowed[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

struct suite {
    int run;
    int failed;
    struct sandbox_pattern patterns[SANDBOX_MAX_PATTERNS];
    size_t npatterns;
};

static int is_allowed(uint64_t x)
{
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (x == allowed[i])
            return 1;
    return 0;
}

static int is_refused(const struct suite *s, uint64_t x)
{
    for (size_t i = 0; i < s->npatterns; i++)
        if ((x & s->patterns[i].mask) == s->patterns[i].value)
            return 1;
    return 0;
}

static void report(struct suite *s, int ok, const char *name, uint64_t bad)
{
    s->run++;
    if (ok) {
        printf("ok %d - %s\n", s->run, name);
        return;
    }
    s->failed++;
    printf("not ok %d - %s: wrong answer for 0x%llx\n", s->run, name, (unsigned long long)bad);
}

/* Returns 1 and leaves *bad unset if the patterns agree with the allowed list on x. */
static int agrees(const struct suite *s, uint64_t x, uint64_t *bad)
{
    if (is_refused(s, x) == !is_allowed(x))
        return 1;
    *bad = x;
    return 0;
}

static void test_allowed_values(struct suite *s)
{
    uint64_t bad = 0;
    int ok = 1;

    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        ok &= agrees(s, allowed[i], &bad);
    report(s, ok, "the five allowed personas pass", bad);
}

static void test_few_bits(struct suite *s)
{
    uint64_t bad = 0;
    int ok = 1;

    for (int a = 0; a < 32; a++)
        for (int b = a; b < 32; b++) {
            uint64_t x = (1ULL << a) | (1ULL << b);

            ok &= agrees(s, x, &bad);
            ok &= agrees(s, ~x & 0xffffffffULL, &bad);
            ok &= agrees(s, 1ULL << a, &bad);
            ok &= agrees(s, ~(1ULL << a) & 0xffffffffULL, &bad);
        }
    report(s, ok, "values with at most two bits set or clear", bad);
}

static void test_sample(struct suite *s)
{
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    uint64_t bad = 0;
    int ok = 1;

    for (int i = 0; i < 1000000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ok &= agrees(s, state & 0xffffffffULL, &bad);
        ok &= agrees(s, state & 0x000200ffULL, &bad);
    }
    report(s, ok, "a million pseudo-random values", bad);
}

static void test_room(struct suite *s)
{
    struct sandbox_pattern few[4];

    report(s, s->npatterns <= SANDBOX_MAX_PATTERNS && s->npatterns > 0,
           "the patterns fit SANDBOX_MAX_PATTERNS", s->npatterns);
    report(s, sandbox_persona_patterns(few, 4) <= 4, "a short buffer is never overrun", 4);
}

int main(void)
{
    static struct suite s;

    s.npatterns = sandbox_persona_patterns(s.patterns, SANDBOX_MAX_PATTERNS);
    test_allowed_values(&s);
    test_few_bits(&s);
    test_sample(&s);
    test_room(&s);
    printf("1..%d\n", s.run);
    if (s.failed > 0)
        printf("# %d of %d failed\n", s.failed, s.run);
    return s.failed > 0;
}
