/* Unit tests for the FastCDC 2020 chunker against the published vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "ferry/chunker.h"
#include "ferry/core.h"

#ifndef FERRY_TESTDATA
#define FERRY_TESTDATA "../shared/testdata"
#endif

static uint8_t *load(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b;

    if (f == NULL)
        return NULL;
    b = malloc(200000);
    *n = fread(b, 1, 200000, f);
    fclose(f);
    return b;
}

struct vec {
    size_t min, avg, max;
    int n;
    size_t len[5];
    uint64_t gear[5];
};

/* shared/testdata/fastcdc/README.md: SekienAkashita.jpg, normalisation level 1. */
static const struct vec vecs[] = {
    {4096,
     16384,
     65535,
     5,
     {21325, 17140, 28084, 18217, 24700},
     {17968276318003433923ull, 8197189939299398838ull, 13019990849178155730ull,
      4509236223063678303ull, 2504464741100432583ull}},
    {8192, 32768, 131072, 2, {66549, 42917}, {15733367461443853673ull, 6321136627705800457ull}},
    {16384, 65536, 262144, 1, {109466}, {2504464741100432583ull}},
};

static void test_published_vectors(void **state)
{
    size_t n = 0, off, v;
    const char *dir = getenv("FERRY_TESTDATA") != NULL ? getenv("FERRY_TESTDATA") : FERRY_TESTDATA;
    char path[4096];
    uint8_t *b;
    int k;

    (void)state;
    snprintf(path, sizeof(path), "%s/fastcdc/SekienAkashita.jpg", dir);
    b = load(path, &n);
    /* A missing fixture is a failure, never a silent pass (shared/ sits beside the checkout). */
    if (b == NULL)
        fail_msg("test vector %s not found: set FERRY_TESTDATA to shared/testdata", path);
    assert_int_equal(n, 109466);
    for (v = 0; v < sizeof(vecs) / sizeof(vecs[0]); v++) {
        struct ferry_cdc c;
        assert_int_equal(ferry_cdc_init(&c, vecs[v].min, vecs[v].avg, vecs[v].max), 0);
        for (off = 0, k = 0; off < n; k++) {
            uint64_t g;
            size_t len = ferry_cdc_next(&c, b + off, n - off, &g);
            assert_true(k < vecs[v].n);
            /* The chunk boundaries are exactly the published ones. */
            assert_int_equal(len, vecs[v].len[k]);
            /*
             * The reference hashes two bytes per step, so at some cuts its
             * value is ours shifted left by one bit; at the end of the data
             * it may have skipped an odd last byte, so only inner cuts count.
             */
            if (off + len < n)
                assert_true(g == vecs[v].gear[k] || (g << 1) == vecs[v].gear[k]);
            off += len;
        }
        assert_int_equal(k, vecs[v].n);
    }
    free(b);
}

static void test_bounds_and_shift(void **state)
{
    struct ferry_cdc c;
    size_t n = 4u << 20, off, cuts = 0, i, j;
    uint8_t *a = malloc(n + 100), *b = malloc(n + 100);
    size_t *ca = calloc(1024, sizeof(size_t)), na = 0;
    uint64_t g;

    (void)state;
    srand(7);
    for (i = 0; i < n; i++)
        a[i] = (uint8_t)rand();
    assert_int_equal(ferry_cdc_init(&c, 64 * 1024, 256 * 1024, 1024 * 1024), 0);
    /* min <= every chunk <= max, except the last. */
    for (off = 0; off < n; cuts++) {
        size_t len = ferry_cdc_next(&c, a + off, n - off, &g);
        if (off + len < n) {
            assert_true(len >= c.min);
            assert_true(len <= c.max);
            ca[na++] = off + len;
        }
        off += len;
    }
    assert_true(cuts >= 4 && cuts <= 64);
    /* 100 bytes inserted at 1 MiB: cuts after the next one keep their content. */
    memcpy(b, a, 1u << 20);
    memset(b + (1u << 20), 'x', 100);
    memcpy(b + (1u << 20) + 100, a + (1u << 20), n - (1u << 20));
    for (off = 0, j = 0; off < n + 100;) {
        size_t len = ferry_cdc_next(&c, b + off, n + 100 - off, &g);
        off += len;
        for (i = 0; i < na; i++)
            if (ca[i] > (2u << 20) && ca[i] + 100 == off)
                j++;
    }
    assert_true(j >= 1);
    /* Bad parameters are refused. */
    assert_int_equal(ferry_cdc_init(&c, 100, 100, 1000), FERRY_EUSAGE);
    assert_int_equal(ferry_cdc_init(&c, 10, 3000, 10000), FERRY_EUSAGE);
    /* Data no longer than min is one chunk. */
    assert_int_equal(ferry_cdc_init(&c, 4096, 16384, 65536), 0);
    assert_int_equal(ferry_cdc_next(&c, a, 4096, &g), 4096);
    assert_int_equal(ferry_cdc_next(&c, a, 0, &g), 0);
    free(a);
    free(b);
    free(ca);
}

