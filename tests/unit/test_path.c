/* Tests for path validation and confined opens (src/lib/store/path.c, R-PATH-1..4). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include <setjmp.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/path.h"

/* ---------------------------------------------------------------------------
 * ferry_path_normalize: the table (reliability.md 3.4).
 * ------------------------------------------------------------------------- */

struct path_case {
    const char *rule; /* the requirement the case exercises */
    const char *in;
    size_t len; /* explicit, so embedded NULs are part of the input */
    int rc;
    const char *out; /* normalised output when rc == 0 */
};

/* A string literal and its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1

static const struct path_case path_cases[] = {
    /* R-PATH-1: traversal and normalisation. */
    {"R-PATH-1", S(".."), FERRY_EPATH, NULL},
    {"R-PATH-1", S("../x"), FERRY_EPATH, NULL},
    {"R-PATH-1", S("a/../../x"), FERRY_EPATH, NULL},
    /* Refused even when it would stay inside: no ".." at all. */
    {"R-PATH-1", S("x/../y"), FERRY_EPATH, NULL},
    {"R-PATH-1", S("a/.."), FERRY_EPATH, NULL},
    {"R-PATH-1", S("/.."), FERRY_EPATH, NULL},
    {"R-PATH-1", S("a/./b"), FERRY_EPATH, NULL},
    {"R-PATH-1", S("./a"), FERRY_EPATH, NULL},
    {"R-PATH-1", S("a/."), FERRY_EPATH, NULL},
    {"R-PATH-1", S("."), FERRY_EPATH, NULL},
    {"R-PATH-1", S("/./"), FERRY_EPATH, NULL},
    /* A leading '/' is the user's root, not the server's: this stays inside the tree. */
    {"R-PATH-1", S("/etc/passwd"), 0, "etc/passwd"},
    {"R-PATH-1", S("//x"), FERRY_EPATH, NULL}, /* only one leading '/' is removed */
    {"R-PATH-1", S("//"), FERRY_EPATH, NULL},  /* an empty component, not the root */
    {"R-PATH-1", S("a//"), FERRY_EPATH, NULL}, /* only one trailing '/' is removed */
    {"R-PATH-1", S("a//b"), FERRY_EPATH, NULL},
    {"R-PATH-1", S("/a//b/"), FERRY_EPATH, NULL},
    {"R-PATH-1", S(""), 0, ""},  /* the root */
    {"R-PATH-1", S("/"), 0, ""}, /* the root */
    {"R-PATH-1", S("a/"), 0, "a"},
    {"R-PATH-1", S("/a/"), 0, "a"},
    {"R-PATH-1", S("a/b/c"), 0, "a/b/c"},
    {"R-PATH-1", S("/a/b/c/"), 0, "a/b/c"},
    /* Names that merely contain dots are ordinary names. */
    {"R-PATH-1", S("..."), 0, "..."},
    {"R-PATH-1", S("..a"), 0, "..a"},
    {"R-PATH-1", S("a.."), 0, "a.."},
    {"R-PATH-1", S(".../x"), 0, ".../x"},
    {"R-PATH-1", S(".git"), 0, ".git"}, /* allowed: the store never interprets names */
    {"R-PATH-1", S(".Git"), 0, ".Git"},
    {"R-PATH-1", S(".git/config"), 0, ".git/config"},
    /* Windows strips a trailing dot and space; Linux keeps them, so they are distinct names. */
    {"R-PATH-1", S("x."), 0, "x."},
    {"R-PATH-1", S("x "), 0, "x "},
    {"R-PATH-1", S(" "), 0, " "},
    {"R-PATH-1", S("a b/c d"), 0, "a b/c d"},
    /* Windows device names and 8.3 short names mean nothing on Linux: allowed. */
    {"R-PATH-1", S("CON"), 0, "CON"},
    {"R-PATH-1", S("nul.txt"), 0, "nul.txt"},
    {"R-PATH-1", S("COM1"), 0, "COM1"},
    {"R-PATH-1", S("GIT~1"), 0, "GIT~1"},
    {"R-PATH-1", S("C:x"), 0, "C:x"}, /* ':' is an ordinary byte on Linux */
    {"R-PATH-1", S("~"), 0, "~"},     /* no tilde expansion */
    {"R-PATH-1", S("~root/x"), 0, "~root/x"},
    /* Percent-encoding is not decoded: "%2e%2e" is a literal six-byte name. */
    {"R-PATH-1", S("%2e%2e"), 0, "%2e%2e"},
    {"R-PATH-1", S("%2e%2e/%2fetc"), 0, "%2e%2e/%2fetc"},

    /* R-PATH-3: backslash, NUL and control bytes. */
    {"R-PATH-3", S("C:\\x"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\\\\srv\\share"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("a\\..\\..\\x"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\\"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("a/b\\c"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("x\0y"), FERRY_EPATH, NULL}, /* embedded NUL: a C string would read "x" */
    {"R-PATH-3", S("x\0"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\0"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("a/\0/b"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\x1b[2J"), FERRY_EPATH, NULL}, /* terminal injection (CVE-2024-43620 class) */
    {"R-PATH-3", S("\x1b]0;pwned\x07"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("a\nb"), FERRY_EPATH, NULL}, /* log-line injection */
    {"R-PATH-3", S("a\rb"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\t"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\x01"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\x1f"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\x7f"), FERRY_EPATH, NULL}, /* DEL */
    {"R-PATH-3", S("ok/\x7f"), FERRY_EPATH, NULL},

    /* R-PATH-3: UTF-8. Valid but deceptive characters are allowed here; see each note. */
    /* U+202E RIGHT-TO-LEFT OVERRIDE is valid UTF-8, so it passes; display code must escape it. */
    {"R-PATH-3", S("photo\xe2\x80\xaegpj.exe"), 0, "photo\xe2\x80\xaegpj.exe"},
    /* NFC U+00E9 and NFD e + U+0301 are both accepted as distinct names; Linux does not
     * normalise, so collision detection belongs to the store, not to this check. */
    {"R-PATH-3", S("caf\xc3\xa9"), 0, "caf\xc3\xa9"},
    {"R-PATH-3", S("cafe\xcc\x81"), 0, "cafe\xcc\x81"},
    {"R-PATH-3", S(".g\xe2\x80\x8cit"), 0, ".g\xe2\x80\x8cit"}, /* ZWNJ: not ".git" on Linux */
    /* U+0085 (NEL) is a C1 control. R-PATH-3 refuses C0 only; display code must escape C1. */
    {"R-PATH-3", S("\xc2\x85"), 0, "\xc2\x85"},
    {"R-PATH-3", S("\xc2\x80"), 0, "\xc2\x80"},                 /* U+0080, smallest 2-byte */
    {"R-PATH-3", S("\xe0\xa0\x80"), 0, "\xe0\xa0\x80"},         /* U+0800, smallest 3-byte */
    {"R-PATH-3", S("\xed\x9f\xbf"), 0, "\xed\x9f\xbf"},         /* U+D7FF, just below surrogates */
    {"R-PATH-3", S("\xee\x80\x80"), 0, "\xee\x80\x80"},         /* U+E000, just above surrogates */
    {"R-PATH-3", S("\xef\xbb\xbfx"), 0, "\xef\xbb\xbfx"},       /* a BOM is just a character */
    {"R-PATH-3", S("\xef\xbf\xbf"), 0, "\xef\xbf\xbf"},         /* U+FFFF noncharacter: valid */
    {"R-PATH-3", S("\xf0\x9f\x98\x80"), 0, "\xf0\x9f\x98\x80"}, /* U+1F600 */
    {"R-PATH-3", S("\xf4\x8f\xbf\xbf"), 0, "\xf4\x8f\xbf\xbf"}, /* U+10FFFF, the last one */
    /* U+FF0F FULLWIDTH SOLIDUS and U+2024 ONE DOT LEADER only look like '/' and "..". */
    {"R-PATH-3", S("a\xef\xbc\x8fz"), 0, "a\xef\xbc\x8fz"},
    {"R-PATH-3", S("\xe2\x80\xa4\xe2\x80\xa4"), 0, "\xe2\x80\xa4\xe2\x80\xa4"},
    {"R-PATH-3", S("\xff"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\xfe"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\x80"), FERRY_EPATH, NULL}, /* lone continuation byte */
    /* A lone continuation byte inside a name. */
    {"R-PATH-3", S("a\xbfz"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("a\xc3"), FERRY_EPATH, NULL},         /* 2-byte sequence truncated at the end */
    {"R-PATH-3", S("a\xe2\x82"), FERRY_EPATH, NULL},     /* 3-byte sequence truncated at the end */
    {"R-PATH-3", S("a\xf0\x9f\x98"), FERRY_EPATH, NULL}, /* 4-byte sequence truncated at the end */
    {"R-PATH-3", S("\xc3/x"), FERRY_EPATH, NULL},        /* truncated before a separator */
    {"R-PATH-3", S("\xe2\x28\xa1"), FERRY_EPATH, NULL},  /* bad second byte */
    {"R-PATH-3", S("\xe2\x82\x28"), FERRY_EPATH, NULL},  /* bad third byte */
    {"R-PATH-3", S("\xc0\xaf"), FERRY_EPATH, NULL},      /* overlong '/' */
    {"R-PATH-3", S("\xc0\xae"), FERRY_EPATH, NULL},      /* overlong '.' */
    {"R-PATH-3", S("\xc0\xae\xc0\xae/x"), FERRY_EPATH, NULL}, /* overlong ".." */
    {"R-PATH-3", S("a/\xc0\xae\xc0\xae/b"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\xc1\xbf"), FERRY_EPATH, NULL},                 /* overlong U+007F */
    {"R-PATH-3", S("\xe0\x80\xaf"), FERRY_EPATH, NULL},             /* 3-byte overlong '/' */
    {"R-PATH-3", S("\xe0\x9f\xbf"), FERRY_EPATH, NULL},             /* 3-byte overlong U+07FF */
    {"R-PATH-3", S("\xf0\x80\x80\xaf"), FERRY_EPATH, NULL},         /* 4-byte overlong '/' */
    {"R-PATH-3", S("\xf0\x8f\xbf\xbf"), FERRY_EPATH, NULL},         /* 4-byte overlong U+FFFF */
    {"R-PATH-3", S("\xed\xa0\x80"), FERRY_EPATH, NULL},             /* surrogate U+D800 */
    {"R-PATH-3", S("\xed\xbf\xbf"), FERRY_EPATH, NULL},             /* surrogate U+DFFF */
    {"R-PATH-3", S("\xed\xa0\xbd\xed\xb8\x80"), FERRY_EPATH, NULL}, /* CESU-8 surrogate pair */
    {"R-PATH-3", S("\xf4\x90\x80\x80"), FERRY_EPATH, NULL}, /* U+110000, above the Unicode range */
    {"R-PATH-3", S("\xf5\x80\x80\x80"), FERRY_EPATH, NULL},
    {"R-PATH-3", S("\xf8\x88\x80\x80\x80"), FERRY_EPATH, NULL},     /* old 5-byte form */
    {"R-PATH-3", S("\xfc\x84\x80\x80\x80\x80"), FERRY_EPATH, NULL}, /* old 6-byte form */
};

/* Renders a case for a failure message, escaping anything not printable ASCII. */
static const char *show(const char *p, size_t n)
{
    static char buf[512];
    size_t i, o = 0;

    for (i = 0; i < n && o + 5 < sizeof(buf); i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else {
            snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
            o += 4;
        }
    }
    if (i < n)
        snprintf(buf + o, sizeof(buf) - o, "...");
    else
        buf[o] = '\0';
    return buf;
}

/*
 * The properties every accepted path has: no leading '/', no "//", no "." or
 * ".." component, none of the refused bytes, and normalising it again gives
 * the same string (R-PATH-1, R-PATH-3).
 */
static void check_normal_form(const char *out)
{
    char again[FERRY_PATH_MAX + 1];
    size_t n = strlen(out), i, start = 0;

    assert_true(n <= FERRY_PATH_MAX);
    if (n == 0)
        return;
    assert_true(out[0] != '/');
    assert_true(out[n - 1] != '/');
    assert_null(strstr(out, "//"));
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];

        assert_false(c < 0x20 || c == 0x7f || c == '\\');
    }
    for (i = 0; i <= n; i++) {
        if (i < n && out[i] != '/')
            continue;
        assert_true(i > start);
        assert_false(i - start == 1 && out[start] == '.');
        assert_false(i - start == 2 && out[start] == '.' && out[start + 1] == '.');
        assert_true(i - start <= FERRY_NAME_MAX);
        start = i + 1;
    }
    assert_int_equal(ferry_path_normalize(out, n, again, sizeof(again)), 0);
    assert_string_equal(again, out);
}

/*
 * Runs one input from an exact-size heap copy, so AddressSanitizer catches a
 * read past the end (a truncated UTF-8 sequence is the usual suspect).
 */
static int run_normalize(const char *in, size_t len, char *out, size_t outcap)
{
    char *copy = malloc(len != 0 ? len : 1);
    int rc;

    assert_non_null(copy);
    if (len != 0)
        memcpy(copy, in, len);
    rc = ferry_path_normalize(len != 0 ? copy : NULL, len, out, outcap);
    free(copy);
    return rc;
}

static void test_normalize_table(void **state)
{
    char out[FERRY_PATH_MAX + 1];
    size_t i, accepted = 0, refused = 0;

    (void)state;
    for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        int rc;

        memset(out, 'Z', sizeof(out));
        rc = run_normalize(c->in, c->len, out, sizeof(out));
        if (rc != c->rc || (rc == 0 && strcmp(out, c->out) != 0) || (rc != 0 && out[0] != '\0')) {
            print_error("case %zu [%s] \"%s\": rc %d, want %d", i, c->rule, show(c->in, c->len), rc,
                        c->rc);
            print_error(" out \"%s\"\n", rc == 0 ? show(out, strlen(out)) : "");
            fail();
        }
        if (rc == 0) {
            check_normal_form(out);
            accepted++;
        } else {
            refused++;
        }
    }
    print_message("path table: %zu cases (%zu accepted, %zu refused)\n", accepted + refused,
                  accepted, refused);
    assert_true(accepted + refused >= 60);
}

/* Fills buf with n components of clen bytes each ('a'..'z' cycling), joined by '/'. */
static size_t make_path(char *buf, size_t cap, size_t n, size_t clen)
{
    size_t i, j, o = 0;

    for (i = 0; i < n; i++) {
        if (i != 0) {
            assert_true(o < cap);
            buf[o++] = '/';
        }
        for (j = 0; j < clen; j++) {
            assert_true(o < cap);
            buf[o++] = (char)('a' + (i + j) % 26);
        }
    }
    return o;
}

static void expect_norm(const char *in, size_t len, int want)
{
    char out[FERRY_PATH_MAX + 1];
    int rc = run_normalize(in, len, out, sizeof(out));

    if (rc != want) {
        print_error("len %zu: rc %d, want %d\n", len, rc, want);
        fail();
    }
    if (rc == 0)
        check_normal_form(out);
    else
        assert_string_equal(out, "");
}

/* R-PATH-2: FERRY_PATH_MAX counts bytes after the one leading and trailing '/' are removed. */
static void test_normalize_path_max(void **state)
{
    size_t cap = FERRY_PATH_MAX + 16, n;
    char *buf = malloc(cap), *out = malloc(FERRY_PATH_MAX + 1);

    (void)state;
    assert_non_null(buf);
    assert_non_null(out);
    /* 17 components of 240 bytes and 16 slashes: exactly 4096 bytes, each cap respected. */
    n = make_path(buf, cap, 17, 240);
    assert_int_equal(n, FERRY_PATH_MAX);
    expect_norm(buf, n, 0);
    assert_int_equal(ferry_path_normalize(buf, n, out, FERRY_PATH_MAX + 1), 0);
    assert_int_equal(strlen(out), FERRY_PATH_MAX);
    assert_memory_equal(out, buf, n);
    /* cap - 1. */
    expect_norm(buf + 1, n - 1, 0);
    /* cap + 1: 4097 bytes. */
    buf[n] = 'x';
    expect_norm(buf, n + 1, FERRY_EPATH);
    /* "/" + 4096 and 4096 + "/" are 4097 bytes of input but 4096 after stripping. */
    memmove(buf + 1, buf, n);
    buf[0] = '/';
    expect_norm(buf, n + 1, 0);
    buf[n + 1] = '/';
    expect_norm(buf, n + 2, 0);
    memmove(buf, buf + 1, n + 1);
    expect_norm(buf, n + 1, 0);
    /* "/" + 4097 + "/" is still over, though every component and the depth are fine. */
    n = make_path(buf + 1, cap - 3, 17, 240);
    buf[0] = '/';
    buf[n + 1] = 'x';
    buf[n + 2] = '/';
    expect_norm(buf, n + 3, FERRY_EPATH);
    expect_norm(buf, n + 2, FERRY_EPATH);
    expect_norm(buf + 1, n + 2, FERRY_EPATH);
    free(out);
    free(buf);
}

/* R-PATH-2: FERRY_NAME_MAX counts bytes, not characters. */
static void test_normalize_name_max(void **state)
{
    char buf[600];
    size_t n;

    (void)state;
    n = make_path(buf, sizeof(buf), 1, FERRY_NAME_MAX);
    expect_norm(buf, n, 0);
    assert_int_equal(ferry_name_valid(buf, n), 0);
    n = make_path(buf, sizeof(buf), 1, FERRY_NAME_MAX + 1);
    expect_norm(buf, n, FERRY_EPATH);
    assert_int_equal(ferry_name_valid(buf, n), FERRY_EPATH);
    /* A 255-byte component in the middle, and a 256-byte one there. */
    memcpy(buf, "a/", 2);
    n = 2 + make_path(buf + 2, sizeof(buf) - 4, 1, FERRY_NAME_MAX);
    memcpy(buf + n, "/b", 2);
    expect_norm(buf, n + 2, 0);
    n = 2 + make_path(buf + 2, sizeof(buf) - 4, 1, FERRY_NAME_MAX + 1);
    memcpy(buf + n, "/b", 2);
    expect_norm(buf, n + 2, FERRY_EPATH);
    /* 253 ASCII bytes + a 2-byte character = 255 bytes: ok; 254 + 2 = 256: refused. */
    n = make_path(buf, sizeof(buf), 1, 253);
    memcpy(buf + n, "\xc3\xa9", 2);
    expect_norm(buf, n + 2, 0);
    n = make_path(buf, sizeof(buf), 1, 254);
    memcpy(buf + n, "\xc3\xa9", 2);
    expect_norm(buf, n + 2, FERRY_EPATH);
}

/* R-PATH-2: FERRY_PATH_DEPTH_MAX components, and 10,000 of them. */
static void test_normalize_depth_max(void **state)
{
    size_t cap = 2 * 10000 + 2, n;
    char *buf = malloc(cap);

    (void)state;
    assert_non_null(buf);
    n = make_path(buf, cap, FERRY_PATH_DEPTH_MAX, 1);
    expect_norm(buf, n, 0);
    buf[n] = '/';
    expect_norm(buf, n + 1, 0); /* a trailing '/' adds no component */
    n = make_path(buf, cap, FERRY_PATH_DEPTH_MAX + 1, 1);
    expect_norm(buf, n, FERRY_EPATH); /* 257 bytes: only the depth cap refuses it */
    /* 10,000 components (19,999 bytes): the byte cap refuses it before any component is read. */
    n = make_path(buf, cap, 10000, 1);
    expect_norm(buf, n, FERRY_EPATH);
    /* The same with a leading and a trailing '/'. */
    memmove(buf + 1, buf, n);
    buf[0] = '/';
    n++;
    buf[n] = '/';
    expect_norm(buf, n + 1, FERRY_EPATH);
    free(buf);
}

/* Arguments outside the contract are refused without touching memory they do not own. */
static void test_normalize_args(void **state)
{
    char out[FERRY_PATH_MAX + 1];

    (void)state;
    assert_int_equal(ferry_path_normalize("a", 1, out, FERRY_PATH_MAX), -EINVAL);
    assert_int_equal(ferry_path_normalize("a", 1, NULL, 0), -EINVAL);
    assert_int_equal(ferry_path_normalize(NULL, 1, out, sizeof(out)), -EINVAL);
    assert_string_equal(out, "");
    strcpy(out, "junk");
    assert_int_equal(ferry_path_normalize(NULL, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* Refusal clears a previous result: outputs are zeroed on entry. */
    strcpy(out, "junk");
    assert_int_equal(ferry_path_normalize("..", 2, out, sizeof(out)), FERRY_EPATH);
    assert_string_equal(out, "");
    /* Only len bytes are read: the NUL-terminated tail is ignored. */
    assert_int_equal(ferry_path_normalize("ab/..", 2, out, sizeof(out)), 0);
    assert_string_equal(out, "ab");
}

/* ferry_name_valid: one component, same rules (R-PATH-1..3). */
static void test_name_valid(void **state)
{
    (void)state;
    assert_int_equal(ferry_name_valid("a", 1), 0);
    assert_int_equal(ferry_name_valid("...", 3), 0);
    assert_int_equal(ferry_name_valid("caf\xc3\xa9", 5), 0);
    assert_int_equal(ferry_name_valid("a/b", 3), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("/", 1), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("", 0), FERRY_EPATH);
    assert_int_equal(ferry_name_valid(NULL, 0), FERRY_EPATH);
    assert_int_equal(ferry_name_valid(NULL, 1), -EINVAL);
    assert_int_equal(ferry_name_valid(".", 1), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("..", 2), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("x\0y", 3), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("a\\b", 3), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("\x1b[2J", 4), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("\xc0\xae", 2), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("\xed\xa0\x80", 3), FERRY_EPATH);
    assert_int_equal(ferry_name_valid("\xf4\x90\x80\x80", 4), FERRY_EPATH);
}

/* ---------------------------------------------------------------------------
 * ferry_open_beneath and ferry_mkdirs_beneath (R-PATH-4) on a temp tree:
 *
 *   base/
 *     outside/                    must stay empty
 *     root/                       the held directory
 *       sub/inner/file            "hello"
 *       sub/ln_out -> base/outside
 *       ln_out -> base/outside
 *       ln_tmp -> /tmp
 *       ln_parent -> ..
 *       ln_in -> sub              a symlink that stays inside is refused too
 *       ln_file -> sub/inner/file
 *       ln_dang -> base/outside/planted
 * ------------------------------------------------------------------------- */

struct tree {
    char base[64];
    char outside[96];
    int basefd;
    int rootfd;
    int outfd;
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Closes the tree's descriptors, removes it from disk and frees it. */
static void tree_free(struct tree *t)
{
    if (t->rootfd >= 0)
        close(t->rootfd);
    if (t->outfd >= 0)
        close(t->outfd);
    if (t->basefd >= 0)
        close(t->basefd);
    if (t->base[0] != '\0')
        nftw(t->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
}

static int tree_setup(void **state)
{
    struct tree *t = calloc(1, sizeof(*t));
    char target[160];
    int fd = -1, rc = -1;

    if (t == NULL)
        goto out;
    t->basefd = t->rootfd = t->outfd = -1;
    snprintf(t->base, sizeof(t->base), "/tmp/ferry-test-path-XXXXXX");
    if (mkdtemp(t->base) == NULL) {
        t->base[0] = '\0';
        goto out;
    }
    snprintf(t->outside, sizeof(t->outside), "%s/outside", t->base);
    t->basefd = open(t->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->basefd < 0 || mkdirat(t->basefd, "outside", 0755) != 0 ||
        mkdirat(t->basefd, "root", 0755) != 0)
        goto out;
    t->outfd = openat(t->basefd, "outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    t->rootfd = openat(t->basefd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->outfd < 0 || t->rootfd < 0)
        goto out;
    if (mkdirat(t->rootfd, "sub", 0755) != 0 || mkdirat(t->rootfd, "sub/inner", 0755) != 0)
        goto out;
    fd = openat(t->rootfd, "sub/inner/file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "hello", 5) != 5)
        goto out;
    snprintf(target, sizeof(target), "%s/planted", t->outside);
    if (symlinkat(t->outside, t->rootfd, "sub/ln_out") != 0 ||
        symlinkat(t->outside, t->rootfd, "ln_out") != 0 ||
        symlinkat("/tmp", t->rootfd, "ln_tmp") != 0 ||
        symlinkat("..", t->rootfd, "ln_parent") != 0 || symlinkat("sub", t->rootfd, "ln_in") != 0 ||
        symlinkat("sub/inner/file", t->rootfd, "ln_file") != 0 ||
        symlinkat(target, t->rootfd, "ln_dang") != 0)
        goto out;
    *state = t;
    t = NULL;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (t != NULL)
        tree_free(t);
    return rc;
}

static int tree_teardown(void **state)
{
    tree_free(*state);
    return 0;
}

/* Counts the entries of a directory other than "." and "..". */
static int count_entries(int dirfd, const char *path)
{
    struct dirent *de;
    DIR *d;
    int fd, n = 0;

    fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    d = fdopendir(fd);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Nothing may ever appear in base/outside, nor next to root in base. */
static void assert_nothing_escaped(const struct tree *t)
{
    assert_int_equal(count_entries(t->outfd, "."), 0);
    assert_int_equal(count_entries(t->basefd, "."), 2);
}

/* R-PATH-4: a symlink or an escape is refused with -ELOOP or -EXDEV. */
static void assert_confined(int rc, const char *rel, int flags)
{
    if (rc == -ELOOP || rc == -EXDEV)
        return;
    if (rc >= 0)
        close(rc);
    print_error("\"%s\" flags %#x: rc %d (%s), want -ELOOP or -EXDEV\n", rel, (unsigned)flags, rc,
                rc < 0 ? strerror(-rc) : "opened");
    fail();
}

static void assert_same_file(int fd, int dirfd, const char *rel)
{
    struct stat a, b;

    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(fstatat(dirfd, rel, &b, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

static mode_t current_umask(void)
{
    mode_t m = umask(022);

    umask(m);
    return m;
}

/* R-PATH-4: ordinary nested opens work, and modes are passed only where openat2 wants one. */
static void test_open_regular(void **state)
{
    struct tree *t = *state;
    char buf[16] = {0};
    int fd;

    fd = ferry_open_beneath(t->rootfd, "sub/inner/file", O_RDONLY, 0);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), 5);
    assert_string_equal(buf, "hello");
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    /* A mode without O_CREAT is dropped rather than making openat2 fail with EINVAL. */
    fd = ferry_open_beneath(t->rootfd, "sub/inner/file", O_RDONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    /* O_DIRECTORY shares a bit with O_TMPFILE; it must not count as "may create". */
    fd = ferry_open_beneath(t->rootfd, "sub/inner", O_RDONLY | O_DIRECTORY, 0755);
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "sub/inner");
    close(fd);
    fd = ferry_open_beneath(t->rootfd, "sub//inner/./file", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    fd = ferry_open_beneath(t->rootfd, "sub/inner/", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/inner/file/", O_RDONLY, 0), -ENOTDIR);
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/missing", O_RDONLY, 0), -ENOENT);
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/inner/file/x", O_RDONLY, 0), -ENOTDIR);
    assert_int_equal(ferry_open_beneath(t->rootfd, "", O_RDONLY, 0), -ENOENT);
    assert_int_equal(ferry_open_beneath(t->rootfd, NULL, O_RDONLY, 0), -EINVAL);
    assert_int_equal(ferry_open_beneath(-1, "sub", O_RDONLY, 0), -EBADF);
}

/* R-PATH-4: a symlink as the last component is refused, whatever it points to. */
static void test_open_symlink_last(void **state)
{
    static const char *const links[] = {"ln_out",  "ln_tmp",  "ln_parent", "ln_in",
                                        "ln_file", "ln_dang", "sub/ln_out"};
    static const int flags[] = {
        O_RDONLY,           O_RDONLY | O_DIRECTORY,       O_PATH,           O_PATH | O_DIRECTORY,
        O_WRONLY | O_CREAT, O_WRONLY | O_CREAT | O_TRUNC, O_RDWR | O_APPEND};
    struct tree *t = *state;
    char buf[16] = {0};
    size_t i, j;
    int rc, fd;

    for (i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        for (j = 0; j < sizeof(flags) / sizeof(flags[0]); j++) {
            rc = ferry_open_beneath(t->rootfd, links[i], flags[j], 0600);
            assert_confined(rc, links[i], flags[j]);
        }
        /* O_EXCL says EEXIST for any existing name, a symlink included: still refused. */
        rc = ferry_open_beneath(t->rootfd, links[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
        assert_int_equal(rc, -EEXIST);
    }
    /* Nothing was created through ln_dang, and ln_file's target was not truncated. */
    assert_nothing_escaped(t);
    fd = openat(t->rootfd, "sub/inner/file", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), 5);
    close(fd);
}

/* R-PATH-4: a symlink in the middle of the path is never passed through. */
static void test_open_symlink_through(void **state)
{
    static const char *const rels[] = {"ln_out/x",
                                       "ln_out/planted",
                                       "ln_tmp/x",
                                       "ln_parent/outside/x",
                                       "ln_parent/root/sub/inner/file",
                                       "ln_in/inner/file",
                                       "sub/ln_out/x",
                                       "sub/ln_out/."};
    static const int flags[] = {O_RDONLY, O_RDONLY | O_DIRECTORY, O_PATH, O_WRONLY | O_CREAT};
    struct tree *t = *state;
    size_t i, j;

    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        for (j = 0; j < sizeof(flags) / sizeof(flags[0]); j++) {
            assert_confined(ferry_open_beneath(t->rootfd, rels[i], flags[j], 0600), rels[i],
                            flags[j]);
        }
        assert_confined(ferry_open_beneath(t->rootfd, rels[i], O_WRONLY | O_CREAT | O_EXCL, 0600),
                        rels[i], O_CREAT | O_EXCL);
    }
    /* A trailing '/' makes the symlink a directory lookup: refused, or EISDIR with O_CREAT. */
    assert_confined(ferry_open_beneath(t->rootfd, "sub/ln_out/", O_RDONLY, 0), "sub/ln_out/",
                    O_RDONLY);
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/ln_out/", O_WRONLY | O_CREAT, 0600),
                     -EISDIR);
    assert_nothing_escaped(t);
}

/* R-PATH-4: absolute paths and ".." are refused before the kernel sees them. */
static void test_open_escape(void **state)
{
    static const char *const rels[] = {
        "..",         "../x",         "../root/sub", "sub/../../x", "sub/..",
        "sub/../sub", "sub/inner/..", "/etc/passwd", "/",           "/tmp",
        "//x",        "./..",         "sub/./../..",
    };
    struct tree *t = *state;
    size_t i;

    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        assert_int_equal(ferry_open_beneath(t->rootfd, rels[i], O_RDONLY, 0), -EXDEV);
        assert_int_equal(ferry_open_beneath(t->rootfd, rels[i], O_WRONLY | O_CREAT, 0600), -EXDEV);
    }
    /* Names that only contain dots are not "..". */
    assert_int_equal(ferry_open_beneath(t->rootfd, "...", O_RDONLY, 0), -ENOENT);
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/..a", O_RDONLY, 0), -ENOENT);
    assert_nothing_escaped(t);
}

/* R-PATH-4: /proc magic links (cwd, root, exe, fd/N) are refused like any symlink. */
static void test_open_magiclink(void **state)
{
    static const char *const rels[] = {"cwd", "root", "exe", "cwd/", "root/etc/passwd"};
    struct tree *t = *state;
    char fdname[32];
    size_t i;
    int procfd;

    procfd = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) {
        print_message("skip: /proc is not mounted\n");
        skip();
    }
    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        assert_confined(ferry_open_beneath(procfd, rels[i], O_RDONLY, 0), rels[i], O_RDONLY);
        assert_confined(ferry_open_beneath(procfd, rels[i], O_PATH, 0), rels[i], O_PATH);
    }
    snprintf(fdname, sizeof(fdname), "fd/%d", t->outfd);
    assert_confined(ferry_open_beneath(procfd, fdname, O_RDONLY | O_DIRECTORY, 0), fdname,
                    O_DIRECTORY);
    snprintf(fdname, sizeof(fdname), "fd/%d/x", t->outfd);
    assert_confined(ferry_open_beneath(procfd, fdname, O_WRONLY | O_CREAT, 0600), fdname, O_CREAT);
    close(procfd);
    assert_nothing_escaped(t);
}

/* R-PATH-4: O_CREAT | O_EXCL creates beneath dirfd with the given mode. */
static void test_open_create(void **state)
{
    struct tree *t = *state;
    struct stat st;
    int fd;

    fd = ferry_open_beneath(t->rootfd, "sub/inner/new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "sub/inner/new");
    close(fd);
    assert_int_equal(fstatat(t->rootfd, "sub/inner/new", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0640 & ~current_umask());
    assert_int_equal(
        ferry_open_beneath(t->rootfd, "sub/inner/new", O_WRONLY | O_CREAT | O_EXCL, 0640), -EEXIST);
    /* O_TMPFILE carries a mode too; tmpfs and ext4 support it, others may not. */
    fd = ferry_open_beneath(t->rootfd, "sub", O_TMPFILE | O_RDWR, 0600);
    if (fd != -EOPNOTSUPP && fd != -EISDIR) {
        assert_true(fd >= 0);
        close(fd);
    }
    assert_int_equal(ferry_open_beneath(t->rootfd, "sub/nodir/new", O_WRONLY | O_CREAT, 0600),
                     -ENOENT);
    assert_nothing_escaped(t);
}

/* ferry_mkdirs_beneath: nested creation, idempotence, and "" as a dup of dirfd. */
static void test_mkdirs_nested(void **state)
{
    struct tree *t = *state;
    struct stat st;
    int fd;

    fd = ferry_mkdirs_beneath(t->rootfd, "a/b/c");
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "a/b/c");
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    assert_int_equal(fstatat(t->rootfd, "a/b", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0755 & ~current_umask());
    fd = ferry_mkdirs_beneath(t->rootfd, "a/b/c"); /* existing: fine */
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "a/b/c");
    close(fd);
    fd = ferry_mkdirs_beneath(t->rootfd, "a/b/c/d");
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "a/b/c/d");
    close(fd);
    fd = ferry_mkdirs_beneath(t->rootfd, "a//b/./c/e/");
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "a/b/c/e");
    close(fd);
    fd = ferry_mkdirs_beneath(t->rootfd, "sub/inner");
    assert_true(fd >= 0);
    assert_same_file(fd, t->rootfd, "sub/inner");
    close(fd);
    /* "" is dirfd itself, as a new descriptor the caller owns. */
    fd = ferry_mkdirs_beneath(t->rootfd, "");
    assert_true(fd >= 0);
    assert_int_not_equal(fd, t->rootfd);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_same_file(fd, t->basefd, "root");
    close(fd);
    assert_int_equal(ferry_mkdirs_beneath(t->rootfd, NULL), -EINVAL);
    assert_nothing_escaped(t);
}

/* R-PATH-4: mkdirs stops at a symlink with -ELOOP and creates nothing past it. */
static void test_mkdirs_symlink(void **state)
{
    static const char *const rels[] = {
        "ln_out/evil",
        "ln_out/evil/deeper",
        "sub/ln_out/evil",
        "ln_parent/evil",
        "ln_parent/outside/evil",
        "ln_in/evil",
        "ln_dang/evil",
        "ln_dang",
        "ln_file/evil",
        "ln_out",
    };
    struct tree *t = *state;
    size_t i;

    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        assert_int_equal(ferry_mkdirs_beneath(t->rootfd, rels[i]), -ELOOP);
    }
    /* A fresh directory before the symlink is fine; nothing after it exists. */
    assert_int_equal(ferry_mkdirs_beneath(t->rootfd, "sub/ln_out/evil"), -ELOOP);
    assert_int_equal(ferry_mkdirs_beneath(t->rootfd, "new/../ln_out/evil"), -EXDEV);
    assert_int_equal(faccessat(t->rootfd, "new", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(count_entries(t->rootfd, "sub"), 2); /* inner and ln_out only */
    assert_int_equal(count_entries(t->rootfd, "sub/inner"), 1);
    assert_nothing_escaped(t);
}

/* R-PATH-4: mkdirs refuses escapes before creating anything, and reports other errors. */
static void test_mkdirs_errors(void **state)
{
    static const char *const rels[] = {"..", "../x", "/x", "/", "a/../b", "a/b/..", "./../x"};
    struct tree *t = *state;
    char longname[FERRY_NAME_MAX + 2];
    size_t i;
    int fd;

    for (i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        assert_int_equal(ferry_mkdirs_beneath(t->rootfd, rels[i]), -EXDEV);
    }
    assert_int_equal(faccessat(t->rootfd, "a", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(ferry_mkdirs_beneath(t->rootfd, "sub/inner/file/x"), -ENOTDIR);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ferry_mkdirs_beneath(t->rootfd, longname), -ENAMETOOLONG);
    longname[FERRY_NAME_MAX] = '\0';
    fd = ferry_mkdirs_beneath(t->rootfd, longname);
    assert_true(fd >= 0);
    close(fd);
    assert_nothing_escaped(t);
}

/*
 * R-PATH-4 under attack (rsync CVE-2024-12747 / Syncthing #3801 class): a
 * second process keeps swapping root/d between a real directory and a
 * symlink to base/outside while we create files and directories under d.
 * Every call must either stay inside or fail; outside must stay empty.
 */
static void test_race_swap(void **state)
{
    struct tree *t = *state;
    char rel[64];
    int i, ok = 0, refused = 0, status;
    pid_t pid;

    assert_int_equal(mkdirat(t->rootfd, "d", 0755), 0);
    assert_int_equal(symlinkat(t->outside, t->rootfd, "d_swap"), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;) {
            renameat2(t->rootfd, "d", t->rootfd, "d_swap", RENAME_EXCHANGE);
        }
    }
    for (i = 0; i < 3000; i++) {
        int fd;

        snprintf(rel, sizeof(rel), "d/f%d", i);
        fd = ferry_open_beneath(t->rootfd, rel, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            close(fd);
            ok++;
        } else {
            refused++;
        }
        snprintf(rel, sizeof(rel), "d/m%d/n", i);
        fd = ferry_mkdirs_beneath(t->rootfd, rel);
        if (fd >= 0) {
            close(fd);
            ok++;
        } else {
            refused++;
        }
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    print_message("race: %d calls stayed inside, %d refused\n", ok, refused);
    assert_nothing_escaped(t);
}

#define BENEATH_TEST(f) cmocka_unit_test_setup_teardown(f, tree_setup, tree_teardown)

static const struct CMUnitTest beneath_tests[] = {
    BENEATH_TEST(test_open_regular),         BENEATH_TEST(test_open_symlink_last),
    BENEATH_TEST(test_open_symlink_through), BENEATH_TEST(test_open_escape),
    BENEATH_TEST(test_open_magiclink),       BENEATH_TEST(test_open_create),
    BENEATH_TEST(test_mkdirs_nested),        BENEATH_TEST(test_mkdirs_symlink),
    BENEATH_TEST(test_mkdirs_errors),        BENEATH_TEST(test_race_swap),
};

/*
 * Makes openat2 fail with ENOSYS in this process, as on a kernel before 5.6,
 * so the same tests exercise the per-component openat(O_NOFOLLOW) walk.
 * Returns 0, or -1 when seccomp filters are unavailable here.
 */
#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

static int force_enosys_openat2(void)
{
#ifdef TEST_AUDIT_ARCH
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    return 0;
#else
    return -1;
#endif
}

/* The child of run_fallback_tests(): returns its exit status. */
static int fallback_child(void)
{
    struct open_how how = {0};
    int failed;

    if (force_enosys_openat2() != 0) {
        print_message("skip: no seccomp here, the openat fallback is not tested\n");
        return 0;
    }
    if (syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how)) >= 0 || errno != ENOSYS) {
        print_error("openat2 still answers under the filter\n");
        return 1;
    }
    print_message("openat2 now fails with ENOSYS: testing the openat walk\n");
    failed = cmocka_run_group_tests_name("path_beneath_fallback", beneath_tests, NULL, NULL);
    return failed == 0 ? 0 : 1;
}

/* Runs the beneath tests again in a child where openat2 says ENOSYS. */
static int run_fallback_tests(void)
{
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0)
        _exit(fallback_child());
    if (waitpid(pid, &status, 0) != pid)
        return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(void)
{
    const struct CMUnitTest normalize_tests[] = {
        cmocka_unit_test(test_normalize_table),    cmocka_unit_test(test_normalize_path_max),
        cmocka_unit_test(test_normalize_name_max), cmocka_unit_test(test_normalize_depth_max),
        cmocka_unit_test(test_normalize_args),     cmocka_unit_test(test_name_valid),
    };
    int failed = 0;

    failed += cmocka_run_group_tests_name("path_normalize", normalize_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("path_beneath", beneath_tests, NULL, NULL);
    failed += run_fallback_tests();
    return failed != 0;
}
