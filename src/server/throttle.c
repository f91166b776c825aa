/*
 * ferry serve: the bounded tables behind fair shares. Source addresses
 * (connection counts, login bucket, hashing share), users with connections
 * (R-SESS-10, R-AUTH-12) and user names (backoff and bucket, R-AUTH-4,
 * R-AUTH-11, R-AUTH-13). Pure bookkeeping: the caller passes the time, so
 * the unit tests (tests/unit/test_throttle.c) drive every cap directly.
 */
#include <string.h>

#include "server.h"

/* Buckets of each hash: a power of two, at least the entries it should hold. */
static unsigned buckets_for(int entries)
{
    unsigned n = 64;

    while (n < (unsigned)entries && n < (1u << 16))
        n <<= 1;
    return n;
}

static int lazy_init(struct srv *srv)
{
    struct srv_throttle *t = &srv->thr;

    if (t->nbuckets != 0)
        return 0;
    /*
     * Every live connection may hold an address of its own; beyond those,
     * SRV_IP_TABLE addresses keep their login bucket between connections.
     */
    t->ip_cap = SRV_IP_TABLE + srv->cfg.max_conns + SRV_REFUSING_MAX;
    t->nbuckets = buckets_for(t->ip_cap);
    t->ips = ferry_calloc((size_t)t->ip_cap, sizeof(*t->ips));
    t->ip_hash = ferry_calloc(t->nbuckets, sizeof(*t->ip_hash));
    t->user_hash = ferry_calloc(t->nbuckets, sizeof(*t->user_hash));
    if (t->ips == NULL || t->ip_hash == NULL || t->user_hash == NULL) {
        srv_throttle_cleanup(srv);
        return -ENOMEM;
    }
    return 0;
}

void srv_throttle_cleanup(struct srv *srv)
{
    struct srv_throttle *t = &srv->thr;
    struct user_slot *u, *next;
    unsigned b;
    int i;

    for (i = 0; i < t->nips; i++)
        ferry_free(t->ips[i]);
    if (t->user_hash != NULL) {
        for (b = 0; b < t->nbuckets; b++)
            for (u = t->user_hash[b]; u != NULL; u = next) {
                next = u->hnext;
                ferry_free(u);
            }
    }
    ferry_free(t->ips);
    ferry_free(t->ip_hash);
    ferry_free(t->user_hash);
    t->ips = NULL;
    t->ip_hash = NULL;
    t->user_hash = NULL;
    t->nips = 0;
    t->nusers = 0;
    t->nbuckets = 0;
}

/* FNV-1a: addresses come from the kernel, not from the peer's bytes. */
static unsigned hash_str(const char *s, unsigned nbuckets)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h & (nbuckets - 1);
}

static unsigned hash_uid(int64_t uid, unsigned nbuckets)
{
    uint64_t h = (uint64_t)uid * 0x9e3779b97f4a7c15ull;

    return (unsigned)(h >> 40) & (nbuckets - 1);
}

/* R-AUTH-4: tokens after refilling at login_rate per minute up to login_rate. */
static double refill(const struct srv *srv, double tokens, uint64_t *refill_ms, uint64_t now)
{
    double rate = srv->cfg.login_rate / 60000.0;

    if (now > *refill_ms)
        tokens += (double)(now - *refill_ms) * rate;
    *refill_ms = now;
    return tokens > srv->cfg.login_rate ? srv->cfg.login_rate : tokens;
}

/* Takes one token, or says in *retry_ms when the next one comes. */
static int take_token(const struct srv *srv, double *tokens, uint64_t *refill_ms, uint64_t now,
                      uint64_t *retry_ms)
{
    double rate = srv->cfg.login_rate / 60000.0;

    *tokens = refill(srv, *tokens, refill_ms, now);
    if (*tokens < 1.0) {
        *retry_ms = (uint64_t)((1.0 - *tokens) / rate) + 1;
        return FERRY_EBUSY;
    }
    *tokens -= 1.0;
    return 0;
}

static int ip_referenced(const struct ip_slot *v)
{
    return v->conns > 0 || v->unauth > 0 || v->refusing > 0 || v->fk.jobs > 0;
}