/*
 * The plain rule, one byte per step, written here from the paper with its
 * own GEAR table (entry i: the first 8 bytes, big-endian, of MD5 of 64
 * bytes equal to i), so the library's loop is checked against code it does
 * not share.
 */
static uint64_t ref_gear[256];

static void ref_gear_init(void)
{
    uint8_t in[64], out[EVP_MAX_MD_SIZE];
    unsigned len, i, k;

    for (i = 0; i < 256; i++) {
        memset(in, (int)i, sizeof(in));
        len = 0;
        assert_int_equal(EVP_Digest(in, sizeof(in), out, &len, EVP_md5(), NULL), 1);
        ref_gear[i] = 0;
        for (k = 0; k < 8; k++)
            ref_gear[i] = (ref_gear[i] << 8) | out[k];
    }
}

static size_t ref_next(const struct ferry_cdc *c, const uint8_t *b, size_t len, uint64_t *out)
{
    size_t n = len < c->max ? len : c->max, i;
    uint64_t h = 0;

    *out = 0;
    if (len <= c->min)
        return len;
    for (i = c->min; i < n; i++) {
        h = (h << 1) + ref_gear[b[i]];
        if ((h & (i < c->avg ? c->mask_s : c->mask_l)) == 0)
            break;
    }
    *out = h;
    return i;
}

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

/*
 * ferry_cdc_next and ferry_cdc_roll fed in random pieces cut exactly where
 * the plain rule cuts, with the same hash at each cut, on random data of
 * many sizes and seeds and with every parameter set the store or the
 * vectors use. Some inputs repeat a short pattern, so that runs without a
 * match reach max.
 */
static void test_same_cuts_as_plain_rule(void **state)
{
    static const size_t par[][3] = {{64 << 10, 256 << 10, 1 << 20},
                                    {4096, 16384, 65535},
                                    {8192, 32768, 131072},
                                    {2048, 4096, 8192}};
    size_t cap = 5u << 20, p, t;
    uint8_t *b = malloc(cap);
    uint64_t seed;

    (void)state;
    assert_non_null(b);
    ref_gear_init();
    for (p = 0; p < sizeof(par) / sizeof(par[0]); p++) {
        struct ferry_cdc c;
        assert_int_equal(ferry_cdc_init(&c, par[p][0], par[p][1], par[p][2]), 0);
        for (t = 0; t < 24; t++) {
            size_t n, i, off = 0, pos = 0, cuts = 0;
            uint64_t h = 0, x = t * 7919 + p + 1;

            seed = x;
            n = (size_t)(lcg(&x) % cap);
            if (t < 4)
                n = (size_t[]){0, 1, c.min, c.max + 1}[t];
            for (i = 0; i < n; i++)
                b[i] = t % 5 == 4 ? (uint8_t)(i % 61) : (uint8_t)lcg(&x);
            /* One shot. */
            while (off < n) {
                uint64_t g1, g2;
                size_t l1 = ferry_cdc_next(&c, b + off, n - off, &g1);
                size_t l2 = ref_next(&c, b + off, n - off, &g2);
                if (l1 != l2 || g1 != g2)
                    fail_msg("params %zu seed %llu size %zu: cut %zu/%zu at %zu", p,
                             (unsigned long long)seed, n, l1, l2, off);
                off += l1;
                cuts++;
            }
            /* Pieces of random sizes, 0 included, against the same cuts. */
            off = 0;
            i = 0;
            while (i < n) {
                size_t k = (size_t)(lcg(&x) % (t % 3 == 0 ? 70 : 300000)), r;
                uint64_t g;
                int cut;

                if (k > n - i)
                    k = n - i;
                r = ferry_cdc_roll(&c, b + i, pos, k, &h, &cut);
                assert_true(r <= k);
                assert_true(cut || r == k);
                i += r;
                pos += r;
                if (!cut)
                    continue;
                assert_int_equal(ref_next(&c, b + off, n - off, &g), pos);
                assert_true(g == h);
                off += pos;
                pos = 0;
                h = 0;
            }
            /* The stream's end cuts what is left, as the one-shot rule does. */
            if (pos > 0) {
                uint64_t g;
                assert_int_equal(ref_next(&c, b + off, n - off, &g), pos);
            }
            assert_true(cuts > 0 || n == 0);
        }
    }
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_bounds_and_shift),
        cmocka_unit_test(test_same_cuts_as_plain_rule),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
