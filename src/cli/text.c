/* ferry CLI: text shown to people: escaped names, names the protocol cannot carry, sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/path.h"

/* Room for a 4096-byte name whose every byte is escaped, with a margin. */
#define ESC_BUF  (4 * FERRY_PATH_MAX + 64)
#define ESC_RING 4

const char *cli_esc(const char *s)
{
    /* A few at a time, for one message: cli_err("%s to %s", cli_esc(a), cli_esc(b)). */
    static char ring[ESC_RING][ESC_BUF];
    static unsigned next;
    char *out = ring[next++ % ESC_RING];

    ferry_escape(s != NULL ? s : "(null)", s != NULL ? strlen(s) : 6, 0, out, ESC_BUF);
    return out;
}

void cli_print_name(FILE *f, const char *s)
{
    fputs(cli_esc(s), f);
}

size_t cli_text_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;

    /* Escaped text: one column per code point is close enough for a progress line. */
    for (; *p != '\0'; p++)
        n += (*p & 0xc0) != 0x80;
    return n;
}

const char *cli_name_problem(const char *name, size_t len)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t i = 0, seq;
    unsigned cp;

    /* R-NAME-1: what R-PATH-3 refuses, said in words, in the order a person would look. */
    if (len == 0)
        return "an empty name";
    if (len > FERRY_NAME_MAX)
        return "a name longer than 255 bytes";
    if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
        return "'.' and '..' are not names";
    while (i < len) {
        if ((seq = ferry_utf8_decode(p + i, len - i, &cp)) == 0)
            return "the name is not valid UTF-8";
        if (cp == '\\')
            return "a backslash in the name";
        if (cp == '/')
            return "a slash in the name";
        if (cp == '\t')
            return "a tab in the name";
        if (cp == '\n' || cp == '\r')
            return "a line break in the name";
        if (cp < 0x20 || cp == 0x7f)
            return "a control character in the name";
        i += seq;
    }
    /* Anything else the server's own check refuses (kept in step with it). */
    return ferry_name_valid(name, len) == 0 ? NULL : "a name the protocol cannot carry";
}

void cli_human_size(char *out, size_t cap, double v)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;

    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}
