/*
 * ferry serve: listings (R-PAGE-1, R-PAGE-2, R-PAGE-3). A small listing is
 * answered on the loop thread at once; a longer one is built by a job on
 * the thread pool, in its own read snapshot, a slice of pages at a time as
 * the connection's output drains, so no listing stalls the loop or piles
 * up memory, however long it is and whether or not its pages are read.
 */
#include <stdio.h>
#include <string.h>

#include "ferry/path.h"
#include "server.h"

/* Room for the page's own members besides the listed path (R-PAGE-1). */
#define PAGE_OVERHEAD 256

/* One DirInfo being answered. */
struct listing {
    struct srv *srv;
    struct sess *s; /* referenced while the listing lives */
    int64_t uid;
    char ref[FERRY_UUID_STR_LEN + 1];
    char path[FERRY_PATH_MAX + 1]; /* normalised */
    int recursive;
    int self;
    uint64_t max_bytes; /* --max-listing: page bytes before Error 2 (R-PIPE-3) */
    /*
     * The snapshot: the loop thread's reader for a small listing, else a
     * connection of the job's own, whose read transaction stays open from
     * the first page to the last (R-PAGE-1).
     */
    struct ferry_meta *db;
    int own_db;
    int in_txn;
    struct ferry_meta_cursor *cur;
    int started;
    int done;    /* the last page, or the error, is made */
    int running; /* a step is on the thread pool */
    int rc;      /* the error that ends the listing after its pages */
    /*
     * The page being filled: its entries as JSON text, each encoded once
     * and joined by commas (R-PAGE-1: at most budget bytes, 50 entries).
     */
    int64_t dir_id;
    char *text;
    size_t bytes;
    size_t budget; /* entry bytes that fit in one frame with this page's header */
    size_t npage;  /* entries in the page */
    size_t nentries;
    uint64_t produced; /* page bytes made so far */
    /* Frames made by the last step, for the loop thread to queue. */
    uint8_t *out;
    size_t out_len;
    size_t out_cap;
    uv_work_t work;
    uv_timer_t timer;     /* a job's: keeps the connections waiting for a job alive */
    struct listing *next; /* srv->listings */
};

/* Appends text to an entry under construction; false once it would not fit. */
struct etext {
    char *p;
    size_t len, cap;
};

static void et_put(struct etext *t, const char *s, size_t n)
{
    if (t->len + n <= t->cap)
        memcpy(t->p + t->len, s, n);
    t->len += n; /* counted past cap: the caller sees it did not fit */
}

static void et_int(struct etext *t, int64_t v)
{
    char b[24];
    size_t i = sizeof(b);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        b[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        b[--i] = '-';
    et_put(t, b + i, sizeof(b) - i);
}

/* A JSON string (RFC 8259 section 7); names are valid UTF-8 (R-PATH-1). */
static void et_str(struct etext *t, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};

    et_put(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        et_put(t, run, (size_t)(s - run));
        run = s + 1;
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            et_put(t, esc, 2);
            esc[1] = 'u';
        } else {
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            et_put(t, esc, 6);
        }
    }
    et_put(t, run, (size_t)(s - run));
    et_put(t, "\"", 1);
}

#define ET_LIT(t, s) et_put((t), (s), sizeof(s) - 1)

/*
 * One entry of a page as compact JSON (the members of section 6.3), written
 * into p; returns its length, more than cap when it did not fit. Written
 * directly: building a JSON object per entry and encoding it cost more than
 * everything else a listing does.
 */
static size_t entry_text(char *p, size_t cap, const char *rel, const struct ferry_node *n)
{
    struct etext t = {.p = p, .cap = cap};

    ET_LIT(&t, "{\"id\":");
    et_int(&t, n->id);
    ET_LIT(&t, ",\"dir_id\":");
    et_int(&t, n->parent_id);
    ET_LIT(&t, ",\"name\":");
    et_str(&t, rel);
    if (n->is_dir)
        ET_LIT(&t, ",\"type\":\"dir\",\"size\":");
    else
        ET_LIT(&t, ",\"type\":\"file\",\"size\":");
    et_int(&t, n->size);
    ET_LIT(&t, ",\"mtime\":");
    et_int(&t, n->mtime);
    ET_LIT(&t, ",\"smtime\":");
    et_int(&t, n->smtime);
    if (n->exec)
        ET_LIT(&t, ",\"exec\":true");
    else
        ET_LIT(&t, ",\"exec\":false");
    if (!n->is_dir) {
        ET_LIT(&t, ",\"hash\":");
        et_str(&t, n->cid);
    }
    ET_LIT(&t, "}");
    return t.len;
}