static void ip_unlink(struct srv_throttle *t, struct ip_slot *v)
{
    struct ip_slot **pp = &t->ip_hash[hash_str(v->ip, t->nbuckets)];

    while (*pp != v)
        pp = &(*pp)->hnext;
    *pp = v->hnext;
}

static void ip_link(struct srv_throttle *t, struct ip_slot *v, const char *ip, uint64_t login_rate,
                    uint64_t now)
{
    unsigned b = hash_str(ip, t->nbuckets);
    int idx = v->idx;

    /* A fresh address has a full bucket and no hashing to its name (R-AUTH-12). */
    *v = (struct ip_slot){.tokens = (double)login_rate, .refill_ms = now, .idx = idx};
    snprintf(v->ip, sizeof(v->ip), "%s", ip);
    v->hnext = t->ip_hash[b];
    t->ip_hash[b] = v;
}

/*
 * The entry of address ip, created if need be. When the table is full, an
 * entry nothing refers to is reused, the one whose bucket is fullest, so
 * the least login history is forgotten. NULL when every entry is in use or
 * memory is short: the caller refuses the connection.
 */
struct ip_slot *srv_ip_get(struct srv *srv, const char *ip, uint64_t now)
{
    struct srv_throttle *t = &srv->thr;
    struct ip_slot *v, *best = NULL;
    double best_tokens = -1.0, tk;
    int i;

    if (lazy_init(srv) != 0)
        return NULL;
    for (v = t->ip_hash[hash_str(ip, t->nbuckets)]; v != NULL; v = v->hnext)
        if (strcmp(v->ip, ip) == 0)
            return v;
    if (t->nips < t->ip_cap) {
        if ((v = ferry_calloc(1, sizeof(*v))) == NULL)
            return NULL;
        v->idx = t->nips;
        t->ips[t->nips++] = v;
        ip_link(t, v, ip, (uint64_t)srv->cfg.login_rate, now);
        return v;
    }
    for (i = 0; i < t->nips; i++) {
        v = t->ips[i];
        if (ip_referenced(v))
            continue;
        tk = refill(srv, v->tokens, &v->refill_ms, now);
        v->tokens = tk;
        if (tk > best_tokens) {
            best = v;
            best_tokens = tk;
        }
    }
    if (best == NULL)
        return NULL;
    ip_unlink(t, best);
    ip_link(t, best, ip, (uint64_t)srv->cfg.login_rate, now);
    return best;
}

/* Forgets v once nothing refers to it and its bucket is full again. */
void srv_ip_put(struct srv *srv, struct ip_slot *v, uint64_t now)
{
    struct srv_throttle *t = &srv->thr;
    struct ip_slot *last;

    if (v == NULL || ip_referenced(v))
        return;
    v->tokens = refill(srv, v->tokens, &v->refill_ms, now);
    if (v->tokens < srv->cfg.login_rate)
        return; /* its login history still counts (R-AUTH-4) */
    ip_unlink(t, v);
    last = t->ips[--t->nips];
    t->ips[v->idx] = last;
    last->idx = v->idx;
    ferry_free(v);
}

/* R-AUTH-4, R-AUTH-10: one attempt from address v. */
int srv_ip_take_token(struct srv *srv, struct ip_slot *v, uint64_t now, uint64_t *retry_ms)
{
    return take_token(srv, &v->tokens, &v->refill_ms, now, retry_ms);
}

/* The entry of user uid, created if need be; NULL when memory is short. */
struct user_slot *srv_user_get(struct srv *srv, int64_t uid)
{
    struct srv_throttle *t = &srv->thr;
    struct user_slot *u;
    unsigned b;

    if (lazy_init(srv) != 0)
        return NULL;
    b = hash_uid(uid, t->nbuckets);
    for (u = t->user_hash[b]; u != NULL; u = u->hnext)
        if (u->uid == uid)
            return u;
    if ((u = ferry_calloc(1, sizeof(*u))) == NULL)
        return NULL;
    u->uid = uid;
    u->hnext = t->user_hash[b];
    t->user_hash[b] = u;
    t->nusers++;
    return u;
}

