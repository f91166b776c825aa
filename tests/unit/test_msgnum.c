/*
 * R-MSG-1: message numbers are assigned in blocks by area and never reused
 * or renumbered. Every number of include/ferry/wire.h is pinned here with
 * its area; the header and the registry of docs/protocol.md must list
 * exactly these numbers, so a message added, moved or renumbered anywhere
 * fails this test until it is placed in its block here too.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/wire.h"

enum area { SESSION, ACCOUNTS, FILES, TRANSFERS, RESERVED };

static const struct {
    int lo, hi;
    const char *name;
} blocks[] = {
    [SESSION] = {1, 99, "session"},      [ACCOUNTS] = {100, 199, "accounts"},
    [FILES] = {200, 299, "files"},       [TRANSFERS] = {300, 399, "transfers"},
    [RESERVED] = {900, 900, "reserved"},
};

#define MSG(c, n, a)                                                                               \
    {                                                                                              \
        c, n, a, #c                                                                                \
    }
static const struct {
    int value, number;
    enum area area;
    const char *name;
} msgs[] = {
    MSG(FERRY_MSG_CONNECT, 1, SESSION),
    MSG(FERRY_MSG_ACCEPT, 2, SESSION),
    MSG(FERRY_MSG_REJECT, 3, SESSION),
    MSG(FERRY_MSG_DISCONNECT, 4, SESSION),
    MSG(FERRY_MSG_PING, 5, SESSION),
    MSG(FERRY_MSG_PONG, 6, SESSION),
    MSG(FERRY_MSG_ERROR, 7, SESSION),
    MSG(FERRY_MSG_OK, 8, SESSION),
    MSG(FERRY_MSG_SIGNUP, 100, ACCOUNTS),
    MSG(FERRY_MSG_LOGIN, 101, ACCOUNTS),
    MSG(FERRY_MSG_CHANGEPWD, 102, ACCOUNTS),
    MSG(FERRY_MSG_LOGOUT, 103, ACCOUNTS),
    MSG(FERRY_MSG_SESSION, 104, ACCOUNTS),
    MSG(FERRY_MSG_WHOAMI, 105, ACCOUNTS),
    MSG(FERRY_MSG_IDENTITY, 106, ACCOUNTS),
    MSG(FERRY_MSG_DEVICE_LIST, 107, ACCOUNTS),
    MSG(FERRY_MSG_DEVICES, 108, ACCOUNTS),
    MSG(FERRY_MSG_DEVICE_REVOKE, 109, ACCOUNTS),
    MSG(FERRY_MSG_DIRINFO, 200, FILES),
    MSG(FERRY_MSG_DIRPAGE, 201, FILES),
    MSG(FERRY_MSG_REMOVE, 202, FILES),
    MSG(FERRY_MSG_MOVE, 203, FILES),
    MSG(FERRY_MSG_MKDIR, 204, FILES),
    MSG(FERRY_MSG_UPLOAD, 300, TRANSFERS),
    MSG(FERRY_MSG_DOWNLOAD, 301, TRANSFERS),
    MSG(FERRY_MSG_TRANSFER, 302, TRANSFERS),
    MSG(FERRY_MSG_TRANSFER_CANCEL, 303, TRANSFERS),
    MSG(FERRY_MSG_TRANSFER_COMPLETE, 304, TRANSFERS),
    MSG(FERRY_MSG_COMMITTED, 305, TRANSFERS),
    MSG(FERRY_MSG_CHUNKED_UPLOAD, 306, TRANSFERS),
    MSG(FERRY_MSG_CHUNK_NEED, 307, TRANSFERS),
    MSG(FERRY_MSG_CHUNK_STORED, 308, TRANSFERS),
    MSG(FERRY_MSG_COMMAND, 900, RESERVED),
};
#define NMSGS (sizeof(msgs) / sizeof(msgs[0]))

/* The index of number in msgs, or -1. */
static int find(int number)
{
    for (size_t i = 0; i < NMSGS; i++)
        if (msgs[i].number == number)
            return (int)i;
    return -1;
}

/* Each constant has its pinned number, inside its area's block, and no two share one. */
static void test_numbers_in_blocks(void **state)
{
    (void)state;
    for (size_t i = 0; i < NMSGS; i++) {
        if (msgs[i].value != msgs[i].number)
            fail_msg("%s is %d: renumbered from %d", msgs[i].name, msgs[i].value, msgs[i].number);
        if (msgs[i].number < blocks[msgs[i].area].lo || msgs[i].number > blocks[msgs[i].area].hi)
            fail_msg("%s (%d) outside the %s block %d..%d", msgs[i].name, msgs[i].number,
                     blocks[msgs[i].area].name, blocks[msgs[i].area].lo, blocks[msgs[i].area].hi);
        for (size_t j = 0; j < i; j++)
            if (msgs[j].number == msgs[i].number)
                fail_msg("%s and %s share %d", msgs[j].name, msgs[i].name, msgs[i].number);
    }
}

/*
 * Every line of path matching pattern (its first group the number) names a
 * number pinned above, and each pinned number appears exactly once.
 */
static void check_listing(const char *path, const char *pattern)
{
    int seen[NMSGS] = {0};
    char line[1024];
    regmatch_t g[2];
    regex_t re;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED), 0);
    while (fgets(line, sizeof(line), f) != NULL) {
        int number, k;
        if (regexec(&re, line, 2, g, 0) != 0)
            continue;
        number = atoi(line + g[1].rm_so);
        if ((k = find(number)) < 0)
            fail_msg("%s: message %d is not placed in a block by this test: %s", path, number,
                     line);
        seen[k]++;
    }
    regfree(&re);
    fclose(f);
    for (size_t i = 0; i < NMSGS; i++)
        if (seen[i] != 1)
            fail_msg("%s lists %s (%d) %d times", path, msgs[i].name, msgs[i].number, seen[i]);
}

/* The header assigns exactly the numbers above: a new constant must be placed here. */
static void test_header_lists_them(void **state)
{
    (void)state;
    check_listing(FERRY_SOURCE_DIR "/include/ferry/wire.h",
                  "^[[:space:]]*FERRY_MSG_[A-Z_]+[[:space:]]*=[[:space:]]*([0-9]+)");
}

/* The registry of docs/protocol.md ("| No. | Name | Dir. | Reply |") agrees. */
static void test_registry_lists_them(void **state)
{
    (void)state;
    check_listing(FERRY_SOURCE_DIR "/docs/protocol.md",
                  "^\\|[[:space:]]*([0-9]+)[[:space:]]*\\|[[:space:]]*[A-Z][A-Za-z]*[[:space:]]*\\|"
                  "[^|]*(C→S|S→C|both|—)[^|]*\\|");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_in_blocks),
        cmocka_unit_test(test_header_lists_them),
        cmocka_unit_test(test_registry_lists_them),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
