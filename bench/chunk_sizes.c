/*
 * bench/chunk_sizes: how FastCDC parameters trade chunk count against the
 * bytes a small edit costs. For each average size it chunks a random file,
 * then the same file with 1 MiB overwritten in the middle and with 100 bytes
 * inserted in the middle, and prints the bytes of chunks that are new (what
 * an upload must send) and the chunk count (what the chunk list costs).
 *
 * usage: chunk_sizes [SIZE_MIB]   (default 1024)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry/chunker.h"
#include "ferry/crypto.h"

struct set {
    uint8_t (*h)[32];
    size_t n;
};

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void chunk_all(const struct ferry_cdc *c, const uint8_t *p, size_t n, struct set *s,
                      size_t **lens)
{
    size_t off = 0, cap = 1024;
    uint64_t g;

    s->h = malloc(cap * 32);
    *lens = malloc(cap * sizeof(size_t));
    s->n = 0;
    while (off < n) {
        size_t len = ferry_cdc_next(c, p + off, n - off, &g);
        if (s->n == cap) {
            cap *= 2;
            s->h = realloc(s->h, cap * 32);
            *lens = realloc(*lens, cap * sizeof(size_t));
        }
        ferry_sha256_buf(p + off, len, s->h[s->n]);
        (*lens)[s->n++] = len;
        off += len;
    }
}

/* Bytes of chunks of b whose hash is not among a's. */
static size_t new_bytes(struct set *a, struct set *b, size_t *blens)
{
    uint8_t(*sorted)[32] = malloc(a->n * 32);
    size_t i, sum = 0;

    memcpy(sorted, a->h, a->n * 32);
    qsort(sorted, a->n, 32, cmp32);
    for (i = 0; i < b->n; i++)
        if (bsearch(b->h[i], sorted, a->n, 32, cmp32) == NULL)
            sum += blens[i];
    free(sorted);
    return sum;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 1024, n = mib << 20, i;
    size_t avgs[] = {64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20};
    uint8_t *a = malloc(n), *over = malloc(n), *ins = malloc(n + 100);
    uint64_t x = 88172645463325252ull;

    for (i = 0; i < n; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(a + i, &x, 8);
    }
    memcpy(over, a, n);
    /* The overwrite is fresh random data, like an edited region of a real file. */
    for (i = 0; i < (1u << 20); i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(over + n / 2 + i, &x, 8);
    }
    memcpy(ins, a, n / 2);
    memset(ins + n / 2, 'i', 100);
    memcpy(ins + n / 2 + 100, a + n / 2, n - n / 2);
    printf("file %zu MiB; min = avg/4, max = avg*4\n", mib);
    printf("%10s %10s %14s %14s %12s\n", "avg", "chunks", "1MiB-overwrite", "100B-insert",
           "list-bytes");
    for (i = 0; i < sizeof(avgs) / sizeof(avgs[0]); i++) {
        struct ferry_cdc c;
        struct set sa, so, si;
        size_t *la, *lo, *li;
        clock_t t0 = clock();

        if (ferry_cdc_init(&c, avgs[i] / 4, avgs[i], avgs[i] * 4) != 0)
            continue;
        chunk_all(&c, a, n, &sa, &la);
        chunk_all(&c, over, n, &so, &lo);
        chunk_all(&c, ins, n + 100, &si, &li);
        printf("%10zu %10zu %14zu %14zu %12zu  (%.1f s cpu)\n", avgs[i], sa.n,
               new_bytes(&sa, &so, lo), new_bytes(&sa, &si, li), sa.n * 40,
               (double)(clock() - t0) / CLOCKS_PER_SEC);
        free(sa.h), free(so.h), free(si.h), free(la), free(lo), free(li);
    }
    return 0;
}
