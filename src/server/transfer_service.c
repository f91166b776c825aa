/*
 * ferry serve: the uploads and downloads service as the core sees it: the
 * messages and frames it handles and the connection events it follows
 * (transfer.c does the work).
 */
#include "server.h"

/* The frames of one read were handled: the Downloads among them start together. */
static void transfer_input_end(struct sess *s)
{
    if (s->dl_head != NULL)
        srv_download_pump(s);
}

/*
 * R-PIPE-2: a Download waits for the connection's earlier writes, so it
 * reads them; R-CHUNK-8: a TransferComplete waits until the chunks that
 * came before it are checked and queued.
 */
static const struct srv_handler transfer_handlers[] = {
    {FERRY_MSG_UPLOAD, 0, srv_upload_open},
    {FERRY_MSG_CHUNKED_UPLOAD, 0, srv_upload_open},
    {FERRY_MSG_TRANSFER_COMPLETE, SRV_H_CHECKED, srv_upload_complete},
    {FERRY_MSG_TRANSFER_CANCEL, 0, srv_transfer_cancel},
    {FERRY_MSG_DOWNLOAD, SRV_H_ORDERED, srv_download_queue},
};

static const struct srv_service transfers = {
    .name = "transfers",
    .handlers = transfer_handlers,
    .nhandlers = sizeof(transfer_handlers) / sizeof(transfer_handlers[0]),
    .data = srv_upload_data,
    .chunk = srv_chunk_data,
    .drain = srv_download_pump,
    .input_end = transfer_input_end,
    .closing = srv_transfer_cleanup,
};

int srv_transfer_init(struct srv *srv)
{
    return srv_service_add(srv, &transfers);
}
