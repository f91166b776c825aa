/* Entry point of `ferry serve`, and small parsers the CLI shares. */
#ifndef FERRY_SERVE_H
#define FERRY_SERVE_H

#include <stddef.h>
#include <stdint.h>

int ferry_serve_main(int argc, char **argv);
int ferry_parse_size(const char *s, uint64_t *out);
int ferry_split_hostport(const char *in, char *host, size_t hcap, char *port, size_t pcap);

#endif
