/* Data payload codec: transfer id(16) | offset u64 BE | bytes (docs/protocol.md, R-DATA-*). */
#include <string.h>

#include "ferry/core.h"
#include "ferry/wire.h"

/*
 * Decodes a data payload into a view of p. Returns 0, FERRY_EPROTO or
 * FERRY_ETOOBIG; out is zeroed on error.
 */
int ferry_data_decode(const uint8_t *p, size_t len, struct ferry_data *out)
{
    uint64_t offset;
    size_t n;

    *out = (struct ferry_data){0};
    if (len < FERRY_DATA_HDR_LEN)
        return FERRY_EPROTO; /* R-DATA-1: the header is not optional */
    n = len - FERRY_DATA_HDR_LEN;
    if (n > FERRY_DATA_MAX)
        return FERRY_ETOOBIG; /* R-DATA-1 */
    offset = ferry_get_be64(p + FERRY_TID_LEN);
    /* R-DATA-1: the byte range must not wrap; compare on the side that cannot overflow. */
    if (UINT64_MAX - offset < n)
        return FERRY_EPROTO;
    memcpy(out->tid, p, FERRY_TID_LEN);
    out->offset = offset;
    out->bytes = p + FERRY_DATA_HDR_LEN;
    out->len = n;
    return 0;
}

void ferry_data_header_encode(uint8_t out[static FERRY_DATA_HDR_LEN],
                              const uint8_t tid[static FERRY_TID_LEN], uint64_t offset)
{
    memcpy(out, tid, FERRY_TID_LEN);
    ferry_put_be64(out + FERRY_TID_LEN, offset);
}

size_t ferry_data_frames_len(size_t len)
{
    size_t frames = (len + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX;

    return len + frames * (FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN);
}

void ferry_data_frames_encode(uint8_t *out, const uint8_t tid[static FERRY_TID_LEN],
                              uint64_t offset, const uint8_t *p, size_t len)
{
    size_t piece;

    /* Whole frames of FERRY_DATA_MAX bytes, the last one shorter (R-DATA-1). */
    while (len > 0) {
        piece = len > FERRY_DATA_MAX ? FERRY_DATA_MAX : len;
        ferry_frame_header_encode(out, FERRY_FRAME_DATA, (uint32_t)(FERRY_DATA_HDR_LEN + piece));
        ferry_data_header_encode(out + FERRY_FRAME_HDR_LEN, tid, offset);
        memcpy(out + FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN, p, piece);
        out += FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN + piece;
        p += piece;
        offset += piece;
        len -= piece;
    }
}

/* R-CHUNK-6: a chunk frame addresses bytes within one chunk of a list. */
int ferry_chunk_frame_decode(const uint8_t *p, size_t len, struct ferry_chunk_frame *out)
{
    uint32_t offset;
    size_t n;

    *out = (struct ferry_chunk_frame){0};
    if (len < FERRY_CHUNK_HDR_LEN)
        return FERRY_EPROTO;
    n = len - FERRY_CHUNK_HDR_LEN;
    if (n > FERRY_DATA_MAX)
        return FERRY_ETOOBIG;
    offset = ferry_get_be32(p + FERRY_TID_LEN + 4);
    if (UINT32_MAX - offset < n)
        return FERRY_EPROTO;
    memcpy(out->tid, p, FERRY_TID_LEN);
    out->index = ferry_get_be32(p + FERRY_TID_LEN);
    out->offset = offset;
    out->bytes = p + FERRY_CHUNK_HDR_LEN;
    out->len = n;
    return 0;
}

void ferry_chunk_frame_header_encode(uint8_t out[static FERRY_CHUNK_HDR_LEN],
                                     const uint8_t tid[static FERRY_TID_LEN], uint32_t index,
                                     uint32_t offset)
{
    memcpy(out, tid, FERRY_TID_LEN);
    ferry_put_be32(out + FERRY_TID_LEN, index);
    ferry_put_be32(out + FERRY_TID_LEN + 4, offset);
}

void ferry_chunk_ent_encode(uint8_t out[static FERRY_CHUNK_ENT_LEN],
                            const struct ferry_chunk_ent *e)
{
    ferry_put_be32(out, e->len);
    memcpy(out + 4, e->hash, sizeof(e->hash));
}

void ferry_chunk_ent_decode(const uint8_t in[static FERRY_CHUNK_ENT_LEN], struct ferry_chunk_ent *e)
{
    e->len = ferry_get_be32(in);
    memcpy(e->hash, in + 4, sizeof(e->hash));
}

/* R-FILE: a whole small file; its length is the frame's, so nothing here is waited for. */
int ferry_file_frame_decode(const uint8_t *p, size_t len, struct ferry_file_frame *out)
{
    uint8_t flags;

    *out = (struct ferry_file_frame){0};
    if (len < FERRY_FILE_HDR_LEN || len > FERRY_FRAME_PAYLOAD_MAX)
        return FERRY_EPROTO; /* R-FILE-2 */
    flags = p[40];
    if ((flags & ~FERRY_FILE_EXEC) != 0)
        return FERRY_EPROTO; /* R-FILE-2: no flag this version does not know */
    memcpy(out->ref, p, 16);
    memcpy(out->tid, p + 16, FERRY_TID_LEN);
    out->mtime = (int64_t)ferry_get_be64(p + 32);
    out->exec = (flags & FERRY_FILE_EXEC) != 0;
    memcpy(out->sha256, p + 41, 32);
    out->bytes = p + FERRY_FILE_HDR_LEN;
    out->len = len - FERRY_FILE_HDR_LEN;
    return 0;
}

void ferry_file_frame_header_encode(uint8_t out[static FERRY_FILE_HDR_LEN],
                                    const uint8_t ref[static 16],
                                    const uint8_t tid[static FERRY_TID_LEN], int64_t mtime,
                                    int exec, const uint8_t sha256[static 32])
{
    memcpy(out, ref, 16);
    memcpy(out + 16, tid, FERRY_TID_LEN);
    ferry_put_be64(out + 32, (uint64_t)mtime);
    out[40] = exec ? FERRY_FILE_EXEC : 0;
    memcpy(out + 41, sha256, 32);
}