/*
 * Encodes the page filled so far as a DirPage frame at the end of out: the
 * page's other members are encoded as an object, and its closing brace
 * becomes the entries array, already text.
 */
static int page_emit(struct listing *l, int last)
{
    const size_t frame_max = FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX;
    static const char tail[] = ",\"entries\":[";
    uint8_t *nv, *p;
    size_t cap, n;
    char id[FERRY_UUID_STR_LEN + 1];
    json_t *o;

    /* R-PIPE-3: a listing may not go on for ever; what was made is sent first. */
    if (!last && l->produced > l->max_bytes)
        return FERRY_ETOOBIG;
    if (l->out_cap - l->out_len < frame_max) {
        size_t ncap = l->out_cap ? l->out_cap * 2 : 4 * frame_max;

        while (ncap - l->out_len < frame_max)
            ncap *= 2;
        if ((nv = ferry_realloc(l->out, ncap)) == NULL)
            return -ENOMEM;
        l->out = nv;
        l->out_cap = ncap;
    }
    ferry_uuid_new(id);
    o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "id", id, "version", FERRY_MSG_VERSION, "ref",
                  l->ref, "path", l->path, "dir_id", (json_int_t)l->dir_id, "last", last);
    if (o == NULL)
        return -ENOMEM;
    p = l->out + l->out_len + FERRY_FRAME_HDR_LEN + FERRY_CMD_HDR_LEN;
    cap = FERRY_FRAME_PAYLOAD_MAX - FERRY_CMD_HDR_LEN;
    n = json_dumpb(o, (char *)p, cap, JSON_COMPACT);
    json_decref(o);
    /* The budget left room for the members and the array's own bytes. */
    if (n < 2 || n - 1 + sizeof(tail) - 1 + l->bytes + 2 > cap)
        return FERRY_EINTERNAL;
    n--; /* the closing brace */
    memcpy(p + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    if (l->bytes > 0)
        memcpy(p + n, l->text, l->bytes);
    n += l->bytes;
    p[n++] = ']';
    p[n++] = '}';
    ferry_put_be32(p - FERRY_CMD_HDR_LEN, (uint32_t)FERRY_MSG_DIRPAGE);
    n += FERRY_CMD_HDR_LEN;
    ferry_frame_header_encode(l->out + l->out_len, FERRY_FRAME_COMMAND, (uint32_t)n);
    n += FERRY_FRAME_HDR_LEN;
    l->out_len += n;
    l->produced += n;
    l->bytes = 0;
    l->npage = 0;
    return 0;
}

/* R-PAGE-1: at most 50 entries a page, and every page within one frame. */
static int page_add(struct listing *l, const char *rel, const struct ferry_node *n)
{
    size_t room, sz, comma;
    int rc;

    if (l->text == NULL && (l->text = ferry_malloc(FERRY_FRAME_PAYLOAD_MAX)) == NULL)
        return -ENOMEM;
    for (;;) {
        /* A comma before every entry but the first. */
        comma = l->npage > 0;
        room = l->budget - l->bytes;
        if (l->npage < SRV_PAGE_ENTRIES && room > comma) {
            sz = entry_text(l->text + l->bytes + comma, room - comma, rel, n);
            if (sz <= room - comma)
                break;
        }
        /* An entry alone always fits an empty page: names are at most 4 KiB. */
        if (l->npage == 0)
            return FERRY_EINTERNAL;
        if ((rc = page_emit(l, 0)) != 0)
            return rc;
    }
    if (comma)
        l->text[l->bytes] = ',';
    l->bytes += comma + sz;
    l->npage++;
    l->nentries++;
    return 0;
}

