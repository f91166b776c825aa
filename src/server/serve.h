/* Entry point of `ferry serve`. */
#ifndef FERRY_SERVE_H
#define FERRY_SERVE_H

#include <stddef.h>
#include <stdint.h>

int ferry_serve_main(int argc, char **argv);

#endif
