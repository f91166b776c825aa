/* ferry serve: what the server asks of its host (file modes, open files, systemd). */
#ifndef FERRY_SERVE_HOST_H
#define FERRY_SERVE_HOST_H

#include "server.h"

/*
 * R-ADMIN-2: open files a connection is budgeted (its socket and the one
 * file a transfer has open at a time), and files the server keeps for
 * itself (databases, identity, lock, libuv, the thread pool's transfers).
 */
#define SRV_FDS_PER_CONN 2
#define SRV_FDS_RESERVE  64

/*
 * R-ADMIN-1: warns when the data directory (open as datafd) lets group or
 * others in, and takes group and other bits off the server's own entries
 * in it, saying so. Never follows a symlink.
 */
void srv_data_modes(int datafd, const char *dir);

/*
 * R-ADMIN-2: raises the soft limit on open files to the hard limit and
 * checks --max-conns against it: a value given explicitly that does not fit
 * is an error (FERRY_EUSAGE, after one line on stderr); the default is
 * lowered with a warning.
 */
int srv_nofile_check(struct srv_config *cfg, int max_conns_given);

/*
 * R-ADMIN-3: sends state (such as "READY=1") to the service manager when
 * NOTIFY_SOCKET names one (a path, or @name for the abstract namespace).
 * Returns 0, also when there is no manager to tell.
 */
int srv_notify(const char *state);

#endif
