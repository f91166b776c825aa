/* Text encodings: hex, base32 (device ids), UUIDs, and random bytes. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include "ferry/core.h"

static const char hexdig[] = "0123456789abcdef";

void ferry_hex_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ferry_hex_decode(const char *in, uint8_t *out, size_t n)
{
    size_t i;

    if (strlen(in) != 2 * n)
        return FERRY_EPROTO;
    for (i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return FERRY_EPROTO;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

size_t ferry_base32_encode(const uint8_t *in, size_t n, char *out, size_t outcap)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t i, o = 0;
    unsigned bits = 0;
    uint32_t acc = 0;

    for (i = 0; i < n && o + 1 < outcap; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5 && o + 1 < outcap) {
            out[o++] = alpha[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0 && o + 1 < outcap)
        out[o++] = alpha[(acc << (5 - bits)) & 31];
    if (outcap > 0)
        out[o] = '\0';
    return o;
}

void ferry_random(void *p, size_t n)
{
    randombytes_buf(p, n);
}

/*
 * Identifiers come from a per-thread pool filled from the CSPRNG: a
 * getrandom(2) per transfer id and message id was 2-4 % of the CPU of a
 * small-file download on each side. A fork makes every pool stale, so that
 * parent and child never hand out the same bytes.
 */
#define ID_POOL_BYTES 512

struct id_pool {
    uint8_t buf[ID_POOL_BYTES];
    size_t used; /* bytes handed out (and wiped) since the last refill */
    unsigned gen;
};

static _Thread_local struct id_pool id_pool = {.used = ID_POOL_BYTES};
/* Bumped in the child of every fork: every pool filled before it is stale. */
static atomic_uint id_pool_gen;
static pthread_once_t id_pool_once = PTHREAD_ONCE_INIT;

static void id_pool_forked(void)
{
    atomic_fetch_add(&id_pool_gen, 1);
}

static void id_pool_init(void)
{
    pthread_atfork(NULL, NULL, id_pool_forked);
}

void ferry_random_id(void *p, size_t n)
{
    struct id_pool *q = &id_pool;
    uint8_t *out = p;
    unsigned gen;
    size_t k;

    if (n > ID_POOL_BYTES / 4) {
        randombytes_buf(p, n);
        return;
    }
    pthread_once(&id_pool_once, id_pool_init);
    gen = atomic_load(&id_pool_gen);
    if (q->gen != gen || ID_POOL_BYTES - q->used < n) {
        randombytes_buf(q->buf, sizeof(q->buf));
        q->used = 0;
        q->gen = gen;
    }
    for (k = 0; k < n; k++)
        out[k] = q->buf[q->used + k];
    /* Bytes handed out do not stay behind in the pool. */
    sodium_memzero(q->buf + q->used, n);
    q->used += n;
}

void ferry_uuid_new(char out[static 37])
{
    uint8_t b[16];

    ferry_random_id(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    ferry_uuid_from_bytes(b, out);
}

void ferry_uuid_from_bytes(const uint8_t b[static 16], char out[static 37])
{
    char hex[33];

    ferry_hex_encode(b, 16, hex);
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[36] = '\0';
}

int ferry_uuid_to_bytes(const char *s, uint8_t out[static 16])
{
    char hex[33];

    if (!ferry_uuid_valid(s))
        return FERRY_EPROTO;
    memcpy(hex, s, 8);
    memcpy(hex + 8, s + 9, 4);
    memcpy(hex + 12, s + 14, 4);
    memcpy(hex + 16, s + 19, 4);
    memcpy(hex + 20, s + 24, 12);
    hex[32] = '\0';
    return ferry_hex_decode(hex, out, 16) == 0 ? 0 : FERRY_EPROTO;
}

int ferry_uuid_valid(const char *s)
{
    size_t i;

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (hexval(s[i]) < 0) {
            return 0;
        }
    }
    return s[36] == '\0';
}
