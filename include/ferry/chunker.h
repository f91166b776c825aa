/* Content-defined chunking: FastCDC 2020 with normalisation level 1. */
#ifndef FERRY_CHUNKER_H
#define FERRY_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

struct ferry_cdc {
    size_t min;
    size_t avg;
    size_t max;
    uint64_t mask_s; /* stricter mask, used before the average size */
    uint64_t mask_l; /* looser mask, used after it */
};

/*
 * Sets up a chunker. min < avg < max, avg a power of two between 2^10 and
 * 2^24 (the masks of the FastCDC paper). Returns 0 or FERRY_EUSAGE.
 */
int ferry_cdc_init(struct ferry_cdc *c, size_t min, size_t avg, size_t max);

/*
 * Length of the chunk that starts at buf, given len bytes of the stream from
 * there (all of the rest of the stream, or at least max bytes). Sets *gear to
 * the rolling hash where the chunk ends (0 for data no longer than min).
 * Pure: no allocation, no state between calls.
 */
size_t ferry_cdc_next(const struct ferry_cdc *c, const uint8_t *buf, size_t len, uint64_t *gear);

/*
 * The same rule over a chunk that arrives in pieces: p holds the k bytes at
 * positions pos..pos+k-1 of the current chunk (pos < max), *gear the rolling
 * hash after the bytes before them (0 when pos is 0). Returns how many of
 * the k bytes belong to the chunk and sets *cut when it ends after them (a
 * match, or max reached); *gear is updated. Pure, as ferry_cdc_next is.
 */
size_t ferry_cdc_roll(const struct ferry_cdc *c, const uint8_t *p, size_t pos, size_t k,
                      uint64_t *gear, int *cut);

#endif
