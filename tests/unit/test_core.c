/* Unit tests for core helpers: capped buffers, encodings, identities. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* Taking a buffer's bytes hands over its storage, bytes first, and empties it. */
static void test_buf_take(void **state)
{
    struct ferry_buf b;
    uint8_t *p;
    size_t n = 99;

    (void)state;
    ferry_buf_init(&b, 64);
    assert_null(ferry_buf_take(&b, &n)); /* never held any */
    assert_int_equal(n, 0);
    assert_int_equal(ferry_buf_append(&b, "0123456789", 10), 0);
    ferry_buf_consume(&b, 4);
    assert_non_null(p = ferry_buf_take(&b, &n));
    assert_int_equal(n, 6);
    assert_memory_equal(p, "456789", 6);
    ferry_free(p);
    /* Empty again, with its limit: it can fill and take anew. */
    assert_null(ferry_buf_peek(&b));
    assert_int_equal(ferry_buf_used(&b), 0);
    assert_int_equal(ferry_buf_append(&b, "ab", 2), 0);
    assert_int_equal(ferry_buf_reserve(&b, 63), FERRY_ETOOBIG);
    assert_non_null(p = ferry_buf_take(&b, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(p, "ab", 2);
    ferry_free(p);
    ferry_buf_cleanup(&b);
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

/*
 * R-FILE: a file frame carries its Download's id as the 16 bytes the UUID text
 * spells. Either case is read (R-CMD: ids are hex of either case), lower case is
 * written, and anything that is not 8-4-4-4-12 hex digits is refused.
 */
static void test_uuid_bytes_r_file(void **state)
{
    static const uint8_t want[16] = {0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f,
                                     0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e};
    static const char *const bad[] = {
        "",
        "0f8fad5b-d9cb-469f-a165-70867728950",    /* 35 characters */
        "0f8fad5b-d9cb-469f-a165-70867728950e0",  /* 37 characters */
        "0f8fad5b-d9cb-469f-a165-70867728950e-",  /* 37, a dash at the end */
        "0f8fad5bd9cb-469f-a165-70867728950e",    /* a dash missing */
        "0f8fad5b0d9cb-469f-a165-70867728950e",   /* a dash replaced by a digit */
        "0f8fad5-bd9cb-469f-a165-70867728950e",   /* a dash one place early */
        "0f8fad5b_d9cb-469f-a165-70867728950e",   /* not a dash */
        "0f8fad5bd9cb469fa16570867728950e",       /* 32 hex digits, no dashes */
        "0f8fad5b-d9cb-469f-a165-70867728950g",   /* not hex */
        "0x8fad5b-d9cb-469f-a165-70867728950e",   /* not hex */
        " f8fad5b-d9cb-469f-a165-70867728950e",   /* space */
        "{0f8fad5b-d9cb-469f-a165-70867728950e}", /* braces */
        "0f8fad5b-d9cb-469f-a165-70867728950\xc3\xa9",
    };
    const char *text = "0f8fad5b-d9cb-469f-a165-70867728950e";
    uint8_t b[16], back[16];
    char u[37], t[38];

    (void)state;
    assert_int_equal(ferry_uuid_to_bytes(text, b), 0);
    assert_memory_equal(b, want, 16);
    memset(u, 'z', sizeof(u));
    ferry_uuid_from_bytes(b, u);
    assert_string_equal(u, text);

    /* Upper and mixed case are read as the same bytes; what comes back is lower case. */
    assert_int_equal(ferry_uuid_to_bytes("0F8FAD5B-D9CB-469F-A165-70867728950E", b), 0);
    assert_memory_equal(b, want, 16);
    assert_int_equal(ferry_uuid_to_bytes("0f8FaD5b-D9cB-469F-a165-70867728950E", b), 0);
    assert_memory_equal(b, want, 16);
    ferry_uuid_from_bytes(b, u);
    assert_string_equal(u, text);

    /* Any 16 bytes make a valid text and come back, not only version-4 UUIDs. */
    for (unsigned v = 0; v <= 255; v++) {
        memset(b, (int)v, sizeof(b));
        b[15] = (uint8_t)(255 - v);
        ferry_uuid_from_bytes(b, u);
        assert_int_equal(strlen(u), 36);
        assert_true(ferry_uuid_valid(u));
        for (size_t i = 0; i < 36; i++)
            assert_true(u[i] == '-' || (u[i] >= '0' && u[i] <= '9') ||
                        (u[i] >= 'a' && u[i] <= 'f'));
        assert_int_equal(ferry_uuid_to_bytes(u, back), 0);
        assert_memory_equal(back, b, 16);
    }
    for (int i = 0; i < 100; i++) {
        ferry_uuid_new(u);
        assert_int_equal(ferry_uuid_to_bytes(u, b), 0);
        ferry_uuid_from_bytes(b, t);
        assert_string_equal(t, u);
    }

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ferry_uuid_to_bytes(bad[i], b), FERRY_EPROTO);
    /* Every position: a dash where a digit belongs, a non-hex character, a digit for a dash. */
    for (size_t i = 0; i < 36; i++) {
        memcpy(t, text, 37);
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            t[i] = '0';
            assert_int_equal(ferry_uuid_to_bytes(t, b), FERRY_EPROTO);
            continue;
        }
        t[i] = '-';
        assert_int_equal(ferry_uuid_to_bytes(t, b), FERRY_EPROTO);
        t[i] = 'G';
        assert_int_equal(ferry_uuid_to_bytes(t, b), FERRY_EPROTO);
        t[i] = '\0'; /* cut short here */
        assert_int_equal(ferry_uuid_to_bytes(t, b), FERRY_EPROTO);
    }
}

/*
 * The id pool: no id handed out twice, in one thread, across threads, or
 * in a child and its parent after a fork (the child must not replay the
 * bytes the parent's pool still holds).
 */
#define ID_N 2000

static void *ids_thread(void *arg)
{
    uint8_t(*ids)[16] = arg;
    int i;

    for (i = 0; i < ID_N; i++)
        ferry_random_id(ids[i], 16);
    return NULL;
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_random_id_pool(void **state)
{
    static uint8_t ids[3 * ID_N + 2][16];
    uint8_t child[16];
    pthread_t th;
    size_t i, n = 0;
    int fds[2], status;
    pid_t pid;

    (void)state;
    for (i = 0; i < ID_N; i++)
        ferry_random_id(ids[n++], 16);
    assert_int_equal(pthread_create(&th, NULL, ids_thread, ids[n]), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    n += ID_N;
    /* Part of the pool is used: a fork now would copy the rest to the child. */
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ferry_random_id(child, sizeof(child));
        _exit(write(fds[1], child, sizeof(child)) == (ssize_t)sizeof(child) ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], ids[n++], 16), 16);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (i = 0; i < ID_N; i++)
        ferry_random_id(ids[n++], 16);
    qsort(ids, n, 16, id_cmp);
    for (i = 1; i < n; i++)
        assert_true(memcmp(ids[i - 1], ids[i], 16) != 0);
    /* Long requests bypass the pool, and still get bytes. */
    {
        uint8_t big[256] = {0}, zero[256] = {0};
        ferry_random_id(big, sizeof(big));
        assert_true(memcmp(big, zero, sizeof(big)) != 0);
    }
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
    /* R-ERR-3: a code the receiver does not know is 10 (internal). */
    assert_int_equal(ferry_err_from_wire(12345), FERRY_EINTERNAL);
    assert_non_null(ferry_strerror(-2));
}

/*
 * R-CLI-4: one port parser for every port a person types. Table cases at
 * 65534, 65535 and 65536 (the cap), zero, empty, signs, spaces and other
 * bases; a port never wraps (70700 is refused, not 5164).
 */
static void test_parse_port(void **state)
{
    static const struct {
        const char *in;
        int allow_zero;
        int rc;
        unsigned want;
    } cases[] = {
        {"1", 0, 0, 1},
        {"7070", 0, 0, 7070},
        {"65534", 0, 0, 65534},
        {"65535", 0, 0, 65535},
        {"65536", 0, FERRY_EUSAGE, 0},
        {"70700", 0, FERRY_EUSAGE, 0},
        {"72606", 0, FERRY_EUSAGE, 0},
        {"99999", 1, FERRY_EUSAGE, 0},
        {"100000", 0, FERRY_EUSAGE, 0},
        {"4294967297", 0, FERRY_EUSAGE, 0},
        {"0", 0, FERRY_EUSAGE, 0},
        {"0", 1, 0, 0},
        {"00080", 0, 0, 80},
        {"", 0, FERRY_EUSAGE, 0},
        {"", 1, FERRY_EUSAGE, 0},
        {"+80", 0, FERRY_EUSAGE, 0},
        {"-80", 0, FERRY_EUSAGE, 0},
        {"-0", 1, FERRY_EUSAGE, 0},
        {" 80", 0, FERRY_EUSAGE, 0},
        {"80 ", 0, FERRY_EUSAGE, 0},
        {"8 0", 0, FERRY_EUSAGE, 0},
        {"0x50", 0, FERRY_EUSAGE, 0},
        {"80a", 0, FERRY_EUSAGE, 0},
        {"1e3", 0, FERRY_EUSAGE, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned v = 12345;
        int rc = ferry_parse_port(cases[i].in, cases[i].allow_zero, &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].want))
            fail_msg("port '%s' (allow_zero %d): rc %d value %u", cases[i].in, cases[i].allow_zero,
                     rc, v);
        if (rc != 0)
            assert_int_equal(v, 12345); /* nothing written on failure */
    }
}

