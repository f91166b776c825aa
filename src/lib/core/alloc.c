/* Allocation wrappers: the one place the library calls malloc. */
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"

void *ferry_malloc(size_t n)
{
    return malloc(n == 0 ? 1 : n);
}

void *ferry_calloc(size_t n, size_t size)
{
    /* calloc checks n * size for overflow itself. */
    return calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
}

void *ferry_realloc(void *p, size_t n)
{
    return realloc(p, n == 0 ? 1 : n);
}

void *ferry_malloc_aligned(size_t align, size_t n)
{
    void *p = NULL;

    return posix_memalign(&p, align, n == 0 ? 1 : n) == 0 ? p : NULL;
}

char *ferry_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ferry_malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void ferry_free(void *p)
{
    free(p);
}
