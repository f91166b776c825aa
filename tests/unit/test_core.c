/* Unit tests for core helpers: capped buffers, encodings, identities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/crypto.h"

/* A buffer never grows past its limit, and a refused append changes nothing. */
static void test_buf_caps(void **state)
{
    struct ferry_buf b;
    uint8_t chunk[100];

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    ferry_buf_init(&b, 300);
    assert_int_equal(ferry_buf_append(&b, chunk, 100), 0);
    assert_int_equal(ferry_buf_append(&b, chunk, 100), 0);
    assert_int_equal(ferry_buf_append(&b, chunk, 99), 0);            /* cap - 1 */
    assert_int_equal(ferry_buf_append(&b, chunk, 1), 0);             /* cap */
    assert_int_equal(ferry_buf_append(&b, chunk, 1), FERRY_ETOOBIG); /* cap + 1 */
    assert_int_equal(ferry_buf_used(&b), 300);
    assert_true(b.cap <= 300);
    /* Consumed space is reused without growing. */
    ferry_buf_consume(&b, 250);
    assert_int_equal(ferry_buf_append(&b, chunk, 100), 0);
    assert_int_equal(ferry_buf_used(&b), 150);
    assert_true(b.cap <= 300);
    assert_int_equal(ferry_buf_reserve(&b, 151), FERRY_ETOOBIG);
    assert_int_equal(ferry_buf_reserve(&b, 150), 0);
    ferry_buf_cleanup(&b);
    assert_null(ferry_buf_peek(&b));
}

static void test_base32_vectors(void **state)
{
    char out[64];

    (void)state;
    /* RFC 4648 section 10, without padding. */
    ferry_base32_encode((const uint8_t *)"f", 1, out, sizeof(out));
    assert_string_equal(out, "MY");
    ferry_base32_encode((const uint8_t *)"foob", 4, out, sizeof(out));
    assert_string_equal(out, "MZXW6YQ");
    ferry_base32_encode((const uint8_t *)"foobar", 6, out, sizeof(out));
    assert_string_equal(out, "MZXW6YTBOI");
    /* Output is bounded by the buffer. */
    assert_int_equal(ferry_base32_encode((const uint8_t *)"foobar", 6, out, 4), 3);
}

static void test_hex_and_uuid(void **state)
{
    uint8_t in[4] = {0xde, 0xad, 0xbe, 0xef}, back[4];
    char hex[9], u[37];
    int i;

    (void)state;
    ferry_hex_encode(in, 4, hex);
    assert_string_equal(hex, "deadbeef");
    assert_int_equal(ferry_hex_decode(hex, back, 4), 0);
    assert_memory_equal(in, back, 4);
    assert_int_equal(ferry_hex_decode("deadbee", back, 4), FERRY_EPROTO);
    assert_int_equal(ferry_hex_decode("deadbeeg", back, 4), FERRY_EPROTO);
    for (i = 0; i < 100; i++) {
        ferry_uuid_new(u);
        assert_true(ferry_uuid_valid(u));
        assert_int_equal(u[14], '4');
    }
    assert_false(ferry_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950"));
    assert_false(ferry_uuid_valid("0f8fad5b_d9cb-469f-a165-70867728950e"));
}

static void test_sha256_vector(void **state)
{
    struct ferry_sha256 h;
    char cid[72];

    (void)state;
    /* FIPS 180-2 "abc". */
    assert_int_equal(ferry_sha256_init(&h), 0);
    assert_int_equal(ferry_sha256_update(&h, "abc", 3), 0);
    assert_int_equal(ferry_sha256_final_cid(&h, cid), 0);
    assert_string_equal(cid,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(ferry_cid_valid(cid));
    assert_false(ferry_cid_valid("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61"
                                 "F20015AD"));
    assert_false(ferry_cid_valid("md5:900150983cd24fb0d6963f7d28e17f72"));
}

/* R-TLS-2: an identity survives a reload with the same ID; the key file is private. */
static void test_identity(void **state)
{
    char dir[] = "/tmp/ferry-id-XXXXXX", key[64], cmd[80];
    struct ferry_identity a, b;
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(ferry_identity_load_or_create(dir, &a), 0);
    assert_int_equal(strlen(a.id), FERRY_ID_LEN);
    assert_int_equal(ferry_identity_load_or_create(dir, &b), 0);
    assert_string_equal(a.id, b.id);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ferry_identity_cleanup(&a);
    ferry_identity_cleanup(&b);
    /* A damaged key is refused, never silently replaced. */
    assert_int_equal(truncate(key, 10), 0);
    assert_int_equal(ferry_identity_load_or_create(dir, &a), FERRY_EAUTH);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(ferry_strerror(FERRY_EPATH), "invalid path name");
    assert_int_equal(ferry_err_to_wire(FERRY_EPATH), 7);
    assert_int_equal(ferry_err_from_wire(7), FERRY_EPATH);
    assert_int_equal(ferry_err_from_wire(12345), FERRY_EINTERNAL);
    assert_non_null(ferry_strerror(-2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_caps),     cmocka_unit_test(test_base32_vectors),
        cmocka_unit_test(test_hex_and_uuid), cmocka_unit_test(test_sha256_vector),
        cmocka_unit_test(test_identity),     cmocka_unit_test(test_strerror),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
