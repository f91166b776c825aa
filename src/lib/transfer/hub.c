/*
 * The transfer hub: one session, many jobs; frames that answer no call go
 * to the port that claimed their tid or ref (see ferry/hub.h).
 */
#include <errno.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/hub.h"

/* A claim: a tid or a ref, and the port that holds it. */
enum { KEY_FREE = 0, KEY_TID = 1, KEY_REF = 2, KEY_GONE = 3 };

struct route {
    uint8_t kind; /* KEY_* */
    uint8_t key[16];
    struct ferry_hub_port *port;
};

struct ferry_hub_port {
    struct ferry_hub *h;
    const struct ferry_hub_port_ops *ops;
    void *arg;
    struct ferry_hub_port *next;
    int dead;      /* closed while the hub was calling out: freed at the sweep */
    uint64_t mark; /* the Committed being delivered, so a port gets it once */
    uint64_t hold; /* oldest acknowledgement still to send (FERRY_HUB_NO_SEQ: none) */
    size_t claims;
};

struct ferry_hub {
    struct ferry_session *s;
    const struct ferry_hub_owner *owner;
    void *data;
    struct ferry_hub_port *ports;
    struct route *tab; /* open addressing, linear probing; a power of two */
    size_t cap, used;  /* used counts live and gone slots (the probe length) */
    size_t live;       /* claims held */
    int depth;         /* callbacks out to ports in progress */
    int up, minor, acks;
    /*
     * Requests of ports closed before their answers came: the answers are
     * dropped (and the request forgotten) when they come, instead of being
     * taken for a fault (R-FILE-3) on a session other jobs still use.
     */
    struct ferry_hub_port orphan;
    uint64_t tc_seq;    /* R-RECV-5 on this link */
    uint64_t downloads; /* Downloads in flight on this link */
    uint64_t uploads;   /* uploads open on this link, or places taken for them */
    int uploads_full;   /* the count reached its bound: wake the ports when it falls */
    uint64_t gen;
};

