/* Frame codec: version(1) type(1) [length u32 BE] payload (docs/protocol.md, R-FRAME-*). */
#include "ferry/core.h"
#include "ferry/wire.h"

/*
 * Parses one frame from buf. The version byte is judged as soon as it
 * arrives, so a peer speaking another protocol is refused before it can make
 * us wait. Returns the bytes consumed, 0 when more are needed, or an error;
 * out is zeroed unless a frame is returned.
 */
ssize_t ferry_frame_parse(const uint8_t *buf, size_t len, struct ferry_frame *out)
{
    return ferry_frame_parse_upto(buf, len, FERRY_FRAME_FILE, out);
}

ssize_t ferry_frame_parse_upto(const uint8_t *buf, size_t len, uint8_t max_type,
                               struct ferry_frame *out)
{
    uint32_t plen;

    *out = (struct ferry_frame){0};
    if (len < 1)
        return 0;
    if (buf[0] != FERRY_PROTO_VERSION)
        return FERRY_EVERSION; /* R-FRAME-1: unknown version: reply once, then close */
    if (len < 2)
        return 0;
    if (buf[1] > FERRY_FRAME_FILE || buf[1] > max_type)
        return FERRY_EPROTO; /* R-FRAME-1: types are 0 to 4 only; R-FILE-1: 4 only to a client */
    if (buf[1] == FERRY_FRAME_HEARTBEAT) {
        *out = (struct ferry_frame){.version = buf[0], .type = buf[1]};
        return FERRY_FRAME_HEARTBEAT_LEN; /* R-FRAME-2: a heartbeat has no length field */
    }
    if (len < FERRY_FRAME_HDR_LEN)
        return 0;
    plen = ferry_get_be32(buf + 2);
    if (plen > FERRY_FRAME_PAYLOAD_MAX)
        return FERRY_ETOOBIG; /* R-FRAME-3: before anything is allocated or waited for */
    if (len - FERRY_FRAME_HDR_LEN < plen)
        return 0;
    *out = (struct ferry_frame){.version = buf[0],
                                .type = buf[1],
                                .payload = buf + FERRY_FRAME_HDR_LEN,
                                .payload_len = plen};
    return (ssize_t)(FERRY_FRAME_HDR_LEN + plen);
}

/*
 * Writes the header for a frame of the given type. The caller keeps
 * payload_len within FERRY_FRAME_PAYLOAD_MAX; the peer refuses more (R-FRAME-3).
 */
size_t ferry_frame_header_encode(uint8_t out[static FERRY_FRAME_HDR_LEN], uint8_t type,
                                 uint32_t payload_len)
{
    out[0] = FERRY_PROTO_VERSION;
    out[1] = type;
    if (type == FERRY_FRAME_HEARTBEAT)
        return FERRY_FRAME_HEARTBEAT_LEN; /* R-FRAME-2 */
    ferry_put_be32(out + 2, payload_len);
    return FERRY_FRAME_HDR_LEN;
}
