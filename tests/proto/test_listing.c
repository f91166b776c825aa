/*
 * Black-box tests of listings built in bounded slices off the loop thread
 * (R-PAGE-1, R-PAGE-2, R-PAGE-3): every entry arrives, in order, from one
 * snapshot and back to back; unread listings hold little memory and stall
 * nobody; a listing nobody reads gives its place up. Big trees are written
 * straight into the server's database (through SQLite's own locking), which
 * takes a second where 60000 Mkdirs would take minutes.
 */
#include "chunk_harness.h"

/* R-PAGE-2's listing jobs per user (SRV_LISTINGS_USER in src/server/server.h). */
#define SRV_LISTINGS_USER_TEST 4

/* Starts a server; a test that fails midway leaves it to harness_teardown. */
static void start(struct server *sv, const char *const *extra)
{
    server_start(sv, extra);
}

static void stop(struct server *sv)
{
    assert_int_equal(server_stop(sv), 0);
    server_cleanup(sv);
}

/* The name of the i-th folder of a big tree: long, so each entry is ~330 bytes. */
static void big_name(char *out, size_t cap, long i)
{
    snprintf(out, cap, "%08ld-%s", i,
             "a-folder-name-long-enough-that-a-listing-of-many-of-them-weighs-megabytes-"
             "a-folder-name-long-enough-that-a-listing-of-many-of-them-weighs-megabytes-"
             "and-then-some");
}

/*
 * Creates folder top of user with n folders in it, named by big_name: Mkdir
 * for top, then rows inserted in one transaction beside the running server.
 */
