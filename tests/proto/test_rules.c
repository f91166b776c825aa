/*
 * Black-box tests of protocol rules that no other test covers by name: the
 * TLS profile (R-TLS-1, R-TLS-5, R-TLS-6), framing (R-FRAME-4), reply
 * references (R-CMD-5), faults and their Errors (R-ERR-1, R-ERR-2),
 * message direction and members (R-MSG-2, R-MSG-3), accounts (R-AUTH-3,
 * R-AUTH-8) and the write queue (R-STORE-2, R-STORE-3), each against a real
 * ferry serve.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "chunk_harness.h"

static struct server srv;

static int group_setup(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};

    (void)state;
    server_start(&srv, extra);
    return 0;
}

static int group_teardown(void **state)
{
    int rc;

    (void)state;
    rc = server_stop(&srv);
    server_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

/* A user of its own for each test, so tests never see each other's files. */
static void open_user(struct client *cl, const char *user)
{
    static int n;
    char name[64];

    snprintf(name, sizeof(name), "%s%d", user, n++);
    assert_int_equal(client_open(cl, &srv), 0);
    assert_int_equal(client_signup(cl, name, NULL, 0), 1);
}

/* One command frame (header, type, JSON) with a fresh id, copied into id. */
static size_t cmd_frame(uint8_t *out, size_t cap, int32_t type, json_t *body, char id[37])
{
    ssize_t n;

    ferry_uuid_new(id);
    json_object_set_new(body, "id", json_string(id));
    json_object_set_new(body, "version", json_string("1.0"));
    n = ferry_cmd_encode(type, body, out + FERRY_FRAME_HDR_LEN, cap - FERRY_FRAME_HDR_LEN);
    json_decref(body);
    assert_true(n > 0);
    ferry_frame_header_encode(out, FERRY_FRAME_COMMAND, (uint32_t)n);
    return FERRY_FRAME_HDR_LEN + (size_t)n;
}

/* A command with any JSON text, as a hostile client would write it. */
static void send_text(struct client *cl, int32_t type, const char *json)
{
    size_t n = strlen(json);
    uint8_t *buf = malloc(FERRY_FRAME_HDR_LEN + FERRY_CMD_HDR_LEN + n);

    assert_non_null(buf);
    ferry_frame_header_encode(buf, FERRY_FRAME_COMMAND, (uint32_t)(FERRY_CMD_HDR_LEN + n));
    ferry_put_be32(buf + FERRY_FRAME_HDR_LEN, (uint32_t)type);
    memcpy(buf + FERRY_FRAME_HDR_LEN + FERRY_CMD_HDR_LEN, json, n);
    assert_int_equal(client_raw(cl, buf, FERRY_FRAME_HDR_LEN + FERRY_CMD_HDR_LEN + n), 0);
    free(buf);
}

/* ---- R-TLS: a TLS client of our own, configured unlike ferry's. ---- */

struct rawtls {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static int tickets_seen;

static int count_ticket(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    tickets_seen++;
    return 0; /* not kept: OpenSSL frees it */
}

/*
 * Dials s and runs the handshake as a client whose highest version is
 * max_version, offering suites (NULL: OpenSSL's defaults) and presenting
 * id's certificate (NULL: none). Returns SSL_connect's result (1: done).
 */
static int raw_dial(struct rawtls *t, const struct server *s, int max_version, const char *suites,
                    const struct ferry_identity *id)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    /* A bound against a hang only, never what is tested. */
    struct timeval tv = {.tv_sec = HARNESS_WAIT_MS / 1000};

