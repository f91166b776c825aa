/* Path safety: validation of remote path names and opens confined to a held directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/path.h"

/*
 * The fallback walk copies one component at a time into a stack buffer. The
 * kernel refuses a component over NAME_MAX (255) bytes with ENAMETOOLONG, and
 * so do we, before copying.
 */
#define WALK_NAME_MAX 255

/*
 * Returns the length of the valid UTF-8 sequence at p (at most n bytes
 * available), or 0 if it is invalid. R-PATH-3: the ranges are those of
 * Unicode 15 Table 3-7 (well-formed byte sequences), which rules out
 * overlong forms (C0, C1, E0 80-9F, F0 80-8F), UTF-16 surrogates (ED A0-BF)
 * and code points above U+10FFFF (F4 90-BF, F5-FF). The caller handles ASCII.
 */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t need, i;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0; /* E0 80-9F would be an overlong form */
        else if (c == 0xed)
            hi = 0x9f; /* ED A0-BF would encode a surrogate */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90; /* F0 80-8F would be an overlong form */
        else if (c == 0xf4)
            hi = 0x8f; /* F4 90-BF would be above U+10FFFF */
    } else {
        return 0; /* lone continuation, C0/C1 overlong lead, or F5-FF */
    }
    if (n < need)
        return 0; /* truncated at the end of the component */
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < need; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    }
    return need;
}

/*
 * Checks one component p[0..n) against R-PATH-1, R-PATH-2 and R-PATH-3.
 * Returns 0 or FERRY_EPATH.
 */
static int name_check(const unsigned char *p, size_t n)
{
    size_t i = 0, seq;

    /* R-PATH-1: an empty component means "a//b"; "." and ".." never name a file. */
    if (n == 0)
        return FERRY_EPATH;
    if (p[0] == '.' && (n == 1 || (n == 2 && p[1] == '.')))
        return FERRY_EPATH;
    /* R-PATH-2: NAME_MAX on every Linux file system we store on. */
    if (n > FERRY_NAME_MAX)
        return FERRY_EPATH;
    while (i < n) {
        unsigned char c = p[i];

        if (c < 0x80) {
            /*
             * R-PATH-3: NUL truncates C strings; backslash is a separator on
             * Windows peers, so "a\..\x" would climb there; C0 controls and
             * DEL rewrite terminals and split log lines. '/' cannot appear
             * here when called from ferry_path_normalize, but a lone name
             * from ferry_name_valid must not smuggle one in.
             */
            if (c < 0x20 || c == 0x7f || c == '\\' || c == '/')
                return FERRY_EPATH;
            i++;
            continue;
        }
        seq = utf8_seq_len(p + i, n - i);
        if (seq == 0)
            return FERRY_EPATH;
        i += seq;
    }
    return 0;
}

int ferry_path_normalize(const char *in, size_t len, char *out, size_t outcap)
{
    const unsigned char *p = (const unsigned char *)in;
    const unsigned char *slash;
    size_t start = 0, end = len, i, clen, depth = 0;
    int rc;

    if (out == NULL || outcap < FERRY_PATH_MAX + 1) {
        rc = -EINVAL; /* the contract asks for room for any accepted path */
        goto out;
    }
    out[0] = '\0';
    if (in == NULL && len != 0) {
        rc = -EINVAL;
        goto out;
    }

    /*
     * R-PATH-1: one leading '/' means the user's root, so "/etc/passwd" is
     * "etc/passwd" inside the tree. One trailing '/' is tolerated as in a
     * shell. "//" is refused rather than read as the root: it is an empty
     * component between the two slashes, like "//x" and "x//".
     */
    if (len > 0 && p[0] == '/')
        start = 1;
    if (end > start && p[end - 1] == '/') {
        if (end - 1 == start) {
            rc = FERRY_EPATH;
            goto out;
        }
        end--;
    }
    /* R-PATH-2: the total cap is checked first so a huge input costs nothing more. */
    if (end - start > FERRY_PATH_MAX) {
        rc = FERRY_EPATH;
        goto out;
    }
    if (end == start) {
        rc = 0; /* the root */
        goto out;
    }

    i = start;
    for (;;) {
        /* R-PATH-2: stop at the first component past the depth cap. */
        if (++depth > FERRY_PATH_DEPTH_MAX) {
            rc = FERRY_EPATH;
            goto out;
        }
        slash = memchr(p + i, '/', end - i);
        clen = slash != NULL ? (size_t)(slash - (p + i)) : end - i;
        if ((rc = name_check(p + i, clen)) != 0)
            goto out;
        if (slash == NULL)
            break;
        i += clen + 1;
    }
    /* Written only once everything passed, so a refusal leaves out as "". */
    memcpy(out, p + start, end - start);
    out[end - start] = '\0';
    rc = 0;
out:
    return rc;
}

int ferry_name_valid(const char *name, size_t len)
{
    int rc;

    if (name == NULL)
        rc = len != 0 ? -EINVAL : FERRY_EPATH; /* NULL, 0 is the empty name */
    else
        rc = name_check((const unsigned char *)name, len);
    return rc;
}

/*
 * R-PATH-4: refuses before any system call what could only be an escape: an
 * absolute path, or a ".." component. openat2 RESOLVE_BENEATH would also
 * refuse these with EXDEV, but the fallback walk relies on this check.
 */
