/* ferry serve: the tables behind login throttling, kept apart so tests can reach them. */
#include <string.h>

#include "server.h"

static struct ip_slot *ip_slot(struct srv *srv, const char *ip)
{
    struct ip_slot *v;
    int i;

    for (i = 0; i < srv->nips; i++)
        if (strcmp(srv->ips[i].ip, ip) == 0)
            return &srv->ips[i];
    /* Reuse an idle slot before growing: the table stays as small as the clients. */
    for (i = 0; i < srv->nips; i++) {
        if (srv->ips[i].unauth == 0 && srv->ips[i].tokens >= srv->cfg.login_rate) {
            snprintf(srv->ips[i].ip, sizeof(srv->ips[i].ip), "%s", ip);
            return &srv->ips[i];
        }
    }
    if ((v = ferry_realloc(srv->ips, (size_t)(srv->nips + 1) * sizeof(*v))) == NULL)
        return NULL;
    srv->ips = v;
    v = &srv->ips[srv->nips++];
    *v = (struct ip_slot){.tokens = srv->cfg.login_rate, .refill_ms = ferry_now_ms()};
    snprintf(v->ip, sizeof(v->ip), "%s", ip);
    return v;
}

int srv_ip_admit(struct srv *srv, const char *ip)
{
    struct ip_slot *slot = ip_slot(srv, ip);

    if (slot == NULL || slot->unauth >= srv->cfg.max_unauth_per_ip)
        return FERRY_EBUSY;
    slot->unauth++;
    return 0;
}

void srv_ip_release_unauth(struct srv *srv, const char *ip)
{
    struct ip_slot *slot = ip_slot(srv, ip);

    if (slot != NULL && slot->unauth > 0)
        slot->unauth--;
}

/* R-AUTH-4: a token bucket per source IP, refilled at login_rate per minute. */
int srv_ip_take_token(struct srv *srv, const char *ip, uint64_t *retry_ms)
{
    struct ip_slot *slot = ip_slot(srv, ip);
    uint64_t now = ferry_now_ms();
    double rate = srv->cfg.login_rate / 60000.0;

    if (slot == NULL)
        return FERRY_EBUSY;
    slot->tokens += (double)(now - slot->refill_ms) * rate;
    if (slot->tokens > srv->cfg.login_rate)
        slot->tokens = srv->cfg.login_rate;
    slot->refill_ms = now;
    if (slot->tokens < 1.0) {
        *retry_ms = (uint64_t)((1.0 - slot->tokens) / rate) + 1;
        return FERRY_EBUSY;
    }
    slot->tokens -= 1.0;
    return 0;
}

static struct fail_slot *fail_slot(struct srv *srv, const char *name, int create, uint64_t now)
{
    struct fail_slot *oldest = &srv->fails[0];
    int i;

    for (i = 0; i < SRV_FAIL_TABLE; i++) {
        if (srv->fails[i].name[0] != '\0' && strcmp(srv->fails[i].name, name) == 0)
            return &srv->fails[i];
        if (srv->fails[i].used_ms < oldest->used_ms)
            oldest = &srv->fails[i];
    }
    if (!create)
        return NULL;
    *oldest = (struct fail_slot){.used_ms = now};
    snprintf(oldest->name, sizeof(oldest->name), "%s", name);
    return oldest;
}

/* R-AUTH-4: after 5 failures, 1 s doubling to 15 min between attempts. */
int srv_name_check(struct srv *srv, const char *name, int known, uint64_t now, uint64_t *retry_ms)
{
    struct fail_slot *f = fail_slot(srv, name, 0, now);

    (void)known;
    if (f == NULL || f->next_ms <= now)
        return 0;
    *retry_ms = f->next_ms - now;
    return FERRY_EBUSY;
}

void srv_name_failed(struct srv *srv, const char *name, int known, uint64_t now)
{
    struct fail_slot *f = fail_slot(srv, name, 1, now);
    uint64_t delay;

    (void)known;
    f->failures++;
    f->used_ms = now;
    if (f->failures >= 5) {
        int shift = f->failures - 5 > 10 ? 10 : f->failures - 5;
        delay = 1000ull << shift;
        if (delay > 15ull * 60 * 1000)
            delay = 15ull * 60 * 1000;
        f->next_ms = f->used_ms + delay;
    }
}

void srv_name_succeeded(struct srv *srv, const char *name, int known, uint64_t now)
{
    struct fail_slot *f = fail_slot(srv, name, 0, now);

    (void)known;
    if (f != NULL)
        *f = (struct fail_slot){0};
}