    memset(t, 0, sizeof(*t));
    sa.sin_port = htons((uint16_t)atoi(s->port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(t->fd >= 0);
    assert_int_equal(connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    assert_non_null(t->ctx = SSL_CTX_new(TLS_client_method()));
    assert_int_equal(SSL_CTX_set_max_proto_version(t->ctx, max_version), 1);
    if (suites != NULL)
        assert_int_equal(SSL_CTX_set_ciphersuites(t->ctx, suites), 1);
    if (id != NULL) {
        assert_int_equal(SSL_CTX_use_certificate(t->ctx, id->cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(t->ctx, id->key), 1);
    }
    /* The server's self-signed certificate: its pin is not what is tested here. */
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    /* A client that would keep any ticket offered, and count it. */
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(t->ctx, count_ticket);
    assert_non_null(t->ssl = SSL_new(t->ctx));
    assert_int_equal(SSL_set_fd(t->ssl, t->fd), 1);
    ERR_clear_error();
    return SSL_connect(t->ssl);
}

static void raw_close(struct rawtls *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
    ERR_clear_error();
}

/* Reads exactly n bytes of plaintext; 1, or 0 on any failure. */
static int raw_read(struct rawtls *t, uint8_t *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        int k = SSL_read(t->ssl, p + got, (int)(n - got));
        if (k <= 0)
            return 0;
        got += (size_t)k;
    }
    return 1;
}

static void raw_send(struct rawtls *t, int32_t type, json_t *body)
{
    uint8_t buf[4096];
    char id[37];
    size_t n = cmd_frame(buf, sizeof(buf), type, body, id);

    assert_int_equal(SSL_write(t->ssl, buf, (int)n), (int)n);
}

/* The next command, heartbeats skipped: its type, or -1 when the link fails. */
static int raw_recv_type(struct rawtls *t)
{
    static uint8_t payload[FERRY_FRAME_PAYLOAD_MAX];
    uint8_t h[FERRY_FRAME_HDR_LEN];
    uint32_t len;

    for (;;) {
        if (!raw_read(t, h, 2))
            return -1;
        if (h[1] == FERRY_FRAME_HEARTBEAT)
            continue;
        if (!raw_read(t, h + 2, 4))
            return -1;
        len = ferry_get_be32(h + 2);
        if (len > sizeof(payload) || len < FERRY_CMD_HDR_LEN || !raw_read(t, payload, len))
            return -1;
        if (h[1] == FERRY_FRAME_COMMAND)
            return (int)ferry_get_be32(payload);
    }
}

/* Connect over the raw link: Accept must come back. */
static void raw_hello(struct rawtls *t)
{
    raw_send(t, FERRY_MSG_CONNECT,
             json_pack("{s:s, s:s}", "client", "ferry-test", "version", HARNESS_CONNECT_VERSION));
    assert_int_equal(raw_recv_type(t), FERRY_MSG_ACCEPT);
}

static void device_identity(struct ferry_identity *id, const char *name)
{
    char dir[400];

    snprintf(dir, sizeof(dir), "%s/%s", srv.dir, name);
    assert_int_equal(ferry_identity_load_or_create(dir, id), 0);
}

/*
 * R-TLS-1: TLS 1.3 only; the three suites, AES-128-GCM first whatever the
 * client's order, and no other;
 * no session ticket, so no resumption and no early data.
 */
static void test_tls_profile_r_tls_1(void **state)
{
    static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256"};
    struct ferry_identity id;
    struct rawtls t;
    size_t i;

    (void)state;
    device_identity(&id, "tls1");
    /* A TLS 1.2 client is refused in the handshake. */
    assert_int_not_equal(raw_dial(&t, &srv, TLS1_2_VERSION, NULL, &id), 1);
    raw_close(&t);

    /* Offered in ferry's order, AES-128-GCM is taken. */
    tickets_seen = 0;
    assert_int_equal(raw_dial(&t, &srv, TLS1_3_VERSION,
                              "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                              "TLS_CHACHA20_POLY1305_SHA256",
                              &id),
                     1);
    assert_int_equal(SSL_version(t.ssl), TLS1_3_VERSION);
    assert_string_equal(SSL_get_cipher_name(t.ssl), "TLS_AES_128_GCM_SHA256");
    /* A round trip: a NewSessionTicket sent after the handshake has been read by now. */
    raw_hello(&t);
    raw_send(&t, FERRY_MSG_PING, json_object());
    assert_int_equal(raw_recv_type(&t), FERRY_MSG_PONG);
    assert_int_equal(tickets_seen, 0);
    assert_int_equal(SSL_session_reused(t.ssl), 0);
    raw_close(&t);

    /* Offered in the reverse order, the server's order still decides. */
    assert_int_equal(raw_dial(&t, &srv, TLS1_3_VERSION,
                              "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:"
                              "TLS_AES_128_GCM_SHA256",
                              &id),
                     1);
    assert_string_equal(SSL_get_cipher_name(t.ssl), "TLS_AES_128_GCM_SHA256");
    raw_hello(&t);
    raw_close(&t);

    /* Each of the three alone is spoken. */
    for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        assert_int_equal(raw_dial(&t, &srv, TLS1_3_VERSION, suites[i], &id), 1);
        assert_string_equal(SSL_get_cipher_name(t.ssl), suites[i]);
        raw_hello(&t);
        raw_close(&t);
    }
    /* A TLS 1.3 suite outside the list is not. */
    assert_int_not_equal(raw_dial(&t, &srv, TLS1_3_VERSION, "TLS_AES_128_CCM_SHA256", &id), 1);
    raw_close(&t);
    assert_int_equal(tickets_seen, 0);
    ferry_identity_cleanup(&id);
}

/* R-TLS-5: a client without a certificate never gets past the handshake. */
static void test_client_cert_required_r_tls_5(void **state)
{
    struct client by;
    struct rawtls t;
    uint8_t b;
    unsigned long e, reason = 0;

    (void)state;
    /*
     * In TLS 1.3 the client's side of the handshake may finish before the
     * server has judged its (missing) certificate: the refusal is the
     * server's alert, which the first read returns.
     */
    if (raw_dial(&t, &srv, TLS1_3_VERSION, NULL, NULL) == 1)
        assert_false(raw_read(&t, &b, 1)); /* nothing sent: no reset can race the alert */
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_SSL)
            reason = ERR_GET_REASON(e);
    fprintf(stderr, "refused without a certificate: reason %lu\n", reason);
    assert_int_equal(reason, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED);
    raw_close(&t);
    /* The server is unharmed. */
    open_user(&by, "tls5");
    assert_true(ping_ok(&by));
    client_close(&by);
}

/* A certificate for key, built to fail every check a CA-minded peer would make. */
static X509 *odd_cert(EVP_PKEY *key, const char *subject, const char *issuer, long from_days,
                      long to_days, long serial)
{
    static const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign"},    /* no digitalSignature */
        {NID_ext_key_usage, "critical,serverAuth"}, /* no clientAuth */
    };
    X509 *x = X509_new();
    X509_NAME *sn = X509_NAME_new(), *in = X509_NAME_new();
    size_t i;

    assert_non_null(x);
    assert_non_null(sn);
    assert_non_null(in);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400L));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400L));
    assert_int_equal(X509_NAME_add_entry_by_txt(sn, "CN", MBSTRING_ASC,
                                                (const unsigned char *)subject, -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(in, "CN", MBSTRING_ASC,
                                                (const unsigned char *)issuer, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, sn), 1);
    assert_int_equal(X509_set_issuer_name(x, in), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, exts[i].nid, exts[i].value);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, NULL) > 0);
    X509_NAME_free(sn);
    X509_NAME_free(in);
    return x;
}

