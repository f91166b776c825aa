/*
 * Wire codecs: frames, command payloads and data payloads
 * (docs/protocol.md). Pure functions over (buffer, length): no I/O, no
 * globals, and every peer-supplied length checked against its named cap
 * before use.
 *
 * Ownership: a decoded frame points into the caller's buffer and lives as
 * long as it; encoders write into buffers the caller passes. The only
 * allocations are jansson's trees from ferry_cmd_decode (the caller
 * json_decref's them) and the array ferry_msg_ranges returns (ferry_free).
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* R-FRAME-1: the only frame version this build speaks. */
#define FERRY_PROTO_VERSION 1
/* Application version string carried in every command ("version"). */
#define FERRY_MSG_VERSION     "1.5"

#define FERRY_FRAME_HEARTBEAT 0
#define FERRY_FRAME_COMMAND   1
#define FERRY_FRAME_DATA      2
/* Protocol 1.1 (R-CHUNK-6): bytes of one chunk of a chunked upload. */
#define FERRY_FRAME_CHUNK 3
/* Protocol 1.4 (R-FILE): a whole small file, server to client. */
#define FERRY_FRAME_FILE 4

/* R-FRAME-2: a heartbeat is exactly version + type. */
#define FERRY_FRAME_HEARTBEAT_LEN 2
/* version u8 | type u8 | length u32 BE */
#define FERRY_FRAME_HDR_LEN 6
/* R-FRAME-3: seed 000 caps the payload at 32 KiB. */
#define FERRY_FRAME_PAYLOAD_MAX 32768
/* msgtype i32 BE before the JSON text. */
#define FERRY_CMD_HDR_LEN 4
/* R-CMD-3: JSON nesting deeper than this is refused before parsing. */
#define FERRY_JSON_DEPTH_MAX 32
/* transfer id 16 B | offset u64 BE */
#define FERRY_DATA_HDR_LEN 24
/* R-DATA-1: seed 000 caps the bytes of one data frame at 16 KiB. */
#define FERRY_DATA_MAX 16384
#define FERRY_TID_LEN  16
/* Textual UUID: 8-4-4-4-12 hex digits. */
#define FERRY_UUID_STR_LEN 36

/*
 * Message registry (R-MSG-*). Numbered in blocks per area and never reused.
 */
enum ferry_msgtype {
    /* session: 1..99 */
    FERRY_MSG_CONNECT = 1,
    FERRY_MSG_ACCEPT = 2,
    FERRY_MSG_REJECT = 3,
    FERRY_MSG_DISCONNECT = 4,
    FERRY_MSG_PING = 5,
    FERRY_MSG_PONG = 6,
    FERRY_MSG_ERROR = 7,
    FERRY_MSG_OK = 8,
    /* accounts: 100..199 */
    FERRY_MSG_SIGNUP = 100,
    FERRY_MSG_LOGIN = 101,
    FERRY_MSG_CHANGEPWD = 102,
    FERRY_MSG_LOGOUT = 103,
    FERRY_MSG_SESSION = 104,
    /* protocol 1.2: the account's view of itself and its devices (R-ADMIN-7..9) */
    FERRY_MSG_WHOAMI = 105,
    FERRY_MSG_IDENTITY = 106,
    FERRY_MSG_DEVICE_LIST = 107,
    FERRY_MSG_DEVICES = 108,
    FERRY_MSG_DEVICE_REVOKE = 109,
    /* files: 200..299 */
    FERRY_MSG_DIRINFO = 200,
    FERRY_MSG_DIRPAGE = 201,
    FERRY_MSG_REMOVE = 202,
    FERRY_MSG_MOVE = 203,
    FERRY_MSG_MKDIR = 204,
    /* transfer: 300..399 */
    FERRY_MSG_UPLOAD = 300,
    FERRY_MSG_DOWNLOAD = 301,
    FERRY_MSG_TRANSFER = 302,
    FERRY_MSG_TRANSFER_CANCEL = 303,
    FERRY_MSG_TRANSFER_COMPLETE = 304,
    FERRY_MSG_COMMITTED = 305,
    /* protocol 1.1: chunked uploads (R-CHUNK) */
    FERRY_MSG_CHUNKED_UPLOAD = 306,
    FERRY_MSG_CHUNK_NEED = 307,
    FERRY_MSG_CHUNK_STORED = 308,
    /* seed 000's remote Command: reserved, always refused (R-MSG-4). */
    FERRY_MSG_COMMAND = 900,
};

