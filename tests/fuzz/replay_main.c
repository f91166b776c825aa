/*
 * Corpus replayer for builds without libFuzzer (gcc): runs the target on
 * every regular file of each directory argument (sorted by name) and on each
 * file argument. Arguments starting with '-' are libFuzzer options and are
 * skipped. Exits non-zero if an input cannot be read, if a directory holds no
 * files, or if nothing was replayed at all.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the target on one file. Returns 0 or -1 (reported on stderr). */
static int replay_file(const char *path)
{
    FILE *f;
    struct stat st;
    uint8_t *buf = NULL;
    size_t n;
    int rc = -1;

    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        goto out;
    }
    n = (size_t)st.st_size;
    buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto out;
    }
    if (fread(buf, 1, n, f) != n) {
        fprintf(stderr, "replay: %s: short read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, n);
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* Replays the regular files of dir in name order; an empty corpus is an error. */
static int replay_dir(const char *dir, size_t *count)
{
    struct dirent **ents = NULL;
    size_t files = 0;
    int n, i, rc = 0;

    n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(ents[i]->d_name) + 2;
        char *path = malloc(len);
        struct stat st;

        if (path == NULL) {
            rc = -1;
            break;
        }
        snprintf(path, len, "%s/%s", dir, ents[i]->d_name);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
            rc = -1;
        } else if (S_ISREG(st.st_mode)) {
            files++;
            if (replay_file(path) != 0)
                rc = -1;
            else
                (*count)++;
        }
        free(path);
    }
    for (i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    if (rc == 0 && files == 0) {
        fprintf(stderr, "replay: %s: no inputs\n", dir);
        rc = -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int i, failed = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;

        if (argv[i][0] == '-' && argv[i][1] != '\0')
            continue;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], &count) != 0)
                failed = 1;
        } else if (replay_file(argv[i]) != 0) {
            failed = 1;
        } else {
            count++;
        }
    }
    printf("replayed %zu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "replay: nothing replayed\n");
        failed = 1;
    }
    return failed;
}