/* R-TLS-2 computed here from the key alone: base32(SHA-256(DER(SPKI))). */
static void key_id(EVP_PKEY *key, char out[FERRY_ID_LEN + 1])
{
    unsigned char *der = NULL;
    uint8_t sum[32];
    int n = i2d_PUBKEY(key, &der);

    assert_true(n > 0);
    ferry_sha256_buf(der, (size_t)n, sum);
    OPENSSL_free(der);
    ferry_base32_encode(sum, sizeof(sum), out, FERRY_ID_LEN + 1);
}

/* A logged-out client presenting cert (which it takes) for key (shared). */
static void open_with_cert(struct client *cl, EVP_PKEY *key, X509 *cert)
{
    memset(cl, 0, sizeof(*cl));
    assert_int_equal(EVP_PKEY_up_ref(key), 1);
    cl->id.key = key;
    cl->id.cert = cert;
    assert_int_equal(ferry_cert_id(cert, cl->id.id), 0);
    assert_int_equal(ferry_client_connect(&cl->c, "127.0.0.1", srv.port, &cl->id, srv.id, 5000), 0);
}

/*
 * R-TLS-6: an expired certificate with a foreign issuer, a CA's extensions
 * and no client use is accepted; the device is its key, so a second,
 * not-yet-valid certificate for the same key is the same device and its
 * session token works.
 */
static void test_cert_is_a_key_r_tls_6(void **state)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char want[FERRY_ID_LEN + 1], token[64];
    struct client a, b;
    struct ferry_cmd m;

    (void)state;
    assert_non_null(key);
    key_id(key, want);
    open_with_cert(&a, key, odd_cert(key, "Not Me", "Some Authority", -3650, -3000, 1));
    assert_int_equal(client_signup(&a, "tls6", token, sizeof(token)), 1);
    assert_int_equal(client_send(&a, FERRY_MSG_WHOAMI, json_object()), 0);
    assert_int_equal(client_expect(&a, FERRY_MSG_IDENTITY, &m), 1);
    assert_string_equal(str_member(&m, "device_id"), want);
    ferry_cmd_cleanup(&m);
    client_close(&a);

    open_with_cert(&b, key, odd_cert(key, "Someone Else", "Nobody", 3000, 3650, 987654321));
    assert_int_equal(client_hello(&b, token), 1);
    assert_int_equal(client_send(&b, FERRY_MSG_WHOAMI, json_object()), 0);
    assert_int_equal(client_expect(&b, FERRY_MSG_IDENTITY, &m), 1);
    assert_string_equal(str_member(&m, "user"), "tls6");
    assert_string_equal(str_member(&m, "device_id"), want);
    ferry_cmd_cleanup(&m);
    client_close(&b);
    EVP_PKEY_free(key);
}

/* ---- R-FRAME-4 ---- */

/*
 * R-FRAME-4: frames arrive as the stream splits them: a Mkdir and a Ping
 * sent one byte per write (one TLS record each), then 500 Pings in one
 * write, are all answered.
 */
static void test_any_split_r_frame_4(void **state)
{
    enum { PINGS = 500 };
    uint8_t *buf = malloc(PINGS * 128);
    char mk[37], ping[37], id[37];
    struct ferry_cmd m;
    struct client a;
    size_t n, i;
    int pongs = 0;

    (void)state;
    assert_non_null(buf);
    open_user(&a, "frame4");
    n = cmd_frame(buf, 4096, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "bytewise"), mk);
    n += cmd_frame(buf + n, 4096, FERRY_MSG_PING, json_object(), ping);
    for (i = 0; i < n; i++)
        assert_int_equal(client_raw(&a, buf + i, 1), 0);
    /* The Pong may overtake the Ok, which waits for its commit (R-PIPE-2). */
    for (i = 0; i < 2; i++) {
        assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
        assert_true(m.type == FERRY_MSG_OK || m.type == FERRY_MSG_PONG);
        assert_string_equal(str_member(&m, "ref"), m.type == FERRY_MSG_OK ? mk : ping);
        pongs += m.type == FERRY_MSG_PONG;
        ferry_cmd_cleanup(&m);
    }
    assert_int_equal(pongs, 1);
    pongs = 0;

    for (n = 0, i = 0; i < PINGS; i++)
        n += cmd_frame(buf + n, 128, FERRY_MSG_PING, json_object(), id);
    assert_int_equal(client_raw(&a, buf, n), 0);
    while (pongs < PINGS) {
        recv_type(&a, FERRY_MSG_PONG, &m);
        pongs++;
        ferry_cmd_cleanup(&m);
    }
    /* The last Pong answers the last Ping. */
    assert_true(ping_ok(&a));
    client_close(&a);
    free(buf);
}

/* ---- R-CMD-5 ---- */

