/* SHA-256 through OpenSSL's EVP (SHA-NI; libsodium's is 5x slower here). */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "ferry/core.h"
#include "ferry/crypto.h"

/* Fetched once: OpenSSL 3.0 pays a provider lookup on every implicit fetch. */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static EVP_MD *sha256_md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_fetched;
}

int ferry_sha256_init(struct ferry_sha256 *h)
{
    h->ctx = EVP_MD_CTX_new();
    if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, sha256_md(), NULL) != 1) {
        ferry_sha256_cleanup(h);
        return FERRY_EINTERNAL;
    }
    return 0;
}

int ferry_sha256_update(struct ferry_sha256 *h, const void *p, size_t n)
{
    return EVP_DigestUpdate(h->ctx, p, n) == 1 ? 0 : FERRY_EINTERNAL;
}

int ferry_sha256_final_cid(struct ferry_sha256 *h, char out[static 72])
{
    uint8_t sum[32];
    unsigned len = 0;
    int rc = 0;

    if (EVP_DigestFinal_ex(h->ctx, sum, &len) != 1 || len != 32) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    memcpy(out, "sha256:", 7);
    ferry_hex_encode(sum, 32, out + 7);
out:
    ferry_sha256_cleanup(h);
    return rc;
}

void ferry_sha256_cleanup(struct ferry_sha256 *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

void ferry_sha256_buf(const void *p, size_t n, uint8_t out[static 32])
{
    unsigned len = 32;

    EVP_Digest(p, n, out, &len, sha256_md(), NULL);
}

int ferry_cid_valid(const char *s)
{
    size_t i;

    /* Both schemes have a 7-byte prefix (R-STORE-7, R-CHUNK-3). */
    if ((strncmp(s, "sha256:", 7) != 0 && strncmp(s, "chunks:", 7) != 0) ||
        strlen(s) != FERRY_CID_LEN)
        return 0;
    for (i = 7; i < FERRY_CID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}
