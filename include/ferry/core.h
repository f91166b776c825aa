/*
 * Core helpers every layer uses: allocation, capped growable buffers,
 * byte order, hex, base32 and UUID encodings, random bytes, sizes and
 * host:port parsing, the clock, and the log sink.
 *
 * Ownership: a struct ferry_buf owns its bytes (ferry_buf_cleanup); memory
 * from ferry_malloc and friends is the caller's, freed with ferry_free.
 * Nothing here keeps state between calls but the log's sink and the
 * per-thread pool of random identifier bytes.
 */
#ifndef FERRY_CORE_H
#define FERRY_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/err.h"

/* Allocation: every library allocation goes through these, so tests can
 * count them. They return NULL on failure or on size overflow. */
void *ferry_malloc(size_t n);
void *ferry_calloc(size_t n, size_t size);
/* Memory aligned for O_DIRECT I/O; freed with ferry_free. */
void *ferry_malloc_aligned(size_t align, size_t n);
void *ferry_realloc(void *p, size_t n);
char *ferry_strdup(const char *s);
void ferry_free(void *p);

/*
 * A growable byte buffer with a hard limit set at init: appends past the
 * limit fail with FERRY_ETOOBIG and leave the buffer unchanged. Data lives in
 * [off, len); consumed bytes are compacted away lazily.
 */
struct ferry_buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
    size_t limit;
};

void ferry_buf_init(struct ferry_buf *b, size_t limit);
void ferry_buf_cleanup(struct ferry_buf *b);
int ferry_buf_reserve(struct ferry_buf *b, size_t extra);
int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n);
static inline const uint8_t *ferry_buf_peek(const struct ferry_buf *b)
{
    return b->data != NULL ? b->data + b->off : NULL;
}
static inline size_t ferry_buf_used(const struct ferry_buf *b)
{
    return b->len - b->off;
}
/* Writable tail after ferry_buf_reserve(); commit with ferry_buf_grow(). */
static inline uint8_t *ferry_buf_tail(struct ferry_buf *b)
{
    return b->data != NULL ? b->data + b->len : NULL;
}
void ferry_buf_grow(struct ferry_buf *b, size_t n);
void ferry_buf_consume(struct ferry_buf *b, size_t n);
void ferry_buf_reset(struct ferry_buf *b);
/*
 * Hands the live bytes over without copying them: returns the storage (the
 * caller frees it with ferry_free) with the bytes at its start, their count
 * in *len, and leaves b empty, as after ferry_buf_init with the same limit.
 * NULL (and *len 0) when b never held any.
 */
uint8_t *ferry_buf_take(struct ferry_buf *b, size_t *len);

/* Big-endian integer access; never casts a pointer. */
static inline uint32_t ferry_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static inline uint64_t ferry_get_be64(const uint8_t *p)
{
    return (uint64_t)ferry_get_be32(p) << 32 | ferry_get_be32(p + 4);
}
static inline void ferry_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void ferry_put_be64(uint8_t *p, uint64_t v)
{
    ferry_put_be32(p, (uint32_t)(v >> 32));
    ferry_put_be32(p + 4, (uint32_t)v);
}

/* Encodings. Output buffers are sized by the caller; functions NUL-terminate. */
void ferry_hex_encode(const uint8_t *in, size_t n, char *out /* 2n+1 */);
int ferry_hex_decode(const char *in, uint8_t *out, size_t n); /* exactly 2n digits */
/* RFC 4648 base32, upper case, no padding. Returns chars written. */
size_t ferry_base32_encode(const uint8_t *in, size_t n, char *out, size_t outcap);
/* A random RFC 4122 version-4 UUID as text. */
void ferry_uuid_new(char out[static 37]);
int ferry_uuid_valid(const char *s);
/* A UUID's text as its 16 bytes (R-FILE), and back; 0 or FERRY_EPROTO when s is no UUID. */
int ferry_uuid_to_bytes(const char *s, uint8_t out[static 16]);
void ferry_uuid_from_bytes(const uint8_t b[static 16], char out[static 37]);
/* Random bytes from the OS CSPRNG (libsodium): for keys, tokens and other secrets. */
void ferry_random(void *p, size_t n);
/*
 * Random bytes for identifiers (transfer ids, message ids), from the same
 * CSPRNG through a per-thread pool that a fork discards: unpredictable and
 * never repeated across a fork, but cheaper than a system call each.
 */