/* HOST:PORT forms: IPv6 in brackets, the default port, and what is refused. */
static void test_parse_hostport(void **state)
{
    static const struct {
        const char *in;
        const char *def;
        int allow_zero;
        const char *host; /* NULL: refused */
        const char *port;
    } cases[] = {
        {"127.0.0.1:7070", "7070", 0, "127.0.0.1", "7070"},
        {"127.0.0.1:65535", "7070", 0, "127.0.0.1", "65535"},
        {"127.0.0.1:65536", "7070", 0, NULL, NULL},
        {"127.0.0.1:72606", "7070", 0, NULL, NULL},
        {"127.0.0.1:070", "7070", 0, "127.0.0.1", "70"},
        {"127.0.0.1", "7070", 0, "127.0.0.1", "7070"},
        {"127.0.0.1", NULL, 1, NULL, NULL},
        {"example.org", "7070", 0, "example.org", "7070"},
        {"127.0.0.1:", "7070", 0, NULL, NULL},
        {":7070", "7070", 0, NULL, NULL},
        {"127.0.0.1:+80", "7070", 0, NULL, NULL},
        {"127.0.0.1:-1", "7070", 0, NULL, NULL},
        {"127.0.0.1: 80", "7070", 0, NULL, NULL},
        {"127.0.0.1:80 ", "7070", 0, NULL, NULL},
        {" 127.0.0.1:80", "7070", 0, NULL, NULL},
        {"127.0.0.1:0", "7070", 0, NULL, NULL},
        {"127.0.0.1:0", NULL, 1, "127.0.0.1", "0"},
        {"127.0.0.1:70700", NULL, 1, NULL, NULL},
        {"[::1]:7070", "7070", 0, "::1", "7070"},
        {"[::1]:65536", "7070", 0, NULL, NULL},
        {"[::1]", "7070", 0, "::1", "7070"},
        {"[::1]", NULL, 1, NULL, NULL},
        {"::1", "7070", 0, "::1", "7070"},
        {"fe80::1:7070", "7070", 0, "fe80::1:7070", "7070"},
        {"[::1]x", "7070", 0, NULL, NULL},
        {"[::1", "7070", 0, NULL, NULL},
        {"[]:7070", "7070", 0, NULL, NULL},
        {"", "7070", 0, NULL, NULL},
    };
    char host[64], port[8];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = ferry_parse_hostport(cases[i].in, cases[i].def, cases[i].allow_zero, host,
                                      sizeof(host), port, sizeof(port));
        if (cases[i].host == NULL) {
            if (rc != FERRY_EUSAGE || host[0] != '\0' || port[0] != '\0')
                fail_msg("'%s' should be refused, got rc %d host '%s' port '%s'", cases[i].in, rc,
                         host, port);
            continue;
        }
        if (rc != 0 || strcmp(host, cases[i].host) != 0 || strcmp(port, cases[i].port) != 0)
            fail_msg("'%s': rc %d host '%s' port '%s'", cases[i].in, rc, host, port);
    }
    /* --listen: the port is required and 0 picks one. */
    assert_int_equal(ferry_split_hostport("127.0.0.1:0", host, sizeof(host), port, sizeof(port)),
                     0);
    assert_string_equal(port, "0");
    assert_int_equal(
        ferry_split_hostport("127.0.0.1:70700", host, sizeof(host), port, sizeof(port)),
        FERRY_EUSAGE);
    assert_int_equal(ferry_split_hostport("127.0.0.1", host, sizeof(host), port, sizeof(port)),
                     FERRY_EUSAGE);
    /* A host that does not fit the caller's buffer is refused, not cut. */
    assert_int_equal(
        ferry_parse_hostport("a-rather-long-host-name:80", "7070", 0, host, 8, port, sizeof(port)),
        FERRY_EUSAGE);
}

