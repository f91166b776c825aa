/* Unit tests for the CLI's text helpers: escaping for the terminal, names that cannot travel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"

/* A literal's bytes, embedded NULs included. */
#define ESC(lit, keep) esc(lit, sizeof(lit) - 1, keep)

static const char *esc(const char *s, size_t len, int keep_newlines)
{
    static char out[256];

    ferry_escape(s, len, keep_newlines, out, sizeof(out));
    return out;
}

/* R-CLI-1: what a terminal would act on comes out as \xHH, the rest as it is. */
static void test_escape(void **state)
{
    (void)state;
    assert_string_equal(ESC("plain.txt", 0), "plain.txt");
    assert_string_equal(ESC("caf\xc3\xa9 \xe2\x9c\x93", 0), "caf\xc3\xa9 \xe2\x9c\x93");
    /* C0, DEL, and a backslash doubled so that the escapes stay unambiguous. */
    assert_string_equal(ESC("a\tb\nc\x7f\\d", 0), "a\\x09b\\x0ac\\x7f\\\\d");
    assert_string_equal(ESC("\x1b[31m", 0), "\\x1b[31m");
    /* C1: U+009B (a one-byte CSI) and U+0085, every byte of them. */
    assert_string_equal(ESC("c1\xc2\x9bx", 0), "c1\\xc2\\x9bx");
    assert_string_equal(ESC("\xc2\x85", 0), "\\xc2\\x85");
    /* U+00A0 is printable: kept. */
    assert_string_equal(ESC("\xc2\xa0", 0), "\xc2\xa0");
    /* Bidirectional controls and the line separator. */
    assert_string_equal(ESC("\xe2\x80\xae", 0), "\\xe2\\x80\\xae");
    assert_string_equal(ESC("\xe2\x81\xa6", 0), "\\xe2\\x81\\xa6");
    assert_string_equal(ESC("\xe2\x80\xa8", 0), "\\xe2\\x80\\xa8");
    /* Invalid UTF-8: each byte that starts no sequence. */
    assert_string_equal(ESC("bad\xff", 0), "bad\\xff");
    assert_string_equal(ESC("\xc0\xaf", 0), "\\xc0\\xaf");                   /* overlong */
    assert_string_equal(ESC("\xed\xa0\x80", 0), "\\xed\\xa0\\x80");          /* surrogate */
    assert_string_equal(ESC("\xe2\x9c", 0), "\\xe2\\x9c");                   /* truncated */
    assert_string_equal(ESC("\xf4\x90\x80\x80", 0), "\\xf4\\x90\\x80\\x80"); /* > U+10FFFF */
    /* A NUL inside the given length is a byte like the others. */
    assert_string_equal(ESC("a\0b", 0), "a\\x00b");
    /* Whole messages keep their line breaks and backslashes. */
    assert_string_equal(ESC("one\ntwo\\\t", 1), "one\ntwo\\\\x09");
}

/* The output is cut at a character, with "...", never past its buffer. */
static void test_escape_cap(void **state)
{
    char out[16];
    size_t n;

    (void)state;
    n = ferry_escape("abcdefghijklmnopqrstuvwxyz", 26, 0, out, sizeof(out));
    assert_true(n < sizeof(out));
    assert_string_equal(out + n - 3, "...");
    n = ferry_escape("\x01\x02\x03\x04\x05", 5, 0, out, sizeof(out));
    assert_true(n < sizeof(out));
    assert_null(strstr(out, "\\x0...")); /* no half escape */
    assert_int_equal(ferry_escape("x", 1, 0, out, 1), 0);
    assert_string_equal(out, "");
}

/* R-NAME-1: the reason a local name cannot travel, in words; NULL when it can. */
static void test_name_problem(void **state)
{
    char long_name[300];

    (void)state;
    assert_null(cli_name_problem("my file.txt", 11));
    assert_null(cli_name_problem("c1\xc2\x9bname", 7)); /* valid UTF-8: travels, shown escaped */
    assert_string_equal(cli_name_problem("bad\xff", 4), "the name is not valid UTF-8");
    assert_string_equal(cli_name_problem("a\\b", 3), "a backslash in the name");
    assert_string_equal(cli_name_problem("a\tb", 3), "a tab in the name");
    assert_string_equal(cli_name_problem("a\nb", 3), "a line break in the name");
    assert_string_equal(cli_name_problem("a\rb", 3), "a line break in the name");
    assert_string_equal(cli_name_problem("a\x1b", 2), "a control character in the name");
    assert_string_equal(cli_name_problem("a\x7f", 2), "a control character in the name");
    assert_non_null(cli_name_problem("", 0));
    assert_non_null(cli_name_problem("..", 2));
    memset(long_name, 'a', sizeof(long_name));
    assert_null(cli_name_problem(long_name, 255));
    assert_string_equal(cli_name_problem(long_name, 256), "a name longer than 255 bytes");
}

static void test_human_size(void **state)
{
    char out[32];

    (void)state;
    cli_human_size(out, sizeof(out), 0);
    assert_string_equal(out, "0 B");
    cli_human_size(out, sizeof(out), 1023);
    assert_string_equal(out, "1023 B");
    cli_human_size(out, sizeof(out), 1536);
    assert_string_equal(out, "1.5 KiB");
    cli_human_size(out, sizeof(out), 3.0 * 1024 * 1024);
    assert_string_equal(out, "3.0 MiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_cap),
        cmocka_unit_test(test_name_problem),
        cmocka_unit_test(test_human_size),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