/* Takes the snapshot and resolves the path; a file or a stat lists as itself. */
static int listing_begin(struct listing *l)
{
    struct ferry_node n;
    json_t *hdr;
    size_t h;
    int rc;

    if ((rc = ferry_meta_read_begin(l->db)) != 0)
        return rc;
    l->in_txn = 1;
    if ((rc = ferry_meta_lookup(l->db, l->uid, l->path, &n)) != 0)
        return rc;
    /* The listed path is repeated in every page; escaping can double it. */
    hdr = json_pack("{s:s}", "path", l->path);
    h = hdr != NULL ? json_dumpb(hdr, NULL, 0, JSON_COMPACT) : 2 * strlen(l->path);
    json_decref(hdr);
    l->budget = FERRY_FRAME_PAYLOAD_MAX - FERRY_CMD_HDR_LEN - PAGE_OVERHEAD - h;
    l->dir_id = n.is_dir ? n.id : n.parent_id;
    if (!n.is_dir || l->self) {
        if ((rc = page_add(l, n.name, &n)) != 0)
            return rc;
        l->done = 1;
        return page_emit(l, 1);
    }
    return ferry_meta_cursor_new(l->uid, n.id, l->recursive, &l->cur);
}

static void end_snapshot(struct listing *l)
{
    if (l->in_txn) {
        ferry_meta_read_end(l->db);
        l->in_txn = 0;
    }
}

/*
 * Makes pages until out holds slice bytes, the listing ends or more than
 * max_entries entries have been made. Runs on a pool thread for a job (touching only l
 * and its own connection), or on the loop thread with the shared reader.
 */
static void listing_step(struct listing *l, size_t slice, size_t max_entries)
{
    struct ferry_node n;
    const char *rel;
    int rc = 0;

    if (!l->started) {
        l->started = 1;
        rc = listing_begin(l);
    }
    /* One entry past max_entries tells a listing of exactly max_entries from a longer one. */
    while (rc == 0 && !l->done && l->out_len < slice && l->nentries <= max_entries) {
        if ((rc = ferry_meta_cursor_next(l->db, l->cur, &rel, &n)) < 0)
            break;
        if (rc == 0) {
            l->done = 1;
            rc = page_emit(l, 1);
            break;
        }
        rc = page_add(l, rel, &n);
    }
    if (rc != 0) {
        l->rc = rc;
        l->done = 1;
    }
    if (l->done)
        end_snapshot(l);
}

static struct listing *listing_new(struct sess *s, const char *ref, const char *path, int recursive,
                                   int self)
{
    struct listing *l = ferry_calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->srv = s->srv;
    l->s = s;
    srv_sess_ref(s);
    l->uid = s->uid;
    snprintf(l->ref, sizeof(l->ref), "%s", ref != NULL ? ref : "");
    snprintf(l->path, sizeof(l->path), "%s", path);
    l->recursive = recursive;
    l->self = self;
    l->max_bytes = s->srv->cfg.max_listing;
    return l;
}

static void listing_free(struct listing *l)
{
    end_snapshot(l);
    if (l->own_db)
        ferry_meta_close(l->db);
    ferry_meta_cursor_free(l->cur);
    ferry_free(l->text);
    ferry_free(l->out);
    srv_sess_unref(l->s);
    ferry_free(l);
}

/* Queues the pages made so far, and the Error that ends a failed listing. */
static int deliver(struct listing *l)
{
    struct sess *s = l->s;
    int rc = 0;

    if (l->out_len > 0) {
        rc = ferry_conn_send_raw(s->conn, l->out, l->out_len);
        l->out_len = 0;
    }
    if (rc == 0 && l->done && l->rc != 0)
        rc = srv_send_error(s, l->ref, l->rc,
                            l->rc == FERRY_ETOOBIG ? "listing too large: list a subfolder" : NULL);
    return rc;
}

/* ---- Listing jobs and the connections waiting for one (R-PAGE-2) ---- */