/* R-ADMIN-8: devices in one Devices message (64 x ~300 B of JSON fit a frame). */
#define FERRY_DEVICES_MAX 64

/* Returns the registry name of a message type, or NULL if it is unknown. */
const char *ferry_msg_name(int32_t type);

struct ferry_frame {
    uint8_t version;
    uint8_t type;
    const uint8_t *payload; /* view into the caller's buffer */
    size_t payload_len;
};

/*
 * Parses one frame from buf. Returns the bytes consumed (> 0), 0 when more
 * bytes are needed (nothing consumed), or FERRY_EVERSION, FERRY_EPROTO or
 * FERRY_ETOOBIG. Pure: no I/O, no allocation.
 */
ssize_t ferry_frame_parse(const uint8_t *buf, size_t len, struct ferry_frame *out);
/*
 * The same, for a receiver that takes frame types up to max_type only: a
 * server passes FERRY_FRAME_CHUNK, so that a file frame (R-FILE-1) is
 * refused at its type byte, as an unknown type is, before its length.
 */
ssize_t ferry_frame_parse_upto(const uint8_t *buf, size_t len, uint8_t max_type,
                               struct ferry_frame *out);

/* Writes a 6-byte frame header (or 2 bytes for a heartbeat); returns its length. */
size_t ferry_frame_header_encode(uint8_t out[static FERRY_FRAME_HDR_LEN], uint8_t type,
                                 uint32_t payload_len);

struct ferry_data {
    uint8_t tid[FERRY_TID_LEN];
    uint64_t offset;
    const uint8_t *bytes; /* view into the caller's buffer */
    size_t len;
};

/*
 * Decodes a data payload. Returns 0 or FERRY_EPROTO (shorter than the
 * header, or offset + len overflows) or FERRY_ETOOBIG (over 16 KiB of bytes).
 */
int ferry_data_decode(const uint8_t *p, size_t len, struct ferry_data *out);

/* Writes the 24-byte data payload header. */
void ferry_data_header_encode(uint8_t out[static FERRY_DATA_HDR_LEN],
                              const uint8_t tid[static FERRY_TID_LEN], uint64_t offset);
/* Bytes the data frames carrying len bytes take, headers included. */
size_t ferry_data_frames_len(size_t len);
/* Lays len bytes from offset out as data frames in out (ferry_data_frames_len bytes). */
void ferry_data_frames_encode(uint8_t *out, const uint8_t tid[static FERRY_TID_LEN],
                              uint64_t offset, const uint8_t *p, size_t len);

/* R-CHUNK-6: tid 16 B | index u32 BE | offset u32 BE, then up to 16 KiB. */
#define FERRY_CHUNK_HDR_LEN 24
/*
 * R-CHUNK-5: list entries answered by one ChunkNeed: the first answer covers
 * FERRY_NEED_FIRST, each later one as many as were answered before, up to
 * FERRY_NEED_GROUP (16, 16, 32, 64, 128, 256, 256, ...); since 1.5 a group
 * also ends at the entry that brings its chunks to FERRY_NEED_GROUP_BYTES.
 */
#define FERRY_NEED_FIRST       16
#define FERRY_NEED_GROUP       256
#define FERRY_NEED_GROUP_BYTES (8u << 20)

struct ferry_chunk_frame {
    uint8_t tid[FERRY_TID_LEN];
    uint32_t index;
    uint32_t offset;
    const uint8_t *bytes; /* view into the caller's buffer */
    size_t len;
};

/*
 * Decodes a chunk payload. Returns 0, FERRY_EPROTO (shorter than the header,
 * or offset + len past 2^32 - 1) or FERRY_ETOOBIG (over 16 KiB of bytes).
 */
int ferry_chunk_frame_decode(const uint8_t *p, size_t len, struct ferry_chunk_frame *out);
void ferry_chunk_frame_header_encode(uint8_t out[static FERRY_CHUNK_HDR_LEN],
                                     const uint8_t tid[static FERRY_TID_LEN], uint32_t index,
                                     uint32_t offset);

/*
 * R-CHUNK-2: one entry of a chunk list, u32 BE length | 32-byte SHA-256. A
 * codec of its own here, below both the transfer code that makes lists and
 * the store that keeps them.
 */
#define FERRY_CHUNK_ENT_LEN 36
struct ferry_chunk_ent {
    uint32_t len;
    uint8_t hash[32];
};
void ferry_chunk_ent_encode(uint8_t out[static FERRY_CHUNK_ENT_LEN],
                            const struct ferry_chunk_ent *e);