static void make_big(struct server *sv, struct client *cl, const char *user, const char *top,
                     long n)
{
    char path[600], name[256];
    struct ferry_cmd m;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t uid = 0, dir = 0;
    long i;

    assert_int_equal(client_send(cl, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", top)), 0);
    recv_type(cl, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    snprintf(path, sizeof(path), "%s/data/ferry.db", sv->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 20000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT n.user_id, n.id FROM nodes n JOIN users u ON"
                                        " u.id = n.user_id WHERE u.name = ?1 AND n.name = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, top, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    uid = sqlite3_column_int64(st, 0);
    dir = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO nodes(user_id, parent_id, name, is_dir,"
                                        " mtime, smtime) VALUES(?1, ?2, ?3, 1, 1, 1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (i = 0; i < n; i++) {
        big_name(name, sizeof(name), i);
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_int64(st, 2, dir);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Sends DirInfo without waiting; returns its id in ref. */
static void send_dirinfo(struct client *cl, const char *path, int recursive, char ref[37])
{
    assert_int_equal(client_send(cl, FERRY_MSG_DIRINFO,
                                 json_pack("{s:s, s:b}", "path", path, "recursive", recursive)),
                     0);
    memcpy(ref, cl->last_ref, 37);
}

/* A listing being read: what R-PAGE-1 lets a reader check as pages come. */
struct reading {
    const char *ref;
    const char *const *names; /* when not NULL, entry i must be names[i] */
    const char *watch;        /* a name whose presence is noted */
    int watched;
    long count;
    char prev[600];
    int last;
};

/*
 * Reads DirPages of r->ref, one (one_page) or to the last: at most 50
 * entries a page, nothing else between pages, names ascending.
 */
static void read_pages(struct client *cl, struct reading *r, int one_page)
{
    struct ferry_cmd m;
    size_t i;
    json_t *e;

    while (!r->last) {
        assert_int_equal(client_recv(cl, &m, 60000), 1);
        if (m.type != FERRY_MSG_DIRPAGE)
            fprintf(stderr, "expected a DirPage, got %d (code %d: %s)\n", m.type, err_code(&m),
                    str_member(&m, "message"));
        assert_int_equal(m.type, FERRY_MSG_DIRPAGE);
        assert_string_equal(str_member(&m, "ref"), r->ref);
        assert_true(json_array_size(json_object_get(m.body, "entries")) <= 50);
        json_array_foreach(json_object_get(m.body, "entries"), i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));

            assert_non_null(name);
            assert_true(strcmp(r->prev, name) < 0);
            snprintf(r->prev, sizeof(r->prev), "%s", name);
            if (r->names != NULL)
                assert_string_equal(name, r->names[r->count]);
            if (r->watch != NULL && strcmp(name, r->watch) == 0)
                r->watched = 1;
            r->count++;
        }
        r->last = json_is_true(json_object_get(m.body, "last"));
        ferry_cmd_cleanup(&m);
        if (one_page)
            break;
    }
}

/* Reads a whole listing; returns its entries. */
static long read_listing(struct client *cl, const char *ref, const char *const *names)
{
    struct reading r = {.ref = ref, .names = names};

    read_pages(cl, &r, 0);
    return r.count;
}

/* Sends one change on cl and expects its Ok. */
static void change_ok(struct client *cl, int32_t type, const char *path)
{
    struct ferry_cmd m;

    /* Remove takes a folder only with recursive (section 6.3); Mkdir ignores it. */
    assert_int_equal(client_send(cl, type, json_pack("{s:s, s:b}", "path", path, "recursive", 1)),
                     0);
    recv_type(cl, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
}

/*
 * R-PAGE-1, R-PAGE-2: a listing of 3000 entries, too long for the loop
 * thread, is built by a job: every entry arrives once, in name order, in
 * pages of at most 50; a Ping sent right behind the DirInfo is answered only
 * after the last page; a recursive listing walks the same entries below
 * their folder's. While it is read, changes committed by another
 * connection do not show (one snapshot): a folder created after the first
 * page is absent, the last one, removed meanwhile, is still listed.
 */
static void test_long_listing_whole_r_page_2(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    enum { N = 3000 };
    char **names = calloc(N, sizeof(*names)), ref[37], gone[300];
    struct reading r = {0};
    struct server sv;
    struct acct u;
    struct client a, b;
    struct ferry_cmd m;
    long i;

    (void)state;
    assert_non_null(names);
    for (i = 0; i < N; i++) {
        names[i] = malloc(256);
        assert_non_null(names[i]);
        big_name(names[i], 256, i);
    }
    start(&sv, extra);
    acct_signup(&sv, &u, "lister");
    acct_open(&sv, &u, &a);
    acct_open(&sv, &u, &b);
    make_big(&sv, &a, "lister", "big", N);
    /* Whole, in order, and nothing between the pages. */
    send_dirinfo(&a, "big", 0, ref);
    assert_int_equal(client_send(&a, FERRY_MSG_PING, json_object()), 0);
    assert_int_equal(read_listing(&a, ref, (const char *const *)names), N);
    recv_type(&a, FERRY_MSG_PONG, &m);
    ferry_cmd_cleanup(&m);
    /* Recursive from the root: "big", then its folders below it. */
    send_dirinfo(&a, "", 1, ref);
    assert_int_equal(read_listing(&a, ref, NULL), N + 1);
    /* One snapshot: changes committed after the first page do not show. */
    send_dirinfo(&a, "big", 0, ref);
    r.ref = ref;
    r.names = (const char *const *)names;
    read_pages(&a, &r, 1);
    assert_false(r.last);
    change_ok(&b, FERRY_MSG_MKDIR, "big/zzzz");
    snprintf(gone, sizeof(gone), "big/%s", names[N - 1]);
    change_ok(&b, FERRY_MSG_REMOVE, gone);
    r.watch = "zzzz";
    read_pages(&a, &r, 0);
    assert_int_equal(r.count, N);
    assert_false(r.watched);
    /* A new listing sees both changes. */
    send_dirinfo(&a, "big", 0, ref);
    assert_int_equal(read_listing(&a, ref, NULL), N);
    client_close(&b);
    client_close(&a);
    for (i = 0; i < N; i++)
        free(names[i]);
    free(names);
    stop(&sv);
}

/*
 * R-PAGE-2: a dozen listings of 20 MB each, sent and never read, hold a
 * few MiB of the server's memory, not their size (before, each was built
 * whole at once: the server grew by hundreds of MB and kept it after the
 * connections closed); a bystander's pings are all answered meanwhile
 * (their latency is logged, not judged), and the memory stays down once the
 * connections are gone.
 */
static void test_unread_listings_bounded_r_page_2(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--max-listing", "64M", NULL};
    enum { CONNS = 12, N = 60000, PINGS = 20 };
    struct client c[CONNS], by;
    struct server sv;
    struct acct u, ub;
    uint64_t t0, worst = 0;
    long base, during, after;
    char ref[37];
    int i;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "hoarder");
    acct_signup(&sv, &ub, "bystander");
    for (i = 0; i < CONNS; i++)
        acct_open(&sv, &u, &c[i]);
    make_big(&sv, &c[0], "hoarder", "big", N);
    acct_open(&sv, &ub, &by);
    assert_true(ping_ok(&by));
    base = proc_rss_kib(sv.pid);
    for (i = 0; i < CONNS; i++)
        send_dirinfo(&c[i], "big", 0, ref);
    for (i = 0; i < PINGS; i++) {
        t0 = ferry_now_ms();
        assert_true(ping_ok(&by));
        if (ferry_now_ms() - t0 > worst)
            worst = ferry_now_ms() - t0;
    }
    during = proc_rss_kib(sv.pid);
    for (i = 0; i < CONNS; i++)
        client_close(&c[i]);
    /* The closes are seen once the server answers the bystander after them. */
    assert_true(ping_ok(&by));
    after = proc_rss_kib(sv.pid);
    fprintf(stderr,
            "%d unread 20 MB listings: RSS %ld KiB, %ld KiB with them, %ld KiB after;"
            " slowest of %d bystander pings %llu ms\n",
            CONNS, base, during, after, PINGS, (unsigned long long)worst);
    assert_true(during - base < 64 * 1024);
    assert_true(after - base < 64 * 1024);
    client_close(&by);
    stop(&sv);
}

/*
 * R-PAGE-2, R-PAGE-3 with --max-listings 1 and --idle-timeout 3: A's long
 * listing, never read, holds the one job; B's long listing waits for it
 * (its connection counts as busy, not idle, meanwhile), while C's short
 * listing is answered at once on the loop thread. A reads nothing for the
 * idle timeout and is dropped; B's listing then arrives whole.
 */
static void test_listing_job_freed_r_page_3(void **state)
{
    static const char *const extra[] = {"--login-rate",
                                        "1000",
                                        "--max-listings",
                                        "1",
                                        "--idle-timeout",
                                        "3",
                                        "--heartbeat",
                                        "1",
                                        NULL};
    struct client a, b, c;
    struct server sv;
    struct acct ua, ub, uc;
    struct ferry_cmd m;
    char ref_a[37], ref_b[37], ref_c[37];
    int rc;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &ua, "stalls");
    acct_signup(&sv, &ub, "waits");
    acct_signup(&sv, &uc, "short");
    /* Trees first: a connection silent for 3 s is dropped (R-SESS-4). */
    acct_open(&sv, &ua, &a);
    make_big(&sv, &a, "stalls", "big", 60000);
    client_close(&a);
    acct_open(&sv, &ub, &b);
    make_big(&sv, &b, "waits", "mid", 1000);
    client_close(&b);
    acct_open(&sv, &ua, &a);
    acct_open(&sv, &ub, &b);
    acct_open(&sv, &uc, &c);
    change_ok(&c, FERRY_MSG_MKDIR, "one");
    send_dirinfo(&a, "big", 0, ref_a);
    /* A's job has begun once its first page is out. */
    assert_int_equal(client_recv(&a, &m, 60000), 1);
    assert_int_equal(m.type, FERRY_MSG_DIRPAGE);
    ferry_cmd_cleanup(&m);
    send_dirinfo(&b, "mid", 0, ref_b);
    send_dirinfo(&c, "", 0, ref_c);
    assert_int_equal(read_listing(&c, ref_c, NULL), 1);
    /* B waits past A's idle timeout, then gets all of its listing. */
    assert_int_equal(read_listing(&b, ref_b, NULL), 1000);
    assert_true(ping_ok(&b));
    /* A was dropped: what it did not read is lost with it. */
    while ((rc = client_recv(&a, &m, 20000)) == 1)
        ferry_cmd_cleanup(&m);
    assert_int_equal(rc, 0);
    client_close(&a);
    client_close(&b);
    client_close(&c);
    stop(&sv);
}

/*
 * R-PAGE-2: a listing of 256 entries (SRV_LIST_FAST_ENTRIES) never waits
 * for a job. One user's four connections hold the four jobs a user may
 * have with long listings nobody reads; the same user's fifth connection
 * still gets a folder of exactly 256 entries, and a stat, at once (with
 * the default 90 s idle timeout, a wait for a job would outlast the read).
 */
static void test_short_listing_never_waits_r_page_2(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    struct client c[SRV_LISTINGS_USER_TEST + 1];
    struct server sv;
    struct acct u;
    struct ferry_cmd m;
    char ref[37];
    int i;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "busy");
    for (i = 0; i <= SRV_LISTINGS_USER_TEST; i++)
        acct_open(&sv, &u, &c[i]);
    make_big(&sv, &c[0], "busy", "big", 60000);
    make_big(&sv, &c[0], "busy", "s256", 256);
    for (i = 0; i < SRV_LISTINGS_USER_TEST; i++) {
        send_dirinfo(&c[i], "big", 0, ref);
        assert_int_equal(client_recv(&c[i], &m, 60000), 1);
        assert_int_equal(m.type, FERRY_MSG_DIRPAGE);
        ferry_cmd_cleanup(&m);
    }
    send_dirinfo(&c[i], "s256", 0, ref);
    assert_int_equal(read_listing(&c[i], ref, NULL), 256);
    assert_int_equal(
        client_send(&c[i], FERRY_MSG_DIRINFO, json_pack("{s:s, s:b}", "path", "big", "stat", 1)),
        0);
    assert_int_equal(read_listing(&c[i], c[i].last_ref, NULL), 1);
    for (i = 0; i <= SRV_LISTINGS_USER_TEST; i++)
        client_close(&c[i]);
    stop(&sv);
}

/* What test_page_members_r_page_1 stored as file i. */
struct stored {
    char name[256];
    char cid[80];
    json_int_t size, mtime;
    int exec;
};

/*
 * Reads the pages of ref and checks every member of every entry: files
 * against what was stored (by name, below prefix), folders as folders;
 * returns the entries and how many pages ended early, short of 50 entries
 * and not last, because the next entry would not fit the frame.
 */
static long check_pages(struct client *cl, const char *ref, const char *prefix,
                        const struct stored *st, long n, long *early)
{
    struct ferry_cmd m;
    json_t *e, *v;
    size_t i, plen = strlen(prefix);
    long count = 0, k;
    int last = 0;

    *early = 0;
    while (!last) {
        assert_int_equal(client_recv(cl, &m, 60000), 1);
        assert_int_equal(m.type, FERRY_MSG_DIRPAGE);
        assert_string_equal(str_member(&m, "ref"), ref);
        assert_true(json_is_integer(json_object_get(m.body, "dir_id")));
        last = json_is_true(json_object_get(m.body, "last"));
        assert_true(json_array_size(json_object_get(m.body, "entries")) <= 50);
        if (!last && json_array_size(json_object_get(m.body, "entries")) < 50)
            (*early)++;
        json_array_foreach(json_object_get(m.body, "entries"), i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *type = json_string_value(json_object_get(e, "type"));

            assert_non_null(name);
            assert_non_null(type);
            assert_true(json_integer_value(json_object_get(e, "id")) > 0);
            assert_true(json_integer_value(json_object_get(e, "dir_id")) > 0);
            assert_true(json_is_integer(json_object_get(e, "smtime")));
            assert_true(json_is_integer(json_object_get(e, "mtime")));
            assert_true(json_is_integer(json_object_get(e, "size")));
            assert_true(json_is_boolean(json_object_get(e, "exec")));
            count++;
            if (strcmp(type, "dir") == 0) {
                assert_null(json_object_get(e, "hash"));
                assert_int_equal(json_object_size(e), 8);
                assert_int_equal(json_integer_value(json_object_get(e, "size")), 0);
                continue;
            }
            assert_string_equal(type, "file");
            assert_int_equal(json_object_size(e), 9);
            assert_int_equal(strncmp(name, prefix, plen), 0);
            for (k = 0; k < n && strcmp(st[k].name, name + plen) != 0; k++)
                ;
            assert_true(k < n);
            v = json_object_get(e, "hash");
            assert_string_equal(json_string_value(v), st[k].cid);
            assert_int_equal(json_integer_value(json_object_get(e, "size")), st[k].size);
            assert_int_equal(json_integer_value(json_object_get(e, "mtime")), st[k].mtime);
            assert_int_equal(json_is_true(json_object_get(e, "exec")), st[k].exec);
        }
        ferry_cmd_cleanup(&m);
    }
    return count;
}

/*
 * R-PAGE-1: each entry carries every member as stored, in pages of at most
 * 50 that also end early when the next entry would not fit one frame: 120
 * files with names full of quotes (two bytes each once escaped) and two-byte
 * letters, in a folder 12 levels deep whose path, all quotes, every page
 * repeats; and a recursive listing whose names carry that whole path.
 */
static void test_page_members_r_page_1(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    enum { N = 120, DEPTH = 12 };
    static struct stored st[N];
    char dir[DEPTH * 241 + 1], path[sizeof(dir) + 300], ref[37], top[300];
    uint8_t data[N + 1];
    struct server sv;
    struct acct u;
    struct client a;
    long i, j, early;
    size_t off = 0;

    (void)state;
    for (i = 0; i < DEPTH; i++) {
        if (i > 0)
            dir[off++] = '/';
        memset(dir + off, '"', 240);
        dir[off] = (char)('a' + i); /* each level its own name */
        off += 240;
    }
    dir[off] = '\0';
    assert_true(snprintf(top, sizeof(top), "%.240s", dir) < (int)sizeof(top));
    memset(data, 'x', sizeof(data));
    start(&sv, extra);
    acct_signup(&sv, &u, "pages");
    acct_open(&sv, &u, &a);
    for (i = 0; i < N; i++) {
        off = (size_t)snprintf(st[i].name, sizeof(st[i].name), "%03ld", i);
        for (j = 0; off + 4 <= 255; j++, off += 4)
            memcpy(st[i].name + off, "\"\"\xc3\xa9", 4); /* "" and e-acute */
        st[i].name[off] = '\0';
        st[i].size = i + 1;
        st[i].mtime = 1700000000000000000LL + i * 7919;
        st[i].exec = i % 3 == 0;
        assert_true(snprintf(path, sizeof(path), "%s/%s", dir, st[i].name) < (int)sizeof(path));
        upload_meta(&a, data, (size_t)st[i].size, path, st[i].mtime, st[i].exec, st[i].cid);
    }
    /* The folder: 120 files, pages cut by bytes before 50 entries. */
    send_dirinfo(&a, dir, 0, ref);
    assert_int_equal(check_pages(&a, ref, "", st, N, &early), N);
    assert_true(early >= 1);
    /* Recursive from the top: 11 folders, then the files under the whole path. */
    send_dirinfo(&a, top, 1, ref);
    assert_true(snprintf(path, sizeof(path), "%s/", dir + strlen(top) + 1) < (int)sizeof(path));
    assert_int_equal(check_pages(&a, ref, path, st, N, &early), N + DEPTH - 1);
    assert_true(early >= 1);
    client_close(&a);
    stop(&sv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_long_listing_whole_r_page_2, harness_teardown),
        cmocka_unit_test_teardown(test_unread_listings_bounded_r_page_2, harness_teardown),
        cmocka_unit_test_teardown(test_listing_job_freed_r_page_3, harness_teardown),
        cmocka_unit_test_teardown(test_short_listing_never_waits_r_page_2, harness_teardown),
        cmocka_unit_test_teardown(test_page_members_r_page_1, harness_teardown),
    };
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    (void)client_open; /* harness.h's; these tests open devices of their own (acct_open) */
    /* As in test_bounds.c: RSS should follow what the server holds, not ASan's quarantine. */
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", asan != NULL ? asan : "",
             asan != NULL && asan[0] != '\0' ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0)
        return 2;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