void ferry_random_id(void *p, size_t n);

/* Clock: monotonic milliseconds, and wall-clock nanoseconds since the epoch. */
uint64_t ferry_now_ms(void);
int64_t ferry_wall_ns(void);

/* Logging: the library prints nothing itself; programs install a sink. */
enum ferry_log_level {
    FERRY_LOG_DEBUG,
    FERRY_LOG_INFO,
    FERRY_LOG_NOTICE,
    FERRY_LOG_WARN,
    FERRY_LOG_ERR,
};
typedef void (*ferry_log_fn)(enum ferry_log_level lvl, const char *msg);
void ferry_log_set(ferry_log_fn fn, enum ferry_log_level min);
void ferry_log(enum ferry_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* XDG base directories (XDG Base Directory 0.8): relative values are ignored. */
int ferry_xdg_dir(const char *env, const char *fallback_rel, char *out, size_t cap);
/* mkdir -p with the given mode for created components. */
int ferry_mkdirs(const char *path, unsigned mode);

/* Parsers for values from flags and arguments (parse.c); FERRY_EUSAGE on anything else. */
/* Sizes: 123, 10K, 256M, 1G, 1T (powers of 1024); digits first, no sign. */
int ferry_parse_size(const char *s, uint64_t *out);
/* The port a client uses when an address names none. */
#define FERRY_PORT_DEFAULT "7070"
#define FERRY_PORT_MAX     65535u
/* A TCP port: 1 to 5 decimal digits, 1..65535 (0 too with allow_zero); nothing else. */
int ferry_parse_port(const char *s, int allow_zero, unsigned *out);
/*
 * HOST:PORT, [IPV6]:PORT, and without ":PORT" (HOST, [IPV6], or a bare IPv6
 * address with two colons or more) default_port, unless that is NULL. The
 * port goes through ferry_parse_port and comes out in canonical form; host
 * is the address without brackets. Outputs are empty strings on failure.
 */
int ferry_parse_hostport(const char *in, const char *default_port, int allow_zero, char *host,
                         size_t hcap, char *port, size_t pcap);
/* ferry serve --listen HOST:PORT: the port is required and may be 0 (any free port). */
int ferry_split_hostport(const char *in, char *host, size_t hcap, char *port, size_t pcap);

/* Text shown to people (text.c). */
/*
 * Length of the well-formed UTF-8 sequence at p (n >= 1 bytes available)
 * and its code point in *cp, or 0 for a byte that starts none.
 */
size_t ferry_utf8_decode(const unsigned char *p, size_t n, unsigned *cp);
/*
 * R-CLI-1: writes s[0..len) to out with every byte of a character a
 * terminal would act on (C0, DEL, C1, bidirectional controls, line
 * separators) and of invalid UTF-8 as \xHH, and a backslash doubled
 * (keep_newlines: for whole messages, '\n' and '\\' stay as they are). Cut
 * with "..." at cap. Returns the length written.
 */
size_t ferry_escape(const char *s, size_t len, int keep_newlines, char *out, size_t cap);

/*
 * R-AUTH-2: a password from the terminal with echo off (after prompt), or
 * one line of stdin with from_stdin; the line break is dropped. Returns 0,
 * -ENOTTY when there is no terminal to ask, -ENODATA for an empty line.
 * The program words the message: the library prints nothing.
 */
int ferry_read_password(const char *prompt, int from_stdin, char *buf, size_t cap);

#endif
