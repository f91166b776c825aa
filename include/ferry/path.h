/*
 * Path safety: remote path validation and normalisation (R-PATH), and
 * local opens confined beneath a directory the caller holds (openat2 with
 * RESOLVE_BENEATH and no symlinks), so a peer never chooses a local path.
 *
 * Ownership: file descriptors returned are the caller's to close; the
 * directory descriptors passed in stay the caller's.
 */
#ifndef FERRY_PATH_H
#define FERRY_PATH_H

#include <stddef.h>
#include <sys/types.h>

/* R-PATH-2: caps on a remote path (bytes, one component, components). */
#define FERRY_PATH_MAX       4096
#define FERRY_NAME_MAX       255
#define FERRY_PATH_DEPTH_MAX 128

/*
 * Validates and normalises a remote path (docs/protocol.md, R-PATH-*).
 * The input is in[0..len) (it may contain NUL, which is refused). One leading
 * and one trailing '/' are removed; the empty result is the root. Refused
 * with FERRY_EPATH: empty components ("a//b"), "." and "..", NUL, backslash,
 * control characters (0x00-0x1f, 0x7f), invalid or overlong UTF-8, a
 * component over FERRY_NAME_MAX bytes, a path over FERRY_PATH_MAX bytes or
 * over FERRY_PATH_DEPTH_MAX components. On success out holds the normalised
 * path ("" for the root, else "a/b/c"), NUL-terminated; outcap must be at
 * least FERRY_PATH_MAX + 1.
 */
int ferry_path_normalize(const char *in, size_t len, char *out, size_t outcap);

/* Validates one path component with the same rules (no '/'). */
int ferry_name_valid(const char *name, size_t len);
/*
 * R-NAME-1: why a local name cannot travel, as a phrase for people ("a
 * backslash in the name"), or NULL when it can. Clients refuse such a name
 * by name before sending anything of it.
 */
const char *ferry_name_problem(const char *name, size_t len);

/*
 * Opens rel beneath dirfd without following any symlink and without
 * escaping dirfd (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS; on kernels without openat2, a per-component
 * openat(O_NOFOLLOW) walk). Returns an fd or -errno (-ELOOP / -EXDEV for a
 * symlink or an escape).
 */
int ferry_open_beneath(int dirfd, const char *rel, int flags, mode_t mode);

/*
 * Creates every directory of rel beneath dirfd (mode 0755, no symlinks
 * followed) and returns an fd for the last one, or -errno.
 */
int ferry_mkdirs_beneath(int dirfd, const char *rel);

#endif
