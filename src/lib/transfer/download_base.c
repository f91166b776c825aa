/*
 * The download job's small shared steps: reporting a failed item and
 * progress, and sending requests whose answers the hub routes back by id.
 * The other files of the job call these and nothing calls back.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "download_int.h"

void dl_fail_code(struct ferry_download *g, const char *label, int rc, const char *why)
{
    g->failed++;
    if (g->ops->on_item != NULL)
        g->ops->on_item(g->arg, label, rc, why);
}

/* failmsg with the text of a local error code appended ("why: No such file"). */
void dl_fail_rc(struct ferry_download *g, const char *label, const char *why, int rc)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s: %s", why,
             rc < 0 && rc > -4096 ? strerror(-rc) : ferry_strerror(rc));
    dl_fail_code(g, label, rc, buf);
}

void dl_fail(struct ferry_download *g, const char *label, const char *why)
{
    dl_fail_code(g, label, FERRY_EINTERNAL, why);
}

/* R-RECV-6: "not enough space" with the figures, for a file refused before it is written. */
void dl_fail_space(struct ferry_download *g, const char *label, uint64_t need, uint64_t avail)
{
    char buf[200];

    snprintf(buf, sizeof(buf),
             "not enough free space for it (%.1f MB to write, %.1f MB free); nothing was written",
             (double)need / 1e6, (double)avail / 1e6);
    dl_fail_code(g, label, -ENOSPC, buf);
}

void dl_progress(struct ferry_download *g)
{
    if (g->ops->on_progress != NULL)
        g->ops->on_progress(g->arg, &g->prog);
}

/* Sends a command on the live link; a link that is gone is the session's to report. */
int dl_send(struct ferry_download *g, int32_t type, json_t *body)
{
    int rc = ferry_session_send(ferry_hub_session(g->hub), type, body);

    return rc == -ENOTCONN ? 0 : rc;
}

/* A request with an id of ours, whose answers the hub routes here by that id. */
int dl_request(struct ferry_download *g, char id[static FERRY_UUID_STR_LEN + 1], int32_t type,
               json_t *body)
{
    uint8_t ref[16];
    int rc = FERRY_EINTERNAL;

    ferry_uuid_new(id);
    if (body == NULL)
        return -ENOMEM;
    json_object_set_new(body, "id", json_string(id));
    if (ferry_uuid_to_bytes(id, ref) != 0 || (rc = ferry_hub_claim_ref(g->port, ref)) != 0) {
        json_decref(body);
        return rc;
    }
    return dl_send(g, type, body);
}

void dl_unclaim(struct ferry_download *g, const char *id)
{
    uint8_t ref[16];

    if (id[0] != '\0' && ferry_uuid_to_bytes(id, ref) == 0)
        ferry_hub_release_ref(g->port, ref);
}

void dl_inflight(struct ferry_download *g, int delta)
{
    if (delta < 0 && g->inflight == 0)
        return;
    g->inflight = delta > 0 ? g->inflight + 1 : g->inflight - 1;
    ferry_hub_downloads(g->hub, delta);
}
