/*
 * ferry serve: the chunk-list bytes held for each user and in all
 * (R-CHUNK-30), charged by uploads and downloads (transfer.c) and given
 * back when their lists go (upload_ops.c, transfer.c).
 */
#include <errno.h>

#include "server.h"

static struct srv_use *use_find(struct srv *srv, int64_t uid)
{
    int i;

    for (i = 0; i < srv->nuses; i++)
        if (srv->uses[i].uid == uid)
            return &srv->uses[i];
    return NULL;
}

/* The list bytes uid may still be charged: the smaller of its room and the server's. */
uint64_t srv_list_room(struct srv *srv, int64_t uid)
{
    struct srv_use *u = use_find(srv, uid);
    uint64_t held = u != NULL ? u->list_bytes : 0, user, all;

    user = srv->cfg.max_lists_user > held ? srv->cfg.max_lists_user - held : 0;
    all = srv->cfg.max_lists > srv->list_bytes ? srv->cfg.max_lists - srv->list_bytes : 0;
    return user < all ? user : all;
}

/*
 * Whether a list of want bytes could ever be held (else FERRY_ETOOBIG) and
 * fits the room left now on top of what this list already holds (else
 * FERRY_EBUSY: try again later).
 */
int srv_list_fits(struct srv *srv, int64_t uid, uint64_t held, uint64_t want)
{
    uint64_t cap =
        srv->cfg.max_lists_user < srv->cfg.max_lists ? srv->cfg.max_lists_user : srv->cfg.max_lists;

    if (want > cap)
        return FERRY_ETOOBIG;
    if (want > held && want - held > srv_list_room(srv, uid))
        return FERRY_EBUSY;
    return 0;
}

/* Charges n bytes to uid; the caller checked the room (srv_list_fits). */
int srv_list_charge(struct srv *srv, int64_t uid, uint64_t n)
{
    struct srv_use *u = use_find(srv, uid), *nv;

    if (u == NULL) {
        if (srv->nuses == srv->capuses) {
            int ncap = srv->capuses ? srv->capuses * 2 : 16;
            if ((nv = ferry_realloc(srv->uses, (size_t)ncap * sizeof(*nv))) == NULL)
                return -ENOMEM;
            srv->uses = nv;
            srv->capuses = ncap;
        }
        u = &srv->uses[srv->nuses++];
        *u = (struct srv_use){.uid = uid};
    }
    u->list_bytes += n;
    srv->list_bytes += n;
    return 0;
}

void srv_list_uncharge(struct srv *srv, int64_t uid, uint64_t n)
{
    struct srv_use *u = use_find(srv, uid);

    if (n == 0 || u == NULL)
        return;
    u->list_bytes -= n;
    srv->list_bytes -= n;
    /* A user holding nothing leaves the table, so it stays as small as its holders. */
    if (u->list_bytes == 0)
        *u = srv->uses[--srv->nuses];
}
