/*
 * Text shown to people: UTF-8 decoding and the escaping of bytes a terminal
 * would act on. Both programs print names that come from a peer or a disk,
 * so the one escaper lives here, below them.
 */
#include <stdio.h>
#include <string.h>

#include "ferry/core.h"

/*
 * Length of the well-formed UTF-8 sequence at p (n bytes available) and its
 * code point, or 0 for a byte that starts none (Unicode Table 3-7: no
 * overlong forms, no surrogates, nothing above U+10FFFF).
 */
size_t ferry_utf8_decode(const unsigned char *p, size_t n, unsigned *cp)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t need, i;
    unsigned v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        v = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        v = c & 0x0fu;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        v = c & 0x07u;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < need || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 1; i < need; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
        v = v << 6 | (p[i] & 0x3fu);
    }
    *cp = v;
    return need;
}

/*
 * R-CLI-1: code points a terminal would act on instead of showing: C0, DEL
 * and C1 controls (U+009B is a one-byte CSI on many terminals), the line and
 * paragraph separators, and the bidirectional controls that make text read
 * in another order than it is stored.
 */
static int cp_hidden(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t ferry_escape(const char *s, size_t len, int keep_newlines, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0, k, seq;
    unsigned cp;

    if (cap == 0)
        return 0;
    while (i < len) {
        char piece[4 * 4 + 1];
        size_t plen;

        seq = ferry_utf8_decode(p + i, len - i, &cp);
        if (seq == 0 || (cp_hidden(cp) && !(keep_newlines && cp == '\n'))) {
            /* Every byte of it as \xHH: the output names the exact bytes. */
            k = seq == 0 ? 1 : seq;
            plen = 0;
            for (size_t j = 0; j < k; j++)
                plen += (size_t)snprintf(piece + plen, sizeof(piece) - plen, "\\x%02x", p[i + j]);
        } else if (cp == '\\' && !keep_newlines) {
            /* A literal backslash doubles, so that "\x41" in a name stays apart from 'A'. */
            memcpy(piece, "\\\\", 2);
            plen = 2;
            k = 1;
        } else {
            memcpy(piece, p + i, seq);
            plen = seq;
            k = seq;
        }
        if (o + plen + 4 > cap) {
            /* Cut at a character, and say so. */
            snprintf(out + o, cap - o, "%s", cap - o > 3 ? "..." : "");
            return strlen(out);
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += k;
    }
    out[o] = '\0';
    return o;
}
