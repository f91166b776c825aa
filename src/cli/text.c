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
    return ferry_name_problem(name, len);
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
