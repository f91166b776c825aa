/* FastCDC 2020 (Xia et al., IEEE TPDS 2020): gear hash, normalised chunking. */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "ferry/chunker.h"
#include "ferry/core.h"

/*
 * The standard GEAR table: entry i is the first 8 bytes (big-endian) of MD5
 * of 64 bytes all equal to i. Computed once rather than pasted as 256
 * constants; MD5 is used here only to reproduce the published table.
 */
static uint64_t gear[256];
static int gear_ok;
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_init(void)
{
    EVP_MD *md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    uint8_t in[64], out[EVP_MAX_MD_SIZE];
    unsigned len, i;

    if (md5 == NULL)
        return;
    for (i = 0; i < 256; i++) {
        memset(in, (int)i, sizeof(in));
        len = 0;
        if (EVP_Digest(in, sizeof(in), out, &len, md5, NULL) != 1 || len < 8)
            goto out;
        gear[i] = ferry_get_be64(out);
    }
    gear_ok = 1;
out:
    EVP_MD_free(md5);
}

/* The paper's masks, by bits = log2(avg). */
static const uint64_t masks[25] = {
    [10] = 0x0000590003530000ull, [11] = 0x0000d90003530000ull, [12] = 0x0000d90103530000ull,
    [13] = 0x0000d90303530000ull, [14] = 0x0000d90313530000ull, [15] = 0x0000d90f03530000ull,
    [16] = 0x0000d90303537000ull, [17] = 0x0000d90703537000ull, [18] = 0x0000d90707537000ull,
    [19] = 0x0000d91707537000ull, [20] = 0x0000d91747537000ull, [21] = 0x0000d91767537000ull,
    [22] = 0x0000d93767537000ull, [23] = 0x0000d93777537000ull, [24] = 0x0000d93777577000ull,
};

int ferry_cdc_init(struct ferry_cdc *c, size_t min, size_t avg, size_t max)
{
    unsigned bits = 0;

    pthread_once(&gear_once, gear_init);
    if (!gear_ok || min >= avg || avg >= max || (avg & (avg - 1)) != 0)
        return FERRY_EUSAGE;
    while (((size_t)1 << bits) < avg)
        bits++;
    /* Normalisation level 1: one bit stricter, then one bit looser. */
    if (bits < 11 || bits > 23)
        return FERRY_EUSAGE;
    *c = (struct ferry_cdc){
        .min = min, .avg = avg, .max = max, .mask_s = masks[bits + 1], .mask_l = masks[bits - 1]};
    return 0;
}

/*
 * The cut rule, written once for the one-shot and the streaming chunker: a
 * cut at position i ends the chunk before byte i, and the byte whose hash
 * matched starts the next chunk (as in the published vectors). The first
 * min positions are never a cut point, so they are not hashed; before avg
 * the stricter mask applies, from avg on the looser one; at max the chunk
 * ends whatever the hash.
 */
size_t ferry_cdc_roll(const struct ferry_cdc *c, const uint8_t *p, size_t pos, size_t k,
                      uint64_t *gear_h, int *cut)
{
    const uint8_t *q, *strict_end, *end;
    size_t room;
    uint64_t h = *gear_h;

    *cut = 0;
    room = c->max - pos; /* pos < max: a chunk at max has been cut */
    if (k >= room) {
        k = room;
        *cut = 1;
    }
    q = p + (pos < c->min ? (c->min - pos < k ? c->min - pos : k) : 0);
    end = p + k;
    strict_end = pos < c->avg - 1 ? (c->avg - 1 - pos < k ? p + (c->avg - 1 - pos) : end) : p;
    for (; q < strict_end; q++) {
        h = (h << 1) + gear[*q];
        if ((h & c->mask_s) == 0)
            goto hit;
    }
    for (; q < end; q++) {
        h = (h << 1) + gear[*q];
        if ((h & c->mask_l) == 0)
            goto hit;
    }
    *gear_h = h;
    return k;
hit:
    *gear_h = h;
    *cut = 1;
    return (size_t)(q - p);
}

size_t ferry_cdc_next(const struct ferry_cdc *c, const uint8_t *buf, size_t len, uint64_t *out)
{
    uint64_t h = 0;
    int cut;

    *out = 0;
    if (len <= c->min)
        return len;
    /* Past max the rule cuts at max; short of it the rest of the stream is one chunk. */
    len = ferry_cdc_roll(c, buf, 0, len, &h, &cut);
    *out = h;
    return len;
}