/* Sends a request and expects a reply of type whose ref is the request's id. */
static void expect_reply(struct client *cl, int32_t type, json_t *body, int32_t reply)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(cl, type, body), 0);
    assert_int_equal(client_recv(cl, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(m.type, reply);
    assert_string_equal(str_member(&m, "ref"), cl->last_ref);
    ferry_cmd_cleanup(&m);
}

/*
 * R-CMD-5: replies (Ok, Pong, DirPage, Identity, Devices, Transfer, Error)
 * carry the request's id as ref; Committed, the server's TransferComplete
 * and the Error of the authentication deadline carry none.
 */
static void test_reply_refs_r_cmd_5(void **state)
{
    static const char *const short_auth[] = {"--auth-timeout", "1", NULL};
    uint8_t data[100], tid[16];
    char hex[33], upload_ref[37], cid[80];
    struct ferry_sha256 sha;
    struct server other;
    struct ferry_cmd m;
    struct client a;

    (void)state;
    memset(data, 'r', sizeof(data));
    open_user(&a, "cmd5");
    expect_reply(&a, FERRY_MSG_PING, json_object(), FERRY_MSG_PONG);
    expect_reply(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "d"), FERRY_MSG_OK);
    expect_reply(&a, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "d"), FERRY_MSG_DIRPAGE);
    expect_reply(&a, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "nowhere"), FERRY_MSG_ERROR);
    expect_reply(&a, FERRY_MSG_WHOAMI, json_object(), FERRY_MSG_IDENTITY);
    expect_reply(&a, FERRY_MSG_DEVICE_LIST, json_object(), FERRY_MSG_DEVICES);

    /* Upload: Committed has no ref; an Error about the upload refers to the Upload. */
    new_tid(tid, hex);
    open_plain(&a, tid, "d/f.bin", sizeof(data), upload_ref);
    assert_int_equal(ferry_client_send_data(a.c, tid, 0, data, sizeof(data)), 0);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, sizeof(data));
    ferry_sha256_final_cid(&sha, cid);
    send_complete(&a, tid, cid);
    recv_type(&a, FERRY_MSG_COMMITTED, &m);
    assert_null(json_object_get(m.body, "ref"));
    ferry_cmd_cleanup(&m);
    new_tid(tid, hex);
    open_plain(&a, tid, "d", sizeof(data), upload_ref);
    assert_int_equal(ferry_client_send_data(a.c, tid, 0, data, sizeof(data)), 0);
    send_complete(&a, tid, cid);
    expect_error(&a, 12, upload_ref, tid, -1);

    /* Download: Transfer answers it; the server's TransferComplete is not a reply. */
    expect_reply(&a, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", "d/f.bin"), FERRY_MSG_TRANSFER);
    recv_type(&a, FERRY_MSG_TRANSFER_COMPLETE, &m);
    assert_null(json_object_get(m.body, "ref"));
    ferry_cmd_cleanup(&m);

    /* An Error about a data frame refers to the Upload that opened its transfer. */
    new_tid(tid, hex);
    open_plain(&a, tid, "d/g.bin", 10, upload_ref);
    queue_data(&a, tid, 0, data, 11); /* one byte more than declared (R-DATA-4) */
    flush(&a);
    recv_type(&a, FERRY_MSG_ERROR, &m);
    assert_int_equal(err_code(&m), 2);
    assert_string_equal(str_member(&m, "ref"), upload_ref);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 0);
    client_close(&a);

    /*
     * The authentication deadline's Error answers no request. Nothing is
     * sent, so no request can race the one-second deadline.
     */
    server_start(&other, short_auth);
    assert_int_equal(client_open(&a, &other), 0);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 15);
    assert_null(json_object_get(m.body, "ref"));
    ferry_cmd_cleanup(&m);
    client_close(&a);
    assert_int_equal(server_stop(&other), 0);
    server_cleanup(&other);
}

/* ---- R-ERR ---- */

/* The number of lines of a file that contain every one of the needles. */
static int count_lines(const char *path, const char *const *needles)
{
    char line[2048];
    int n = 0;
    FILE *f = fopen(path, "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *const *k = needles;
        while (*k != NULL && strstr(line, *k) != NULL)
            k++;
        n += *k == NULL;
    }
    fclose(f);
    return n;
}

/*
 * R-ERR-1: a fault earns one Error (with the offending message's id as ref
 * when it could be read), then the close of that connection only: another
 * connection of the same user goes on. The server logs one line per fault,
 * with the peer's address and the reason.
 */
static void test_fault_closes_one_r_err_1(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    char dev[80];
    struct server s;
    struct acct u;
    struct client a, b, c;
    struct ferry_cmd m;
    uint8_t tid[16];
    char hex[33];

    (void)state;
    server_start(&s, extra);
    acct_signup(&s, &u, "err1");
    acct_open(&s, &u, &a);
    assert_int_equal(client_open(&b, &s), 0);
    assert_int_equal(client_hello(&b, NULL), 1);
    assert_int_equal(client_send(&b, FERRY_MSG_LOGIN,
                                 json_pack("{s:s, s:s, s:s}", "user", "err1", "password",
                                           "correct horse", "device", "second")),
                     0);
    recv_type(&b, FERRY_MSG_SESSION, &m);
    ferry_cmd_cleanup(&m);
    snprintf(dev, sizeof(dev), "device=%s", a.id.id); /* both faulty connections are u's device */

    /* A frame of an unknown type: no id to refer to. */
    {
        uint8_t h[FERRY_FRAME_HDR_LEN] = {1, 9};
        ferry_put_be32(h + 2, 4);
        assert_int_equal(client_raw(&a, h, sizeof(h)), 0);
    }
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 1);
    assert_null(json_object_get(m.body, "ref"));
    assert_true(json_is_string(json_object_get(m.body, "message")));
    ferry_cmd_cleanup(&m);
    /* Nothing after the Error but the close. */
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 0);
    client_close(&a);
    assert_true(ping_ok(&b));

    /* A malformed Upload (negative size): the Error refers to it. */
    acct_open(&s, &u, &c);
    new_tid(tid, hex);
    assert_int_equal(client_send(&c, FERRY_MSG_UPLOAD,
                                 json_pack("{s:s, s:s, s:i}", "tid", hex, "path", "x", "size", -1)),
                     0);
    assert_int_equal(client_recv(&c, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 1);
    assert_string_equal(str_member(&m, "ref"), c.last_ref);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_recv(&c, &m, HARNESS_WAIT_MS), 0);
    client_close(&c);
    assert_true(ping_ok(&b));
    client_close(&b);

    /* One line per fault, naming the peer (address, user, device) and the reason. */
    {
        const char *const any[] = {"event=fault", NULL};
        const char *const named[] = {"event=fault", "ip=127.0.0.1", "user=err1",
                                     dev,           "reason=",      NULL};
        assert_int_equal(count_lines(s.err_path, any), 2);
        assert_int_equal(count_lines(s.err_path, named), 2);
    }
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
}

