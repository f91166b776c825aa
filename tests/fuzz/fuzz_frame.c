/*
 * libFuzzer target: frame reassembly as a connection does it. The first input
 * byte picks how the rest is cut into reads; each read is appended to a buffer
 * capped at one maximal frame and frames are parsed out of it in a loop. Each
 * command, data, chunk and file payload then goes through its own decoder.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/wire.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (void)fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define CONN_BUF_LIMIT (FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The size of the next read: whole input, 1 byte, 1..16 or 1..8192 bytes. */
static size_t next_read(uint8_t mode, uint32_t *rng)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 17;
    *rng ^= *rng << 5;
    switch (mode & 3) {
    case 0:
        return SIZE_MAX;
    case 1:
        return 1;
    case 2:
        return 1 + (*rng & 15);
    default:
        return 1 + (*rng & 8191);
    }
}

static void check_command(const struct ferry_frame *f)
{
    struct ferry_cmd c;
    int rc = ferry_cmd_decode(f->payload, f->payload_len, &c);

    if (rc != 0) {
        FUZZ_CHECK(rc == FERRY_EPROTO || rc == FERRY_EVERSION || rc == -ENOMEM);
        FUZZ_CHECK(c.body == NULL);
        FUZZ_CHECK(c.id[0] == '\0' || ferry_uuid_valid(c.id));
        return;
    }
    FUZZ_CHECK(json_is_object(c.body));
    FUZZ_CHECK(ferry_msg_name(c.type) != NULL);
    FUZZ_CHECK(ferry_uuid_valid(c.id));
    ferry_cmd_cleanup(&c);
    FUZZ_CHECK(c.body == NULL);
}

static void check_data(const struct ferry_frame *f)
{
    struct ferry_data d;
    int rc = ferry_data_decode(f->payload, f->payload_len, &d);

    if (rc != 0) {
        FUZZ_CHECK(rc == FERRY_EPROTO || rc == FERRY_ETOOBIG);
        FUZZ_CHECK(d.bytes == NULL && d.len == 0);
        return;
    }
    FUZZ_CHECK(d.len <= FERRY_DATA_MAX);
    FUZZ_CHECK(d.len == f->payload_len - FERRY_DATA_HDR_LEN);
    FUZZ_CHECK(d.bytes == f->payload + FERRY_DATA_HDR_LEN);
    FUZZ_CHECK(UINT64_MAX - d.offset >= d.len);
}

/* R-CHUNK-6: the chunk frame decoder on whatever the frame layer passed. */
static void check_chunk(const struct ferry_frame *f)
{
    struct ferry_chunk_frame c;
    int rc = ferry_chunk_frame_decode(f->payload, f->payload_len, &c);

    if (rc != 0) {
        FUZZ_CHECK(rc == FERRY_EPROTO || rc == FERRY_ETOOBIG);
        FUZZ_CHECK(c.bytes == NULL && c.len == 0);
        return;
    }
    FUZZ_CHECK(c.len <= FERRY_DATA_MAX);
    FUZZ_CHECK(c.len == f->payload_len - FERRY_CHUNK_HDR_LEN);
    FUZZ_CHECK(c.bytes == f->payload + FERRY_CHUNK_HDR_LEN);
    FUZZ_CHECK(UINT32_MAX - c.offset >= c.len);
}

/* R-FILE-2: the file frame decoder on whatever the frame layer passed. */
static void check_file(const struct ferry_frame *f)
{
    static const uint8_t zero[32];
    struct ferry_file_frame ff;
    int rc = ferry_file_frame_decode(f->payload, f->payload_len, &ff);

    if (rc != 0) {
        FUZZ_CHECK(rc == FERRY_EPROTO);
        FUZZ_CHECK(f->payload_len < FERRY_FILE_HDR_LEN || (f->payload[40] & ~FERRY_FILE_EXEC) != 0);
        FUZZ_CHECK(ff.bytes == NULL && ff.len == 0 && ff.mtime == 0 && ff.exec == 0);
        FUZZ_CHECK(memcmp(ff.ref, zero, sizeof(ff.ref)) == 0);
        FUZZ_CHECK(memcmp(ff.tid, zero, sizeof(ff.tid)) == 0);
        FUZZ_CHECK(memcmp(ff.sha256, zero, sizeof(ff.sha256)) == 0);
        return;
    }
    FUZZ_CHECK(f->payload_len >= FERRY_FILE_HDR_LEN);
    FUZZ_CHECK(ff.len <= FERRY_FILE_DATA_MAX);
    FUZZ_CHECK(ff.len == f->payload_len - FERRY_FILE_HDR_LEN);
    FUZZ_CHECK(ff.bytes == f->payload + FERRY_FILE_HDR_LEN);
    FUZZ_CHECK(ff.exec == (f->payload[40] == FERRY_FILE_EXEC));
}