static int user_listings(const struct srv *srv, int64_t uid)
{
    const struct listing *l;
    int n = 0;

    for (l = srv->listings; l != NULL; l = l->next)
        n += l->uid == uid;
    return n;
}

static int job_free_for(const struct srv *srv, int64_t uid)
{
    return srv->nlistings < srv->cfg.max_listings && user_listings(srv, uid) < SRV_LISTINGS_USER;
}

static void wait_add(struct sess *s)
{
    struct srv *srv = s->srv;

    if (s->lw_waiting)
        return;
    s->lw_waiting = 1;
    s->lw_next = NULL;
    if (srv->lw_tail != NULL)
        srv->lw_tail->lw_next = s;
    else
        srv->lw_head = s;
    srv->lw_tail = s;
}

/* Unlinks s, found after prev (NULL: s is the head). */
static void wait_unlink(struct srv *srv, struct sess *prev, struct sess *s)
{
    if (prev != NULL)
        prev->lw_next = s->lw_next;
    else
        srv->lw_head = s->lw_next;
    if (srv->lw_tail == s)
        srv->lw_tail = prev;
    s->lw_waiting = 0;
    s->lw_next = NULL;
}

/*
 * Resumes waiting connections, first come first served, while jobs are
 * free for their users; each one's DirInfo is read again at once and takes
 * its job then. Resuming can put a connection back at the tail, so the walk
 * starts over after each one, at most once per connection waiting now.
 */
static void wake_waiters(struct srv *srv)
{
    struct sess *s, *prev;
    int left = 0;

    for (s = srv->lw_head; s != NULL; s = s->lw_next)
        left++;
    while (left-- > 0 && srv->nlistings < srv->cfg.max_listings) {
        for (prev = NULL, s = srv->lw_head; s != NULL; prev = s, s = s->lw_next)
            if (user_listings(srv, s->uid) < SRV_LISTINGS_USER)
                break;
        if (s == NULL)
            return;
        wait_unlink(srv, prev, s);
        if (!s->closed)
            ferry_conn_resume(s->conn);
    }
}

static void step_work(uv_work_t *w);
static void step_done(uv_work_t *w, int status);

static void queue_step(struct listing *l)
{
    l->running = 1;
    if (uv_queue_work(l->srv->loop, &l->work, step_work, step_done) != 0) {
        l->rc = FERRY_EINTERNAL;
        l->done = 1;
        step_done(&l->work, 0);
    }
}

static void timer_closed(uv_handle_t *h)
{
    listing_free(h->data);
}

/*
 * R-PAGE-3: a connection waiting for a job is not read, so its peer's
 * heartbeats go unseen; while it waits it does not count as idle
 * (R-SESS-4). Waiters exist only while jobs run, so the jobs' timers see
 * to it.
 */
static void job_tick(uv_timer_t *t)
{
    struct listing *l = t->data;
    uint64_t now = ferry_now_ms();
    struct sess *w;

    for (w = l->srv->lw_head; w != NULL; w = w->lw_next)
        ferry_conn_touch(w->conn, now);
}

/*
 * The job is over: its place goes to the connections waiting first, then
 * its own connection is read again (a DirInfo pipelined behind the last
 * one would otherwise take the place every time, ahead of the waiters).
 */
static void listing_finish(struct listing *l)
{
    struct srv *srv = l->srv;
    struct sess *s = l->s;
    struct listing **pp;
    int own = s->listing == l;

    for (pp = &srv->listings; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            srv->nlistings--;
            break;
        }
    }
    if (own)
        s->listing = NULL;
    /* Freed once libuv is done with the timer. */
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, timer_closed);
    wake_waiters(srv);
    if (own && !s->closed) {
        ferry_conn_flush(s->conn);
        ferry_conn_resume(s->conn);
        /* Downloads queued before the DirInfo waited for its last page. */
        srv_sess_drained(s);
    }
}