/* Sizes: suffixes are powers of 1024; no sign, no overflow. */
static void test_parse_size(void **state)
{
    uint64_t v = 0;

    (void)state;
    assert_int_equal(ferry_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ferry_parse_size("10K", &v), 0);
    assert_int_equal(v, 10240);
    assert_int_equal(ferry_parse_size("256m", &v), 0);
    assert_int_equal(v, 256ull << 20);
    assert_int_equal(ferry_parse_size("1T", &v), 0);
    assert_int_equal(v, 1ull << 40);
    assert_int_equal(ferry_parse_size("18446744073709551615", &v), 0);
    assert_int_equal(ferry_parse_size("18446744073709551616", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size("16777216T", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size("-5", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size("+5", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size(" 5", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size("5KB", &v), FERRY_EUSAGE);
    assert_int_equal(ferry_parse_size("", &v), FERRY_EUSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_caps),          cmocka_unit_test(test_buf_take),
        cmocka_unit_test(test_base32_vectors),    cmocka_unit_test(test_hex_and_uuid),
        cmocka_unit_test(test_uuid_bytes_r_file), cmocka_unit_test(test_sha256_vector),
        cmocka_unit_test(test_identity),          cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_parse_port),        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_parse_size),        cmocka_unit_test(test_random_id_pool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