/* Parses every complete frame in b. Returns 1 when the connection would be closed. */
static int drain(struct ferry_buf *b)
{
    for (;;) {
        size_t avail = ferry_buf_used(b);
        const uint8_t *p;
        struct ferry_frame f;
        ssize_t r;

        if (avail == 0)
            return 0;
        p = ferry_buf_peek(b);
        r = ferry_frame_parse(p, avail, &f);
        if (r < 0) {
            FUZZ_CHECK(r == FERRY_EVERSION || r == FERRY_EPROTO || r == FERRY_ETOOBIG);
            FUZZ_CHECK(f.payload == NULL && f.payload_len == 0);
            return 1;
        }
        if (r == 0) {
            /* A full buffer that still "needs more" would stall the connection for good. */
            FUZZ_CHECK(avail < b->limit);
            FUZZ_CHECK(f.payload == NULL && f.payload_len == 0);
            return 0;
        }
        FUZZ_CHECK((size_t)r <= avail);
        FUZZ_CHECK(f.version == FERRY_PROTO_VERSION);
        FUZZ_CHECK(f.payload_len <= FERRY_FRAME_PAYLOAD_MAX);
        switch (f.type) {
        case FERRY_FRAME_HEARTBEAT:
            FUZZ_CHECK(r == FERRY_FRAME_HEARTBEAT_LEN && f.payload == NULL);
            break;
        case FERRY_FRAME_COMMAND:
            FUZZ_CHECK((size_t)r == FERRY_FRAME_HDR_LEN + f.payload_len);
            FUZZ_CHECK(f.payload == p + FERRY_FRAME_HDR_LEN);
            check_command(&f);
            break;
        case FERRY_FRAME_DATA:
            FUZZ_CHECK((size_t)r == FERRY_FRAME_HDR_LEN + f.payload_len);
            FUZZ_CHECK(f.payload == p + FERRY_FRAME_HDR_LEN);
            check_data(&f);
            break;
        case FERRY_FRAME_CHUNK:
            FUZZ_CHECK((size_t)r == FERRY_FRAME_HDR_LEN + f.payload_len);
            check_chunk(&f);
            break;
        case FERRY_FRAME_FILE:
            FUZZ_CHECK((size_t)r == FERRY_FRAME_HDR_LEN + f.payload_len);
            FUZZ_CHECK(f.payload == p + FERRY_FRAME_HDR_LEN);
            check_file(&f);
            break;
        default:
            FUZZ_CHECK(f.type <= FERRY_FRAME_FILE); /* R-FRAME-1 */
        }
        ferry_buf_consume(b, (size_t)r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_buf b;
    uint32_t rng;
    uint8_t mode;
    size_t pos = 1;

    if (size < 1)
        return 0;
    mode = data[0];
    rng = 0x9e3779b9u ^ mode;
    ferry_buf_init(&b, CONN_BUF_LIMIT);
    while (pos < size) {
        size_t n = next_read(mode, &rng);
        size_t room = b.limit - ferry_buf_used(&b);

        /* A connection reads at most what the buffer has room for. */
        FUZZ_CHECK(room > 0);
        if (n > size - pos)
            n = size - pos;
        if (n > room)
            n = room;
        FUZZ_CHECK(ferry_buf_append(&b, data + pos, n) == 0);
        pos += n;
        if (drain(&b))
            break;
    }
    ferry_buf_cleanup(&b);
    return 0;
}