static uint64_t key_hash(uint8_t kind, const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ull ^ kind;
    size_t i;

    /* Tids and refs are random already; mixing them is enough. */
    for (i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return h;
}

static struct route *find(const struct ferry_hub *h, uint8_t kind, const uint8_t key[16])
{
    size_t i, mask;

    if (h->cap == 0)
        return NULL;
    mask = h->cap - 1;
    for (i = (size_t)key_hash(kind, key) & mask;; i = (i + 1) & mask) {
        struct route *r = &h->tab[i];
        if (r->kind == KEY_FREE)
            return NULL;
        if (r->kind == kind && memcmp(r->key, key, 16) == 0)
            return r;
    }
}

static int grow(struct ferry_hub *h)
{
    size_t cap = h->cap == 0 ? 64 : h->cap, i;
    struct route *old = h->tab, *tab;

    /* Half full at most, counting gone slots; doubling only when live ones need it. */
    while (h->live * 4 >= cap)
        cap *= 2;
    if ((tab = ferry_calloc(cap, sizeof(*tab))) == NULL)
        return -ENOMEM;
    for (i = 0; i < h->cap; i++) {
        struct route *r = &old[i];
        size_t j;
        if (r->kind != KEY_TID && r->kind != KEY_REF)
            continue;
        for (j = (size_t)key_hash(r->kind, r->key) & (cap - 1); tab[j].kind != KEY_FREE;
             j = (j + 1) & (cap - 1))
            ;
        tab[j] = *r;
    }
    ferry_free(old);
    h->tab = tab;
    h->cap = cap;
    h->used = h->live;
    return 0;
}

static int claim(struct ferry_hub_port *p, uint8_t kind, const uint8_t key[16])
{
    struct ferry_hub *h = p->h;
    struct route *r;
    size_t i;

    if ((r = find(h, kind, key)) != NULL)
        return r->port == p ? 0 : FERRY_EEXIST;
    if (h->live >= FERRY_HUB_ROUTES_MAX)
        return FERRY_ETOOBIG;
    if ((h->used + 1) * 2 > h->cap && grow(h) != 0)
        return -ENOMEM;
    for (i = (size_t)key_hash(kind, key) & (h->cap - 1);
         h->tab[i].kind == KEY_TID || h->tab[i].kind == KEY_REF; i = (i + 1) & (h->cap - 1))
        ;
    if (h->tab[i].kind == KEY_FREE)
        h->used++;
    h->tab[i].kind = kind;
    memcpy(h->tab[i].key, key, 16);
    h->tab[i].port = p;
    h->live++;
    p->claims++;
    return 0;
}

static void release(struct ferry_hub_port *p, uint8_t kind, const uint8_t key[16])
{
    struct route *r = find(p->h, kind, key);

    if (r == NULL || r->port != p)
        return;
    r->kind = KEY_GONE;
    r->port = NULL;
    p->h->live--;
    p->claims--;
}

static struct ferry_hub_port *owner_of(const struct ferry_hub *h, uint8_t kind,
                                       const uint8_t key[16])
{
    struct route *r = find(h, kind, key);

    return r != NULL && !r->port->dead ? r->port : NULL;
}

/* Frees the ports closed while callbacks were running. */
static void sweep(struct ferry_hub *h)
{
    struct ferry_hub_port **pp = &h->ports, *p;

    if (h->depth > 0)
        return;
    while ((p = *pp) != NULL) {
        if (p->dead) {
            *pp = p->next;
            ferry_free(p);
        } else {
            pp = &p->next;
        }
    }
}

/* The link is gone: nothing will answer the requests of closed ports now. */
static void forget_orphans(struct ferry_hub *h)
{
    size_t i;

    for (i = 0; i < h->cap && h->orphan.claims > 0; i++)
        if (h->tab[i].kind == KEY_REF && h->tab[i].port == &h->orphan)
            release(&h->orphan, KEY_REF, h->tab[i].key);
}

static int deliver(struct ferry_hub_port *p, const struct ferry_frame *f, const struct ferry_cmd *m)
{
    int rc;

    if (p->dead || p->ops == NULL || p->ops->on_frame == NULL)
        return 0;
    p->h->depth++;
    rc = p->ops->on_frame(p->arg, f, m);
    p->h->depth--;
    return rc;
}

/* Committed names tids of several jobs: each port hears it once. */
static int route_committed(struct ferry_hub *h, const struct ferry_frame *f,
                           const struct ferry_cmd *m)
{
    json_t *tids = json_object_get(m->body, "tids"), *t;
    uint8_t tid[FERRY_TID_LEN];
    size_t i;
    int rc = 0;

    h->gen++;
    json_array_foreach(tids, i, t)
    {
        struct ferry_hub_port *p;
        if (!json_is_string(t) || ferry_hex_decode(json_string_value(t), tid, sizeof(tid)) != 0)
            continue;
        if ((p = owner_of(h, KEY_TID, tid)) == NULL || p->mark == h->gen)
            continue;
        p->mark = h->gen;
        if ((rc = deliver(p, f, m)) != 0)
            break; /* a fault, or a pause: the frame comes again */
    }
    return rc;
}

/* An Error about the connection as a whole: every port hears it. */
static int route_all(struct ferry_hub *h, const struct ferry_frame *f, const struct ferry_cmd *m)
{
    struct ferry_hub_port *p;
    int rc = 0;

    for (p = h->ports; p != NULL && rc == 0; p = p->next)
        rc = deliver(p, f, m);
    return rc;
}

static int route_cmd(struct ferry_hub *h, const struct ferry_frame *f, const struct ferry_cmd *m,
                     int *routed)
{
    struct ferry_hub_port *p = NULL;
    uint8_t key[16];
    const char *tid, *ref;
    int rc = 0;

    *routed = 1;
    if (m->type == FERRY_MSG_TRANSFER_COMPLETE)
        h->tc_seq++; /* R-RECV-5: every one, whoever it is for (undone if taken again) */
    if (m->type == FERRY_MSG_COMMITTED)
        return route_committed(h, f, m);
    tid = json_string_value(json_object_get(m->body, "tid"));
    ref = json_string_value(json_object_get(m->body, "ref"));
    if (tid != NULL && ferry_hex_decode(tid, key, FERRY_TID_LEN) == 0)
        p = owner_of(h, KEY_TID, key);
    if (p == NULL && ref != NULL && ferry_uuid_to_bytes(ref, key) == 0) {
        p = owner_of(h, KEY_REF, key);
        if (p == &h->orphan) {
            release(p, KEY_REF, key); /* answered: forgotten, and dropped */
            return 0;
        }
    }
    if (p != NULL)
        rc = deliver(p, f, m);
    else if (m->type == FERRY_MSG_ERROR && tid == NULL && ref == NULL)
        rc = route_all(h, f, m);
    else
        *routed = 0;
    return rc;
}

static int hub_frame(struct ferry_session *s, const struct ferry_frame *f,
                     const struct ferry_cmd *m)
{
    struct ferry_hub *h = ferry_session_data(s);
    struct ferry_hub_port *p = NULL;
    int rc = 0, routed = 1;

    switch (f->type) {
    case FERRY_FRAME_DATA: {
        struct ferry_data d;
        if (ferry_data_decode(f->payload, f->payload_len, &d) != 0)
            return FERRY_EPROTO;
        p = owner_of(h, KEY_TID, d.tid);
        break;
    }
    case FERRY_FRAME_CHUNK: {
        struct ferry_chunk_frame c;
        if (ferry_chunk_frame_decode(f->payload, f->payload_len, &c) != 0)
            return FERRY_EPROTO;
        p = owner_of(h, KEY_TID, c.tid);
        break;
    }
    case FERRY_FRAME_FILE: {
        struct ferry_file_frame ff;
        /* R-FILE-1: only from a server that announced 1.4; R-FILE-2: well formed. */
        if (h->minor < 4 || ferry_file_frame_decode(f->payload, f->payload_len, &ff) != 0)
            return FERRY_EPROTO;
        h->tc_seq++; /* R-XFER-7: a file frame finishes a download as a TransferComplete does */
        /* R-FILE-3: it answers a Download some job sent, or it is a fault. */
        if ((p = owner_of(h, KEY_REF, ff.ref)) == NULL) {
            h->tc_seq--;
            return FERRY_EPROTO;
        }
        if (p == &h->orphan) {
            release(p, KEY_REF, ff.ref);
            p = NULL;
            goto out; /* dropped: its job is gone */
        }
        break;
    }
    case FERRY_FRAME_COMMAND:
        if (m == NULL)
            return FERRY_EPROTO; /* the session decodes every command it passes on */
        rc = route_cmd(h, f, m, &routed);
        goto out;
    default:
        return FERRY_EPROTO;
    }
    if (p != NULL)
        rc = deliver(p, f, NULL);
    else
        routed = 0;
out:
    if (rc >= 0 && !routed && h->owner != NULL && h->owner->on_frame != NULL)
        rc = h->owner->on_frame(h, f);
    /*
     * Paused to be delivered again: it will be counted then. A 1 without a
     * pause is taken as consumed by the session, so it stays counted.
     */
    if (rc == 1 && ferry_session_conn(s) != NULL && ferry_conn_is_paused(ferry_session_conn(s)) &&
        (f->type == FERRY_FRAME_FILE || (m != NULL && m->type == FERRY_MSG_TRANSFER_COMPLETE)))
        h->tc_seq--;
    sweep(h);
    return rc;
}

static int hub_identity(struct ferry_session *s, const char *server_id)
{
    struct ferry_hub *h = ferry_session_data(s);

    if (h->owner != NULL && h->owner->on_identity != NULL)
        return h->owner->on_identity(h, server_id);
    return FERRY_EPIN; /* nobody to ask: only a pin is trusted */
}

static void hub_up(struct ferry_session *s, const struct ferry_session_info *info)
{
    struct ferry_hub *h = ferry_session_data(s);
    struct ferry_hub_port *p;

    h->up = 1;
    h->minor = info->minor;
    /* R-XFER-3: a server that says nothing remembers 64; more than is used is not kept. */
    h->acks = info->acks > FERRY_HUB_ACKS_MAX ? FERRY_HUB_ACKS_MAX
              : info->acks > 64               ? info->acks
                                              : 64;
    /* A new link: a new memory of acknowledgements on the server (R-RECV-5). */
    h->tc_seq = 0;
    h->downloads = 0;
    h->uploads = 0;
    h->uploads_full = 0;
    if (h->owner != NULL && h->owner->on_up != NULL)
        h->owner->on_up(h, info);
    h->depth++;
    for (p = h->ports; p != NULL; p = p->next)
        if (!p->dead && p->ops->on_up != NULL)
            p->ops->on_up(p->arg, info);
    h->depth--;
    sweep(h);
}

static void hub_down(struct ferry_session *s, int rc, uint64_t wait_ms)
{
    struct ferry_hub *h = ferry_session_data(s);
    struct ferry_hub_port *p;

    h->up = 0;
    h->downloads = 0;
    h->uploads = 0;
    h->uploads_full = 0;
    forget_orphans(h);
    h->depth++;
    for (p = h->ports; p != NULL; p = p->next)
        if (!p->dead && p->ops->on_down != NULL)
            p->ops->on_down(p->arg, rc);
    h->depth--;
    sweep(h);
    if (h->owner != NULL && h->owner->on_down != NULL)
        h->owner->on_down(h, rc, wait_ms);
}

static void wake_ports(struct ferry_hub *h)
{
    struct ferry_hub_port *p;

    h->depth++;
    for (p = h->ports; p != NULL; p = p->next)
        if (!p->dead && p->ops->on_drain != NULL)
            p->ops->on_drain(p->arg);
    h->depth--;
    sweep(h);
}

static void hub_drain(struct ferry_session *s)
{
    wake_ports(ferry_session_data(s));
}

static void hub_closed(struct ferry_session *s, int rc)
{
    struct ferry_hub *h = ferry_session_data(s);
    struct ferry_hub_port *p;

    h->up = 0;
    h->downloads = 0;
    h->uploads = 0;
    h->uploads_full = 0;
    h->depth++;
    for (p = h->ports; p != NULL; p = p->next)
        if (!p->dead && p->ops->on_close != NULL)
            p->ops->on_close(p->arg, rc);
    h->depth--;
    sweep(h);
    if (h->owner != NULL && h->owner->on_close != NULL)
        h->owner->on_close(h, rc);
}

static const struct ferry_session_ops hub_ops = {
    .on_identity = hub_identity,
    .on_up = hub_up,
    .on_frame = hub_frame,
    .on_drain = hub_drain,
    .on_down = hub_down,
    .on_close = hub_closed,
};

int ferry_hub_open(const struct ferry_session_cfg *cfg, const struct ferry_hub_owner *owner,
                   void *owner_data, struct ferry_hub **out)
{
    struct ferry_hub *h;
    int rc;

    *out = NULL;
    if ((h = ferry_calloc(1, sizeof(*h))) == NULL)
        return -ENOMEM;
    h->owner = owner;
    h->data = owner_data;
    h->orphan.h = h;
    h->orphan.hold = FERRY_HUB_NO_SEQ;
    if ((rc = ferry_session_open(cfg, &hub_ops, h, &h->s)) != 0) {
        ferry_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

struct ferry_session *ferry_hub_session(const struct ferry_hub *h)
{
    return h->s;
}

void *ferry_hub_data(const struct ferry_hub *h)
{
    return h->data;
}

int ferry_hub_is_up(const struct ferry_hub *h)
{
    return h->up;
}

int ferry_hub_minor(const struct ferry_hub *h)
{
    return h->minor;
}

int ferry_hub_acks(const struct ferry_hub *h)
{
    return h->acks;
}

void ferry_hub_close(struct ferry_hub *h)
{
    ferry_session_close(h->s);
}

void ferry_hub_free(struct ferry_hub *h)
{
    struct ferry_hub_port *p;

    if (h == NULL)
        return;
    /* A session still open ends here; its calls end first (their owners free their args). */
    ferry_session_free(h->s);
    h->s = NULL;
    while ((p = h->ports) != NULL) {
        h->ports = p->next;
        ferry_free(p);
    }
    ferry_free(h->tab);
    ferry_free(h);
}

int ferry_hub_port_open(struct ferry_hub *h, const struct ferry_hub_port_ops *ops, void *arg,
                        struct ferry_hub_port **out)
{
    struct ferry_hub_port *p;

    *out = NULL;
    if ((p = ferry_calloc(1, sizeof(*p))) == NULL)
        return -ENOMEM;
    p->h = h;
    p->ops = ops;
    p->arg = arg;
    p->hold = FERRY_HUB_NO_SEQ;
    p->next = h->ports;
    h->ports = p;
    *out = p;
    return 0;
}

void ferry_hub_port_close(struct ferry_hub_port *p)
{
    struct ferry_hub *h;
    size_t i;

    if (p == NULL || p->dead)
        return;
    h = p->h;
    for (i = 0; i < h->cap && p->claims > 0; i++) {
        struct route *r = &h->tab[i];
        if (r->port != p || (r->kind != KEY_TID && r->kind != KEY_REF))
            continue;
        if (r->kind == KEY_REF) {
            /* Its answer may still come: dropped then, not taken for a fault. */
            r->port = &h->orphan;
            p->claims--;
            h->orphan.claims++;
        } else {
            release(p, r->kind, r->key);
        }
    }
    p->dead = 1;
    p->hold = FERRY_HUB_NO_SEQ;
    sweep(h);
}

struct ferry_hub *ferry_hub_port_hub(const struct ferry_hub_port *p)
{
    return p->h;
}

int ferry_hub_claim_tid(struct ferry_hub_port *p, const uint8_t tid[static FERRY_TID_LEN])
{
    return claim(p, KEY_TID, tid);
}

void ferry_hub_release_tid(struct ferry_hub_port *p, const uint8_t tid[static FERRY_TID_LEN])
{
    release(p, KEY_TID, tid);
}

int ferry_hub_claim_ref(struct ferry_hub_port *p, const uint8_t ref[static 16])
{
    return claim(p, KEY_REF, ref);
}

void ferry_hub_release_ref(struct ferry_hub_port *p, const uint8_t ref[static 16])
{
    release(p, KEY_REF, ref);
}

uint64_t ferry_hub_tc_seq(const struct ferry_hub *h)
{
    return h->tc_seq;
}

void ferry_hub_port_hold(struct ferry_hub_port *p, uint64_t seq)
{
    p->hold = seq;
}

int ferry_hub_may_download(const struct ferry_hub *h)
{
    const struct ferry_hub_port *p;
    uint64_t oldest = FERRY_HUB_NO_SEQ;

    if (!h->up || h->downloads >= FERRY_HUB_DOWNLOADS_MAX)
        return 0;
    for (p = h->ports; p != NULL; p = p->next)
        if (!p->dead && p->hold < oldest)
            oldest = p->hold;
    if (oldest == FERRY_HUB_NO_SEQ)
        return 1;
    /* The acknowledgement of `oldest` must still be remembered when it is sent (R-RECV-5). */
    return h->tc_seq + h->downloads + 1 < oldest + (uint64_t)h->acks;
}

void ferry_hub_downloads(struct ferry_hub *h, int delta)
{
    if (delta > 0)
        h->downloads += (uint64_t)delta;
    else if (h->downloads >= (uint64_t)-delta)
        h->downloads -= (uint64_t)-delta;
    else
        h->downloads = 0;
}

int ferry_hub_may_upload(const struct ferry_hub *h)
{
    return h->up && h->uploads < FERRY_HUB_UPLOADS_MAX;
}

void ferry_hub_uploads(struct ferry_hub *h, int delta)
{
    if (delta > 0) {
        h->uploads += (uint64_t)delta;
        if (h->uploads >= FERRY_HUB_UPLOADS_MAX)
            h->uploads_full = 1;
        return;
    }
    h->uploads = h->uploads >= (uint64_t)-delta ? h->uploads - (uint64_t)-delta : 0;
    /* A job that found no place waits for no event of its own: it hears this one. */
    if (h->uploads_full && h->uploads < FERRY_HUB_UPLOADS_MAX && h->up) {
        h->uploads_full = 0;
        wake_ports(h);
    }
}