void ferry_chunk_ent_decode(const uint8_t in[static FERRY_CHUNK_ENT_LEN],
                            struct ferry_chunk_ent *e);

/* R-FILE: ref 16 B | tid 16 B | mtime i64 BE | flags u8 | sha256 32 B, then the file. */
#define FERRY_FILE_HDR_LEN  73
#define FERRY_FILE_DATA_MAX (FERRY_FRAME_PAYLOAD_MAX - FERRY_FILE_HDR_LEN)
#define FERRY_FILE_EXEC     0x01 /* flags bit 0; the others must be 0 (R-FILE-2) */

struct ferry_file_frame {
    uint8_t ref[16]; /* the Download's id, its UUID's bytes */
    uint8_t tid[FERRY_TID_LEN];
    int64_t mtime;
    int exec;
    uint8_t sha256[32];
    const uint8_t *bytes; /* view into the caller's buffer */
    size_t len;
};

/*
 * Decodes a file payload (R-FILE-2). Returns 0, or FERRY_EPROTO (shorter
 * than the header, or an unknown flag); out is zeroed on error. The frame
 * cap (R-FRAME-3) bounds the bytes to FERRY_FILE_DATA_MAX.
 */
int ferry_file_frame_decode(const uint8_t *p, size_t len, struct ferry_file_frame *out);
void ferry_file_frame_header_encode(uint8_t out[static FERRY_FILE_HDR_LEN],
                                    const uint8_t ref[static 16],
                                    const uint8_t tid[static FERRY_TID_LEN], int64_t mtime,
                                    int exec, const uint8_t sha256[static 32]);

struct ferry_cmd {
    int32_t type;
    json_t *body;                    /* owned: json_decref when done */
    char id[FERRY_UUID_STR_LEN + 1]; /* the message's "id" */
};

/*
 * Decodes a command payload: msgtype i32 BE + one JSON object that has a
 * UUID "id" and a string "version". Rejects (FERRY_EPROTO) unknown message
 * types, nesting deeper than FERRY_JSON_DEPTH_MAX, duplicate keys, invalid
 * UTF-8, NUL in strings and anything that is not an object. On error, out
 * holds no allocation; if the id could be read it is left in out->id so the
 * Error reply can reference it.
 */
int ferry_cmd_decode(const uint8_t *p, size_t len, struct ferry_cmd *out);
void ferry_cmd_cleanup(struct ferry_cmd *c);

/*
 * Encodes a command (header + JSON text) into out, which has room for cap
 * bytes. Returns the payload length or FERRY_ETOOBIG.
 */
ssize_t ferry_cmd_encode(int32_t type, const json_t *body, uint8_t *out, size_t cap);

/*
 * Field readers with caps, for the handlers: each returns 0, or FERRY_EPROTO
 * when the key is missing (unless optional) or of the wrong type or range.
 */
int ferry_msg_str(const json_t *o, const char *key, size_t maxlen, const char **out);
int ferry_msg_str_opt(const json_t *o, const char *key, size_t maxlen, const char **out);
int ferry_msg_u64(const json_t *o, const char *key, uint64_t max, uint64_t *out);
int ferry_msg_i64_opt(const json_t *o, const char *key, int64_t min, int64_t max, int64_t dflt,
                      int64_t *out);
int ferry_msg_bool_opt(const json_t *o, const char *key, int dflt, int *out);
/* A 32-hex-digit transfer id. */
int ferry_msg_tid(const json_t *o, const char *key, uint8_t tid[static FERRY_TID_LEN]);
/*
 * R-CHUNK-16: an array of 1..max [first, count] pairs, ascending, not
 * overlapping or touching, count >= 1, within 32 bits. *out (ferry_free it)
 * holds the pairs; FERRY_EPROTO for anything else, -ENOMEM.
 */
int ferry_msg_ranges(const json_t *a, size_t max, uint32_t (**out)[2], size_t *n);
/* R-XFER-6: tids one TransferComplete may acknowledge (256 of 35 bytes fit a frame). */
#define FERRY_ACK_TIDS_MAX 256
/*
 * R-XFER-6: an array of 1..max tids of 32 hex digits each, decoded into
 * out (room for max); FERRY_EPROTO, with *n 0, for anything else.
 */
int ferry_msg_tids(const json_t *a, size_t max, uint8_t (*out)[FERRY_TID_LEN], size_t *n);

#endif
