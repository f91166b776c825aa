/*
 * Identities (Ed25519 keys, self-signed certificates, IDs), TLS contexts
 * that present an identity and accept only TLS 1.3, and hashing.
 *
 * Ownership: a struct ferry_identity is the caller's (filled here, emptied
 * with ferry_identity_cleanup, which frees its key and certificate). An
 * SSL_CTX made here is the caller's and must outlive every connection made
 * with it. A struct ferry_sha256 is the caller's; init allocates inside it,
 * final or cleanup frees.
 */
#ifndef FERRY_CRYPTO_H
#define FERRY_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

/* R-TLS-2: base32 (no padding) of a 32-byte SHA-256 is 52 characters. */
#define FERRY_ID_LEN 52

struct ferry_identity {
    EVP_PKEY *key;
    X509 *cert;
    char id[FERRY_ID_LEN + 1];
};

/*
 * Loads the identity in dir (key.pem, cert.pem), creating a fresh Ed25519
 * key and self-signed certificate when none exists. The key file is 0600.
 */
int ferry_identity_load_or_create(const char *dir, struct ferry_identity *out);
void ferry_identity_cleanup(struct ferry_identity *id);

/* Computes the ID of a certificate's public key. */
int ferry_cert_id(X509 *cert, char out[static FERRY_ID_LEN + 1]);

/*
 * A TLS 1.3-only context presenting id's certificate. Both sides require the
 * peer's certificate but accept any self-signed one: trust comes from
 * comparing IDs after the handshake, never from a CA.
 */
SSL_CTX *ferry_tls_ctx_new(const struct ferry_identity *id, int server);

/* The ID of the peer of a finished handshake; FERRY_EAUTH if there is none. */
int ferry_tls_peer_id(SSL *ssl, char out[static FERRY_ID_LEN + 1]);

/* SHA-256 through OpenSSL (SHA-NI), streaming. */
struct ferry_sha256 {
    EVP_MD_CTX *ctx;
};
int ferry_sha256_init(struct ferry_sha256 *h);
int ferry_sha256_update(struct ferry_sha256 *h, const void *p, size_t n);
/* Writes "sha256:<64 hex>" into out (72 bytes with the NUL) and frees. */
int ferry_sha256_final_cid(struct ferry_sha256 *h, char out[static 72]);
void ferry_sha256_cleanup(struct ferry_sha256 *h);
void ferry_sha256_buf(const void *p, size_t n, uint8_t out[static 32]);

/* Content ids: "sha256:" or "chunks:" + 64 lowercase hex digits (R-STORE-7, R-CHUNK-3). */
#define FERRY_CID_LEN 71
int ferry_cid_valid(const char *s);

#endif