static void step_work(uv_work_t *w)
{
    struct listing *l = w->data;
    char path[sizeof(l->srv->cfg.data) + 16];

    if (l->db == NULL) {
        /* Its own connection: the shared reader belongs to the loop thread. */
        snprintf(path, sizeof(path), "%s/ferry.db", l->srv->cfg.data);
        if (ferry_meta_open_reader(path, SRV_LISTING_CACHE_KIB, &l->db) != 0) {
            l->rc = FERRY_EINTERNAL;
            l->done = 1;
            return;
        }
        l->own_db = 1;
    }
    listing_step(l, SRV_LISTING_SLICE, SIZE_MAX);
}

static void step_done(uv_work_t *w, int status)
{
    struct listing *l = w->data;
    struct sess *s = l->s;

    l->running = 0;
    if (status != 0 && !l->done) {
        l->rc = FERRY_EINTERNAL;
        l->done = 1;
    }
    if (s->closed || s->listing != l) {
        listing_finish(l);
        return;
    }
    if (deliver(l) != 0) {
        ferry_conn_close(s->conn);
        return;
    }
    if (l->done) {
        listing_finish(l);
        return;
    }
    ferry_conn_flush(s->conn);
    srv_listing_pump(s);
}

void srv_listing_pump(struct sess *s)
{
    struct listing *l = s->listing;

    /* R-PAGE-2: the next slice only once the last one has mostly gone out. */
    if (l == NULL || l->running || l->done || s->closed ||
        ferry_conn_pending(s->conn) >= FERRY_NET_OUT_LOW)
        return;
    /*
     * R-PAGE-3: the peer reads its pages, so it is alive, though nothing
     * is read from it meanwhile; a peer that reads none of them is dropped
     * by the idle timeout (R-SESS-4).
     */
    ferry_conn_touch(s->conn, ferry_now_ms());
    queue_step(l);
}

void srv_listing_cleanup(struct sess *s)
{
    struct sess *p, *prev = NULL;
    struct listing *l = s->listing;

    if (s->lw_waiting) {
        for (p = s->srv->lw_head; p != NULL && p != s; prev = p, p = p->lw_next)
            ;
        if (p != NULL)
            wait_unlink(s->srv, prev, s);
    }
    /* A step on the pool finishes first; step_done then ends the listing. */
    if (l != NULL && !l->running) {
        s->listing = NULL;
        listing_finish(l);
    }
}

int srv_listing_dirinfo(struct sess *s, const struct ferry_cmd *cmd)
{
    struct srv *srv = s->srv;
    const char *path = NULL;
    char norm[FERRY_PATH_MAX + 1];
    int recursive = 0, self = 0, big, rc;
    struct listing *l;

    if ((rc = ferry_msg_str(cmd->body, "path", FERRY_PATH_MAX + 2, &path)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "recursive", 0, &recursive)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "stat", 0, &self)) != 0)
        return srv_send_error(s, cmd->id, FERRY_EPROTO, "DirInfo needs a path");
    if ((rc = ferry_path_normalize(path, strlen(path), norm, sizeof(norm))) != 0)
        return srv_send_error(s, cmd->id, rc, NULL);
    big = s->listing_big;
    s->listing_big = 0;
    if (!big) {
        /* R-PAGE-2: short enough for the loop thread, in its reader's snapshot? */
        if ((l = listing_new(s, cmd->id, norm, recursive, self)) == NULL)
            return -ENOMEM;
        l->db = srv->rdb;
        listing_step(l, SIZE_MAX, SRV_LIST_FAST_ENTRIES);
        rc = l->done ? deliver(l) : 1;
        listing_free(l);
        if (rc != 1)
            return rc;
    }
    /* A job, when one is free for this user; else wait, the DirInfo unread. */
    if (!job_free_for(srv, s->uid)) {
        s->listing_big = 1;
        wait_add(s);
        ferry_conn_pause(s->conn);
        return 1;
    }
    if ((l = listing_new(s, cmd->id, norm, recursive, self)) == NULL)
        return -ENOMEM;
    l->work.data = l;
    uv_timer_init(srv->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, job_tick, 1000, 1000);
    l->next = srv->listings;
    srv->listings = l;
    srv->nlistings++;
    s->listing = l;
    /* R-PAGE-1: the pages go out back to back; nothing else is read meanwhile. */
    ferry_conn_pause(s->conn);
    srv_listing_pump(s);
    return 0;
}
