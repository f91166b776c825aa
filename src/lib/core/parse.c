/* Parsers for values people type: sizes, ports and HOST:PORT addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"

/* Parses 123, 10K, 256M, 1G, 1T (powers of 1024). */
int ferry_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    /* strtoull accepts "-5" and wraps it: only digits may start a size. */
    if (*s < '0' || *s > '9')
        return FERRY_EUSAGE;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return FERRY_EUSAGE;
    switch (*end) {
    case '\0':
        break;
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        return FERRY_EUSAGE;
    }
    if (shift != 0 && end[1] != '\0')
        return FERRY_EUSAGE;
    if (v > (UINT64_MAX >> shift))
        return FERRY_EUSAGE;
    *out = (uint64_t)v << shift;
    return 0;
}

int ferry_parse_port(const char *s, int allow_zero, unsigned *out)
{
    unsigned v = 0;
    size_t i, n = strlen(s);

    /*
     * R-CLI-4. Digits only, checked by hand: strtoul would take signs, spaces and
     * "0x", and a value that does not fit a port must be refused, not
     * wrapped to another port (70700 is not 5164).
     */
    if (n == 0 || n > 5)
        return FERRY_EUSAGE;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return FERRY_EUSAGE;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > FERRY_PORT_MAX || (v == 0 && !allow_zero))
        return FERRY_EUSAGE;
    *out = v;
    return 0;
}

int ferry_parse_hostport(const char *in, const char *default_port, int allow_zero, char *host,
                         size_t hcap, char *port, size_t pcap)
{
    const char *colon = NULL, *h = in, *p;
    size_t hl;
    unsigned v;

    if (hcap > 0)
        host[0] = '\0';
    if (pcap > 0)
        port[0] = '\0';
    if (in[0] == '[') {
        /* [v6] or [v6]:PORT: the brackets keep the port apart from the address. */
        const char *rb = strchr(in, ']');
        if (rb == NULL || (rb[1] != ':' && rb[1] != '\0'))
            return FERRY_EUSAGE;
        h = in + 1;
        hl = (size_t)(rb - h);
        if (rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = strchr(in, ':');
        /* Two colons or more without brackets: an IPv6 address with no port. */
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            colon = NULL;
        hl = colon != NULL ? (size_t)(colon - in) : strlen(in);
    }
    if (colon != NULL)
        p = colon + 1;
    else if (default_port != NULL)
        p = default_port;
    else
        return FERRY_EUSAGE;
    if (hl == 0 || hl >= hcap || memchr(h, ' ', hl) != NULL)
        return FERRY_EUSAGE;
    if (ferry_parse_port(p, allow_zero, &v) != 0 || (size_t)snprintf(NULL, 0, "%u", v) >= pcap)
        return FERRY_EUSAGE;
    memcpy(host, h, hl);
    host[hl] = '\0';
    /* The canonical form: "07070" and "7070" name one port, and one pin. */
    snprintf(port, pcap, "%u", v);
    return 0;
}

int ferry_split_hostport(const char *in, char *host, size_t hcap, char *port, size_t pcap)
{
    /* --listen: the port is required, and 0 asks the kernel for a free one. */
    return ferry_parse_hostport(in, NULL, 1, host, hcap, port, pcap);
}