/* The next message is an Error whose message is a string of at most 1024 bytes; its code. */
static int short_error(struct client *cl)
{
    struct ferry_cmd m;
    json_t *msg;
    int code;

    recv_type(cl, FERRY_MSG_ERROR, &m);
    msg = json_object_get(m.body, "message");
    assert_true(json_is_string(msg));
    assert_true(json_string_length(msg) <= 1024);
    code = err_code(&m);
    ferry_cmd_cleanup(&m);
    return code;
}

/*
 * R-ERR-2: an Error's message stays within 1024 bytes when what it is about
 * is long: paths of 4000 bytes and more, over-long members, a long user name.
 */
static void test_error_message_short_r_err_2(void **state)
{
    char *big = malloc(9000), *bad = malloc(5000);
    struct client a, b;

    (void)state;
    assert_non_null(big);
    assert_non_null(bad);
    memset(big, 'p', 8999);
    big[8999] = '\0';
    for (size_t i = 0; i < 4000; i++)
        bad[i] = i % 50 == 49 ? '/' : 'q';
    bad[4000] = '\0';
    open_user(&a, "err2");
    /* Not found, for a 4000-byte path. */
    assert_int_equal(client_send(&a, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", bad)), 0);
    assert_int_equal(short_error(&a), 5);
    assert_int_equal(
        client_send(&a, FERRY_MSG_MOVE, json_pack("{s:s, s:s}", "from", bad, "to", "elsewhere")),
        0);
    assert_int_equal(short_error(&a), 5);
    /* A path element over 255 bytes (R-PATH), in a 4000-byte path. */
    memset(bad + 1000, 'z', 600);
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", bad)), 0);
    assert_int_equal(short_error(&a), 7);
    /* Over the member's cap: malformed, kept. */
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", big)), 0);
    assert_int_equal(short_error(&a), 1);
    assert_true(ping_ok(&a));
    /* A Download of a long missing path. */
    assert_int_equal(client_send(&a, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", bad)), 0);
    assert_int_equal(short_error(&a), 7);
    client_close(&a);
    /* A user name that breaks R-AUTH-1, as long as a frame allows. */
    assert_int_equal(client_open(&b, &srv), 0);
    assert_int_equal(client_hello(&b, NULL), 1);
    big[8000] = '\0';
    assert_int_equal(client_send(&b, FERRY_MSG_LOGIN,
                                 json_pack("{s:s, s:s, s:s}", "user", big, "password",
                                           "correct horse", "device", "d")),
                     0);
    (void)short_error(&b);
    client_close(&b);
    free(big);
    free(bad);
}

/* ---- R-MSG ---- */

/*
 * R-MSG-2: every server-to-client message, sent by a client, is a fault:
 * Error 4 and a close before authentication, Error 1 and a close after.
 */
static void test_wrong_direction_r_msg_2(void **state)
{
    static const int32_t s2c[] = {
        FERRY_MSG_ACCEPT,       FERRY_MSG_REJECT,   FERRY_MSG_PONG,      FERRY_MSG_ERROR,
        FERRY_MSG_OK,           FERRY_MSG_SESSION,  FERRY_MSG_IDENTITY,  FERRY_MSG_DEVICES,
        FERRY_MSG_DIRPAGE,      FERRY_MSG_TRANSFER, FERRY_MSG_COMMITTED, FERRY_MSG_CHUNK_NEED,
        FERRY_MSG_CHUNK_STORED,
    };
    struct client cl;
    struct acct u;
    size_t i;

    (void)state;
    acct_signup(&srv, &u, "msg2");
    for (i = 0; i < sizeof(s2c) / sizeof(s2c[0]); i++) {
        assert_int_equal(client_open(&cl, &srv), 0);
        assert_int_equal(client_hello(&cl, NULL), 1);
        assert_int_equal(client_send(&cl, s2c[i], json_object()), 0);
        if (!expect_error_close(&cl, 4))
            fail_msg("message %d before authentication", (int)s2c[i]);
        client_close(&cl);

        acct_open(&srv, &u, &cl);
        assert_int_equal(client_send(&cl, s2c[i], json_object()), 0);
        if (!expect_error_close(&cl, 1))
            fail_msg("message %d after authentication", (int)s2c[i]);
        client_close(&cl);
    }
}

/* Sends a command and expects Error 1; then the connection is kept or closed. */
static void malformed(struct client *cl, int32_t type, const char *members, int kept)
{
    char json[9000], id[37];

    ferry_uuid_new(id);
    snprintf(json, sizeof(json), "{\"id\":\"%s\",\"version\":\"1.0\"%s%s}", id,
             members[0] != '\0' ? "," : "", members);
    send_text(cl, type, json);
    if (kept) {
        struct ferry_cmd m;
        recv_type(cl, FERRY_MSG_ERROR, &m);
        if (err_code(&m) != 1)
            fail_msg("%d %s: Error %d", (int)type, members, err_code(&m));
        assert_string_equal(str_member(&m, "ref"), id);
        ferry_cmd_cleanup(&m);
        assert_true(ping_ok(cl));
    } else if (!expect_error_close(cl, 1)) {
        fail_msg("%d %s: not Error 1 and a close", (int)type, members);
    }
}

/*
 * R-MSG-3: a missing member, a member of the wrong JSON type, a string over
 * its cap and an int out of range are Error 1 (kept or closed as R-MSG-5
 * says per message).
 */
static void test_malformed_members_r_msg_3(void **state)
{
    /* Messages whose malformed form keeps the connection (R-MSG-5). */
    static const struct {
        int32_t type;
        const char *members;
    } kept[] = {
        {FERRY_MSG_MKDIR, ""},                                       /* missing */
        {FERRY_MSG_MKDIR, "\"path\":7"},                             /* int for a string */
        {FERRY_MSG_MKDIR, "\"path\":[\"a\"]"},                       /* array for a string */
        {FERRY_MSG_DIRINFO, "\"path\":\"/\",\"recursive\":\"yes\""}, /* string for a bool */
        {FERRY_MSG_DIRINFO, "\"path\":\"/\",\"recursive\":1"},       /* int for a bool */
        {FERRY_MSG_MOVE, "\"from\":\"a\""},                          /* missing */
        {FERRY_MSG_MOVE, "\"from\":\"a\",\"to\":null"},              /* null for a string */
        {FERRY_MSG_REMOVE, "\"path\":true"},                         /* bool for a string */
    };
    /* Messages whose malformed form closes it. */
    static const char *const upload[] = {
        "\"path\":\"u\",\"size\":1",                                   /* tid missing */
        "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"u\"", /* size missing */
        "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"u\",\"size\":1.0", /* real */
        "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"u\",\"size\":-1",  /* range */
        "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"u\",\"size\":1,"
        "\"exec\":1", /* int for a bool */
        "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"u\",\"size\":1,"
        "\"mtime\":\"now\"",                          /* string for an int */
        "\"tid\":\"0011\",\"path\":\"u\",\"size\":1", /* a tid of 2 bytes */
    };
    static const char *const download[] = {
        "",                                 /* neither path nor file_id */
        "\"file_id\":0",                    /* range: 1.. */
        "\"file_id\":-5",                   /* range */
        "\"path\":\"x\",\"offset\":-1",     /* range */
        "\"path\":\"x\",\"list\":\"true\"", /* string for a bool */
        /* a string over 71 bytes */
        ("\"path\":\"x\",\"hash\":\"sha256:"
         "00000000000000000000000000000000000000000000000000000000000000000\""),
    };
    char *members = malloc(8800);
    struct client a;
    size_t i;

    (void)state;
    assert_non_null(members);
    open_user(&a, "msg3");
    for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        malformed(&a, kept[i].type, kept[i].members, 1);
    /* A path member over 4098 bytes (R-MSG-3), within a frame. */
    strcpy(members, "\"path\":\"");
    memset(members + 8, 'a', 4099);
    strcpy(members + 8 + 4099, "\"");
    malformed(&a, FERRY_MSG_MKDIR, members, 1);
    client_close(&a);
    for (i = 0; i < sizeof(upload) / sizeof(upload[0]); i++) {
        open_user(&a, "msg3u");
        malformed(&a, FERRY_MSG_UPLOAD, upload[i], 0);
        client_close(&a);
    }
    for (i = 0; i < sizeof(download) / sizeof(download[0]); i++) {
        open_user(&a, "msg3d");
        malformed(&a, FERRY_MSG_DOWNLOAD, download[i], 0);
        client_close(&a);
    }
    free(members);
}

/* ---- R-AUTH ---- */

/* A text column of the server's database for one row; the caller frees it. */
static char *db_text(const struct server *s, const char *sql, const char *arg)
{
    char path[300];
    sqlite3 *db;
    sqlite3_stmt *st;
    char *out = NULL;

    snprintf(path, sizeof(path), "%s/data/ferry.db", s->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, HARNESS_WAIT_MS);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* R-AUTH-3: the stored hash is libsodium's Argon2id string at the interactive limits. */
static void test_password_hash_r_auth_3(void **state)
{
    static const char prefix[] = "$argon2id$v=19$m=65536,t=2,p=1$";
    struct client a;
    char *h;

    (void)state;
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_signup(&a, "auth3", NULL, 0), 1);
    client_close(&a);
    h = db_text(&srv, "SELECT pwhash FROM users WHERE name = ?", "auth3");
    assert_non_null(h);
    assert_memory_equal(h, prefix, sizeof(prefix) - 1);
    assert_int_equal(crypto_pwhash_str_verify(h, "correct horse", strlen("correct horse")), 0);
    assert_int_equal(crypto_pwhash_str_needs_rehash(h, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                                    crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    free(h);
}

/* The Devices entry for device id: first_seen, last_seen and name; 0 when absent. */
static int device_seen(struct client *cl, const char *id, json_int_t *first, json_int_t *last,
                       char *name, size_t cap)
{
    struct ferry_cmd m;
    json_t *e;
    size_t i;
    int found = 0;

    assert_int_equal(client_send(cl, FERRY_MSG_DEVICE_LIST, json_object()), 0);
    recv_type(cl, FERRY_MSG_DEVICES, &m);
    json_array_foreach(json_object_get(m.body, "devices"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) != 0)
            continue;
        found = 1;
        *first = json_integer_value(json_object_get(e, "first_seen"));
        *last = json_integer_value(json_object_get(e, "last_seen"));
        snprintf(name, cap, "%s", json_string_value(json_object_get(e, "name")));
    }
    ferry_cmd_cleanup(&m);
    return found;
}

static void login_as(struct client *cl, const char *user, const char *dev)
{
    struct ferry_cmd m;

    assert_int_equal(client_hello(cl, NULL), 1);
    assert_int_equal(client_send(cl, FERRY_MSG_LOGIN,
                                 json_pack("{s:s, s:s, s:s}", "user", user, "password",
                                           "correct horse", "device", dev)),
                     0);
    recv_type(cl, FERRY_MSG_SESSION, &m);
    ferry_cmd_cleanup(&m);
}

/*
 * R-AUTH-8: Signup and Login record the connection's device ID and name with
 * the times first and last seen; a later Login of the same device keeps
 * first_seen and moves last_seen no earlier.
 */
static void test_devices_recorded_r_auth_8(void **state)
{
    json_int_t f1, l1, f2, l2, f3, l3;
    char name[80], dir[400];
    struct client a, b, again;
    struct ferry_cmd m;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/auth8-laptop", srv.dir);
    open_device(&a, &srv, dir);
    assert_int_equal(client_signup(&a, "auth8", NULL, 0), 1); /* device name "test" */
    assert_int_equal(client_send(&a, FERRY_MSG_WHOAMI, json_object()), 0);
    recv_type(&a, FERRY_MSG_IDENTITY, &m);
    assert_string_equal(str_member(&m, "device_id"), a.id.id);
    assert_string_equal(str_member(&m, "device_name"), "test");
    ferry_cmd_cleanup(&m);
    assert_true(device_seen(&a, a.id.id, &f1, &l1, name, sizeof(name)));
    assert_string_equal(name, "test");
    assert_true(f1 > 0);
    assert_true(l1 >= f1);

    assert_int_equal(client_open(&b, &srv), 0);
    login_as(&b, "auth8", "phone");
    assert_true(device_seen(&a, b.id.id, &f2, &l2, name, sizeof(name)));
    assert_string_equal(name, "phone");
    assert_true(f2 >= f1);
    assert_true(l2 >= f2);
    client_close(&b);

    /* The first device logs in again, under a new name. */
    open_device(&again, &srv, dir);
    assert_string_equal(again.id.id, a.id.id);
    login_as(&again, "auth8", "laptop");
    assert_true(device_seen(&again, a.id.id, &f3, &l3, name, sizeof(name)));
    assert_string_equal(name, "laptop");
    assert_true(f3 == f1);
    assert_true(l3 >= l1);
    assert_true(l3 >= f2);
    client_close(&again);
    client_close(&a);
}

/* ---- R-STORE ---- */

/* Queues a whole plain upload (Upload, data, TransferComplete) without sending it. */
static void queue_upload(struct client *cl, uint8_t tid[16], const char *path, const uint8_t *data,
                         size_t n, const char *cid)
{
    char hex[33];

    new_tid(tid, hex);
    assert_int_equal(ferry_client_send_cmd(cl->c, FERRY_MSG_UPLOAD,
                                           json_pack("{s:s, s:s, s:I}", "tid", hex, "path", path,
                                                     "size", (json_int_t)n)),
                     0);
    if (n > 0)
        assert_int_equal(ferry_client_send_data(cl->c, tid, 0, data, n), 0);
    assert_int_equal(ferry_client_send_cmd(cl->c, FERRY_MSG_TRANSFER_COMPLETE,
                                           json_pack("{s:s, s:s}", "tid", hex, "hash", cid)),
                     0);
}

static void cid_of(const uint8_t *data, size_t n, char cid[80])
{
    struct ferry_sha256 sha;

    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, n);
    ferry_sha256_final_cid(&sha, cid);
}

/* Whether a Committed's tids hold tid. */
static int names_tid(const struct ferry_cmd *m, const uint8_t tid[16])
{
    char hex[33];
    json_t *t;
    size_t i;

    ferry_hex_encode(tid, 16, hex);
    json_array_foreach(json_object_get(m->body, "tids"), i, t)
    {
        if (strcmp(json_string_value(t), hex) == 0)
            return 1;
    }
    return 0;
}

/*
 * R-STORE-2: uploads sent in one write share a batch; the one with a
 * directory in the way fails alone (Error 12), and the uploads before and
 * after it commit, in the same Committed as each other. Which writes share
 * a batch depends on socket reads, so rounds are repeated until one shows a
 * shared batch; every round checks the outcome of each upload.
 */
static void test_failing_op_alone_r_store_2(void **state)
{
    enum { ROUNDS = 20 };
    uint8_t data[64], t1[16], t2[16], t3[16];
    char cid[80], p1[32], p3[32], hex[33];
    struct ferry_cmd m;
    struct client a;
    int round, shared = 0;

    (void)state;
    memset(data, 's', sizeof(data));
    cid_of(data, sizeof(data), cid);
    open_user(&a, "store2");
    expect_reply(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "taken"), FERRY_MSG_OK);
    for (round = 0; round < ROUNDS && !shared; round++) {
        int c1 = 0, c3 = 0, failed = 0;
        snprintf(p1, sizeof(p1), "r%d/before", round);
        snprintf(p3, sizeof(p3), "r%d/after", round);
        queue_upload(&a, t1, p1, data, sizeof(data), cid);
        queue_upload(&a, t2, "taken", data, sizeof(data), cid);
        queue_upload(&a, t3, p3, data, sizeof(data), cid);
        flush(&a);
        for (int msgs = 0; !(c1 && c3 && failed); msgs++) {
            assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
            if (m.type == FERRY_MSG_COMMITTED) {
                c1 = names_tid(&m, t1) ? msgs + 1 : c1;
                c3 = names_tid(&m, t3) ? msgs + 1 : c3;
                assert_false(names_tid(&m, t2));
            } else {
                /* The upload with a directory in the way, and nothing else, fails. */
                assert_int_equal(err_code(&m), 12);
                ferry_hex_encode(t2, 16, hex);
                assert_string_equal(str_member(&m, "tid"), hex);
                assert_false(failed);
                failed = 1;
            }
            ferry_cmd_cleanup(&m);
        }
        shared = c1 == c3;
    }
    fprintf(stderr, "a failing upload shared its batch after %d round(s)\n", round);
    assert_true(shared);

    /*
     * 1500 empty uploads in one write: all commit, batch after batch in
     * queue order. (A connection sees only its own share of a batch, so the
     * cap of 1000 operations is checked but not reached here.)
     */
    {
        enum { N = 1500, PER_BATCH = 1000 };
        uint8_t(*tids)[16] = calloc(N, 16), t[16];
        size_t largest = 0, batches = 0;
        int committed = 0, i;

        assert_non_null(tids);
        cid_of(data, 0, cid);
        for (i = 0; i < N; i++) {
            snprintf(p1, sizeof(p1), "many/e%d", i);
            queue_upload(&a, t, p1, data, 0, cid);
            memcpy(tids[i], t, 16);
        }
        flush(&a);
        while (committed < N) {
            size_t n;
            recv_type(&a, FERRY_MSG_COMMITTED, &m);
            n = json_array_size(json_object_get(m.body, "tids"));
            assert_true(n <= PER_BATCH);
            /* Batches commit in queue order. */
            for (size_t k = 0; k < n; k++)
                assert_true(names_tid(&m, tids[committed + (int)k]));
            committed += (int)n;
            largest = n > largest ? n : largest;
            batches++;
            ferry_cmd_cleanup(&m);
        }
        fprintf(stderr, "%d uploads committed in %zu batches, the largest of %zu\n", N, batches,
                largest);
        free(tids);
    }
    client_close(&a);
}

/*
 * R-STORE-3 with --max-unacked 1: every accepted TransferComplete fills the
 * cap, so the server reads nothing more from that connection until the
 * upload has committed. A Ping queued right behind it is answered only
 * after its Committed; the upload in progress is not counted, so a Ping in
 * the middle of a large upload is answered before the upload ends, and
 * many uploads queued at once all commit.
 */
static void test_staged_cap_r_store_3(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--max-unacked", "1", NULL};
    enum { BIG = 1 << 20, SMALL = 64 << 10, MANY = 20 };
    uint8_t *data = malloc(BIG), tid[16], tids[MANY][16];
    char cid[80], hex[33], path[32];
    struct ferry_cmd m;
    struct server s;
    struct acct u;
    struct client a;
    int i, committed;

    (void)state;
    assert_non_null(data);
    ferry_random(data, BIG);
    server_start(&s, extra);
    acct_signup(&s, &u, "store3");
    acct_open(&s, &u, &a);

    /* Half a large upload, then a Ping: answered while the upload is open. */
    new_tid(tid, hex);
    open_plain(&a, tid, "big.bin", BIG, NULL);
    assert_int_equal(ferry_client_send_data(a.c, tid, 0, data, BIG / 2), 0);
    flush(&a);
    expect_quiet(&a);
    assert_int_equal(ferry_client_send_data(a.c, tid, BIG / 2, data + BIG / 2, BIG / 2), 0);
    cid_of(data, BIG, cid);
    /* Its TransferComplete and a Ping in one write: the Committed comes first. */
    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_TRANSFER_COMPLETE,
                                           json_pack("{s:s, s:s}", "tid", hex, "hash", cid)),
                     0);
    assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_PING, json_object()), 0);
    flush(&a);
    expect_committed(&a, tid);
    recv_type(&a, FERRY_MSG_PONG, &m);
    ferry_cmd_cleanup(&m);

    /* Many small uploads in one go: each waits for the one before, all commit. */
    cid_of(data, SMALL, cid);
    for (i = 0; i < MANY; i++) {
        snprintf(path, sizeof(path), "small%d", i);
        queue_upload(&a, tids[i], path, data, SMALL, cid);
        assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_PING, json_object()), 0);
    }
    flush(&a);
    for (i = 0, committed = 0; i < 2 * MANY; i++) {
        assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
        if (m.type == FERRY_MSG_COMMITTED) {
            /* One upload per batch: the next was not read before this one committed. */
            assert_int_equal(json_array_size(json_object_get(m.body, "tids")), 1);
            assert_true(names_tid(&m, tids[committed]));
            committed++;
        } else {
            /* Each Ping follows its upload's Committed. */
            assert_int_equal(m.type, FERRY_MSG_PONG);
            assert_int_equal(committed, i / 2 + 1);
        }
        ferry_cmd_cleanup(&m);
    }
    assert_int_equal(committed, MANY);
    client_close(&a);
    free(data);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_profile_r_tls_1),
        cmocka_unit_test(test_client_cert_required_r_tls_5),
        cmocka_unit_test(test_cert_is_a_key_r_tls_6),
        cmocka_unit_test(test_any_split_r_frame_4),
        cmocka_unit_test(test_reply_refs_r_cmd_5),
        cmocka_unit_test(test_fault_closes_one_r_err_1),
        cmocka_unit_test(test_error_message_short_r_err_2),
        cmocka_unit_test(test_wrong_direction_r_msg_2),
        cmocka_unit_test(test_malformed_members_r_msg_3),
        cmocka_unit_test(test_password_hash_r_auth_3),
        cmocka_unit_test(test_devices_recorded_r_auth_8),
        cmocka_unit_test(test_failing_op_alone_r_store_2),
        cmocka_unit_test(test_staged_cap_r_store_3),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    /* An optional second argument runs only the tests it matches (a glob). */
    if (argc > 2)
        cmocka_set_test_filter(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
