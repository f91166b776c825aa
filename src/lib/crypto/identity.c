/* Device and server identities: Ed25519 keys in self-signed certificates. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ferry/core.h"
#include "ferry/crypto.h"

int ferry_cert_id(X509 *cert, char out[static FERRY_ID_LEN + 1])
{
    EVP_PKEY *pk = X509_get0_pubkey(cert);
    unsigned char *der = NULL;
    uint8_t sum[32];
    int n;

    out[0] = '\0';
    if (pk == NULL)
        return FERRY_EAUTH;
    /* R-TLS-2: the ID covers the DER SubjectPublicKeyInfo, not the cert. */
    n = i2d_PUBKEY(pk, &der);
    if (n <= 0)
        return FERRY_EAUTH;
    ferry_sha256_buf(der, (size_t)n, sum);
    OPENSSL_free(der);
    ferry_base32_encode(sum, sizeof(sum), out, FERRY_ID_LEN + 1);
    return 0;
}

static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name;
    uint8_t serial[8];
    ASN1_INTEGER *sn = NULL;
    BIGNUM *bn = NULL;

    if (x == NULL)
        goto fail;
    ferry_random(serial, sizeof(serial));
    serial[0] &= 0x7f;
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
        (sn = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || !X509_set_serialNumber(x, sn))
        goto fail;
    if (!X509_set_version(x, 2) || X509_gmtime_adj(X509_getm_notBefore(x), -86400) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 100L * 365 * 86400) == NULL)
        goto fail;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"ferry", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, key))
        goto fail;
    /* Ed25519 signs without a separate digest. */
    if (X509_sign(x, key, NULL) <= 0)
        goto fail;
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    return x;
fail:
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static int write_pem(const char *path, int is_key, void *obj)
{
    char tmp[4200];
    FILE *f = NULL;
    int fd = -1, ok, rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return FERRY_ETOOBIG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, is_key ? 0600 : 0644);
    if (fd < 0)
        return -errno;
    if ((f = fdopen(fd, "w")) == NULL) {
        rc = -errno;
        close(fd);
        goto out;
    }
    ok = is_key ? PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, obj);
    if (!ok || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    if (rename(tmp, path) != 0)
        rc = -errno;
out:
    if (f != NULL)
        fclose(f);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int ferry_identity_load_or_create(const char *dir, struct ferry_identity *out)
{
    char kp[4096], cp[4096];
    FILE *f;
    int rc = 0;

    *out = (struct ferry_identity){0};
    if ((rc = ferry_mkdirs(dir, 0700)) != 0)
        return rc;
    snprintf(kp, sizeof(kp), "%s/key.pem", dir);
    snprintf(cp, sizeof(cp), "%s/cert.pem", dir);
    if ((f = fopen(kp, "re")) != NULL) {
        out->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if ((f = fopen(cp, "re")) != NULL) {
            out->cert = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (out->key == NULL || out->cert == NULL || EVP_PKEY_id(out->key) != EVP_PKEY_ED25519 ||
            X509_check_private_key(out->cert, out->key) != 1) {
            rc = FERRY_EAUTH; /* a damaged identity is never silently replaced */
            goto out;
        }
    } else {
        if (errno != ENOENT) {
            rc = -errno;
            goto out;
        }
        if ((out->key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL ||
            (out->cert = make_cert(out->key)) == NULL) {
            rc = FERRY_EINTERNAL;
            goto out;
        }
        if ((rc = write_pem(cp, 0, out->cert)) != 0 || (rc = write_pem(kp, 1, out->key)) != 0)
            goto out;
    }
    rc = ferry_cert_id(out->cert, out->id);
out:
    if (rc != 0)
        ferry_identity_cleanup(out);
    return rc;
}

void ferry_identity_cleanup(struct ferry_identity *id)
{
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
    *id = (struct ferry_identity){0};
}

static int accept_any(int preverify, X509_STORE_CTX *x)
{
    (void)preverify;
    (void)x;
    /* Self-signed by design: the caller compares IDs after the handshake. */
    return 1;
}

SSL_CTX *ferry_tls_ctx_new(const struct ferry_identity *id, int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    if (ctx == NULL)
        return NULL;
    /* R-TLS-1: TLS 1.3 only. AES-128-GCM first: AES-NI makes it the cheapest. */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(
            ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") ||
        SSL_CTX_use_certificate(ctx, id->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Sessions are not resumed: every connection proves its key afresh. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server) {
        SSL_CTX_set_num_tickets(ctx, 0);
        /* R-TLS-1: ferry's order of suites decides, not the client's. */
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int ferry_tls_peer_id(SSL *ssl, char out[static FERRY_ID_LEN + 1])
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    int rc;

    out[0] = '\0';
    if (peer == NULL)
        return FERRY_EAUTH;
    rc = ferry_cert_id(peer, out);
    X509_free(peer);
    return rc;
}