/* Forgets u once it has no connection and no password work. */
void srv_user_put(struct srv *srv, struct user_slot *u)
{
    struct srv_throttle *t = &srv->thr;
    struct user_slot **pp;

    if (u == NULL || u->conns > 0 || u->fk.jobs > 0)
        return;
    for (pp = &t->user_hash[hash_uid(u->uid, t->nbuckets)]; *pp != u; pp = &(*pp)->hnext)
        ;
    *pp = u->hnext;
    t->nusers--;
    ferry_free(u);
}

/*
 * Eviction order, best first: an idle entry (no failures, full bucket),
 * then one without an active backoff, least recently used first; an entry
 * in backoff only when all are, the one whose backoff ends first.
 */
static int evict_class(const struct srv *srv, struct name_slot *e, uint64_t now)
{
    if (e->next_ms > now)
        return 2;
    e->tokens = refill(srv, e->tokens, &e->refill_ms, now);
    return e->failures == 0 && e->tokens >= srv->cfg.login_rate ? 0 : 1;
}

/*
 * R-AUTH-13: the entry of a user name. Known names and unknown ones live in
 * separate halves of the table, so no flood of invented names can push a
 * real user's entry out; within a half the order above decides.
 */
static struct name_slot *name_find(struct srv *srv, const char *name, int known, int create,
                                   uint64_t now)
{
    struct name_slot *tab = known ? srv->thr.known : srv->thr.unknown;
    struct name_slot *e, *victim = NULL;
    int i, cls, vcls = 3;

    for (i = 0; i < SRV_NAME_TABLE; i++) {
        e = &tab[i];
        if (!e->used) {
            if (victim == NULL)
                victim = e; /* a free entry, if the name is not found */
        } else if (strcmp(e->name, name) == 0) {
            e->touched = ++srv->thr.touches;
            return e;
        }
    }
    if (!create)
        return NULL;
    if (victim == NULL) {
        /* No free entry: one entry of this half of the table makes room. */
        for (i = 0; i < SRV_NAME_TABLE; i++) {
            e = &tab[i];
            cls = evict_class(srv, e, now);
            if (victim == NULL || cls < vcls ||
                (cls == vcls && cls < 2 && e->touched < victim->touched) ||
                (cls == vcls && cls == 2 && e->next_ms < victim->next_ms)) {
                victim = e;
                vcls = cls;
            }
        }
    }
    *victim = (struct name_slot){
        .used = 1, .tokens = srv->cfg.login_rate, .refill_ms = now, .touched = ++srv->thr.touches};
    snprintf(victim->name, sizeof(victim->name), "%s", name);
    return victim;
}

/*
 * R-AUTH-4, R-AUTH-11: may name be tried now? Refused while it backs off or
 * when its bucket is empty (retry in *retry_ms); otherwise takes a token.
 */
int srv_name_check(struct srv *srv, const char *name, int known, uint64_t now, uint64_t *retry_ms)
{
    struct name_slot *e = name_find(srv, name, known, 1, now);

    if (e->next_ms > now) {
        *retry_ms = e->next_ms - now;
        return FERRY_EBUSY;
    }
    return take_token(srv, &e->tokens, &e->refill_ms, now, retry_ms);
}

/* R-AUTH-4: after 5 failures, 1 s doubling to 15 min between attempts. */
void srv_name_failed(struct srv *srv, const char *name, int known, uint64_t now)
{
    struct name_slot *e = name_find(srv, name, known, 1, now);
    uint64_t delay;
    int shift;

    e->failures++;
    if (e->failures >= 5) {
        shift = e->failures - 5 > 10 ? 10 : e->failures - 5;
        delay = 1000ull << shift;
        if (delay > 15ull * 60 * 1000)
            delay = 15ull * 60 * 1000;
        e->next_ms = now + delay;
    }
}

void srv_name_succeeded(struct srv *srv, const char *name, int known, uint64_t now)
{
    struct name_slot *e = name_find(srv, name, known, 0, now);

    /* The count resets; the bucket keeps its level (R-AUTH-11). */
    if (e != NULL) {
        e->failures = 0;
        e->next_ms = 0;
    }
}