static int rel_check(const char *rel)
{
    const char *c = rel;

    if (rel[0] == '/')
        return -EXDEV;
    while (*c != '\0') {
        const char *e = strchr(c, '/');

        if (e == NULL)
            e = c + strlen(c);
        if (e - c == 2 && c[0] == '.' && c[1] == '.')
            return -EXDEV;
        c = *e == '/' ? e + 1 : e;
    }
    return 0;
}

/*
 * After an open with O_NOFOLLOW failed with err, reports -ELOOP when the
 * name is a symlink: with O_DIRECTORY the kernel says ENOTDIR for a symlink,
 * and callers expect the same -ELOOP that openat2 RESOLVE_NO_SYMLINKS gives.
 */
static int nofollow_errno(int dfd, const char *name, int err)
{
    struct stat st;

    if ((err == ENOTDIR || err == ELOOP) && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        return -ELOOP;
    return -err;
}

/*
 * R-PATH-4 fallback for kernels before 5.6: opens each directory with
 * O_NOFOLLOW, so no symlink is ever followed, and never goes up since
 * rel_check() refused "..". Intermediate directories are opened O_PATH, which
 * needs only search permission, as openat2 does. Mount points are crossed,
 * as openat2 without RESOLVE_NO_XDEV does.
 */
static int open_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
    char name[WALK_NAME_MAX + 1];
    const char *c = rel, *e;
    size_t n;
    int cur = dirfd, next, fd = -1, rc;
    struct stat st;

    if (strlen(rel) >= PATH_MAX) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    if (rel[0] == '\0') {
        rc = -ENOENT; /* as openat2 says for "" without AT_EMPTY_PATH */
        goto out;
    }
    for (;;) {
        e = strchr(c, '/');
        n = e != NULL ? (size_t)(e - c) : strlen(c);
        if (n > WALK_NAME_MAX) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memcpy(name, c, n);
        name[n] = '\0';
        /* "a//b" is "a/b" to the kernel, and a trailing '/' ends the walk. */
        while (e != NULL && e[1] == '/')
            e++;
        if (e != NULL && e[1] == '\0') {
            /* A trailing '/' asks for a directory, as in path resolution. */
            if (flags & O_CREAT) {
                rc = -EISDIR;
                goto out;
            }
            flags |= O_DIRECTORY;
            e = NULL;
        }
        if (e == NULL)
            break;
        /* "." stays where it is; skipping it saves an open. */
        if (strcmp(name, ".") != 0) {
            next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next < 0) {
                rc = nofollow_errno(cur, name, errno);
                goto out;
            }
            if (cur != dirfd)
                close(cur);
            cur = next;
        }
        c = e + 1;
    }
    fd = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = nofollow_errno(cur, name, errno);
        goto out;
    }
    /* O_PATH | O_NOFOLLOW opens a symlink itself; openat2 would refuse it. */
    if ((flags & O_PATH) && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
        rc = -ELOOP;
        goto out;
    }
    rc = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    if (cur != dirfd)
        close(cur);
    return rc;
}

int ferry_open_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
    struct open_how how;
    long fd;
    int rc;

    if (rel == NULL) {
        rc = -EINVAL;
        goto out;
    }
    if ((rc = rel_check(rel)) != 0)
        goto out;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
    /*
     * openat2 refuses a nonzero mode unless a file may be created. O_TMPFILE
     * contains the O_DIRECTORY bit, so test for all of its bits.
     */
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        how.mode = mode;
    /* R-PATH-4: no symlink at all, no escape, and no /proc magic link. */
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0) {
        rc = (int)fd;
        goto out;
    }
    if (errno != ENOSYS) {
        rc = -errno;
        goto out;
    }
    rc = open_walk(dirfd, rel, flags, mode);
out:
    return rc;
}

int ferry_mkdirs_beneath(int dirfd, const char *rel)
{
    char name[WALK_NAME_MAX + 1];
    const char *c, *e;
    size_t n;
    int cur = dirfd, next, rc;

    if (rel == NULL) {
        rc = -EINVAL;
        goto out;
    }
    if ((rc = rel_check(rel)) != 0)
        goto out;
    for (c = rel; *c != '\0'; c = e != NULL ? e + 1 : c + n) {
        e = strchr(c, '/');
        n = e != NULL ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.'))
            continue; /* "a//b" and "a/./b" name a/b, as for the kernel */
        if (n > WALK_NAME_MAX) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memcpy(name, c, n);
        name[n] = '\0';
        /*
         * mkdirat never follows a symlink in its last component (it says
         * EEXIST, even for a dangling one), and the open below refuses to
         * pass it, so nothing is created past a symlink (R-PATH-4). A
         * directory swapped for a symlink between the two calls is refused
         * the same way.
         */
        if (mkdirat(cur, name, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            goto out;
        }
        next = ferry_open_beneath(cur, name, O_DIRECTORY | O_RDONLY, 0);
        if (next < 0) {
            rc = next;
            goto out;
        }
        if (cur != dirfd)
            close(cur);
        cur = next;
    }
    if (cur == dirfd) {
        /* "" (or only "." and "/") is dirfd itself; the caller owns what we return. */
        rc = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (rc < 0)
            rc = -errno;
        goto out;
    }
    rc = cur;
    cur = dirfd;
out:
    if (cur != dirfd)
        close(cur);
    return rc;
}

const char *ferry_name_problem(const char *name, size_t len)
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
