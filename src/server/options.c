/*
 * The options of ferry serve as one table, read by the command line, the
 * config file (R-CONF) and `ferry admin` (which takes --config too). A
 * file of data only, below every file that reads it.
 */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * Every option of ferry serve, in --help order. R-CONF-1: each entry is
 * both the flag --NAME and the config-file key NAME; a new option needs
 * only a line here (and a field in struct srv_config).
 */
const struct srv_opt srv_opts[] = {
    {"data", 'd', SRV_OPT_PATH, "DIR", "data directory (default $XDG_DATA_HOME/ferry)",
     SRV_CFG(data), 0, 0, 0},
    {"listen", 'l', SRV_OPT_HOSTPORT, "HOST:PORT",
     "address to listen on (default 127.0.0.1:7070; port 0 picks one)", SRV_CFG(host), 0, 0, 0},
    {"signup", 's', SRV_OPT_SIGNUP, "open|closed",
     "whether anyone may create an account (default closed)", SRV_CFG(signup_open), 0, 0, 0},
    {"auth-timeout", 0, SRV_OPT_SECS, "SECS",
     "close connections not logged in after this (default 10)", SRV_CFG(auth_timeout_ms), 1, 86400,
     1000},
    {"heartbeat", 0, SRV_OPT_SECS, "SECS", "send a heartbeat after this much silence (default 30)",
     SRV_CFG(heartbeat_ms), 1, 86400, 1000},
    {"idle-timeout", 0, SRV_OPT_SECS, "SECS", "drop a peer silent this long (default 90)",
     SRV_CFG(idle_ms), 1, 86400, 1000},
    {"max-conns", 0, SRV_OPT_COUNT, "N",
     "connections in all (default 1024; needs 2 open files each)", SRV_CFG(max_conns), 1, 1000000,
     1},
    {"max-unauth-per-ip", 0, SRV_OPT_COUNT, "N",
     "connections not yet logged in, per source IP (default 16)", SRV_CFG(max_unauth_per_ip), 1,
     1000000, 1},
    {"max-conns-per-ip", 0, SRV_OPT_COUNT, "N",
     "connections per source IP, logged in or not (default 128)", SRV_CFG(max_conns_per_ip), 1,
     1000000, 1},
    {"max-conns-per-user", 0, SRV_OPT_COUNT, "N", "logged-in connections per user (default 64)",
     SRV_CFG(max_conns_per_user), 1, 1000000, 1},
    {"reserve-conns", 0, SRV_OPT_COUNT, "N",
     "connections kept for addresses with none yet (default max-conns/16)", SRV_CFG(reserve_conns),
     0, 1000000, 1},
    {"login-rate", 0, SRV_OPT_COUNT, "N",
     "password attempts a minute, per source IP and per user (default 10)", SRV_CFG(login_rate), 1,
     1000000, 1},
    {"max-unacked", 0, SRV_OPT_SIZE, "BYTES",
     "upload bytes per connection awaiting commit (default 256M)", SRV_CFG(max_unacked), 1,
     UINT64_MAX, 1},
    {"max-file-size", 0, SRV_OPT_SIZE, "BYTES", "largest file accepted (default 1T)",
     SRV_CFG(max_file_size), 1, UINT64_MAX, 1},
    {"min-free", 0, SRV_OPT_SIZE, "BYTES", "free disk space uploads must leave (default 64M)",
     SRV_CFG(min_free), 0, UINT64_MAX, 1},
    {"hash-queue", 0, SRV_OPT_COUNT, "N",
     "password hashes waiting for the one hashing slot (default 64)", SRV_CFG(hash_queue), 1,
     100000, 1},
    {"max-open-uploads", 0, SRV_OPT_COUNT, "N",
     "uploads one connection may have open at once (default 64)", SRV_CFG(max_open_uploads), 1,
     100000, 1},
    {"max-queued-downloads", 0, SRV_OPT_COUNT, "N",
     "downloads one connection may have queued (default 64)", SRV_CFG(max_downloads), 1, 100000, 1},
    {"max-listing", 0, SRV_OPT_SIZE, "BYTES",
     "pages one listing may send before it is refused (default 32M)", SRV_CFG(max_listing),
     1u << 20, UINT64_MAX, 1},
    {"max-listings", 0, SRV_OPT_COUNT, "N",
     "long listings built at once, at most 4 for one user (default 32)", SRV_CFG(max_listings), 1,
     100000, 1},
    {"quota", 0, SRV_OPT_SIZE, "BYTES",
     "bytes each user may store, files and unfinished uploads' chunks (default 0: none)",
     SRV_CFG(quota), 0, UINT64_MAX, 1},
    {"partial-ttl", 0, SRV_OPT_SECS, "SECS",
     "keep chunks of unfinished uploads this long (default 86400)", SRV_CFG(partial_ttl_ns), 1,
     30ull * 86400, 1000000000},
    {"max-queued-writes", 0, SRV_OPT_COUNT, "N",
     "writes one connection may have awaiting commit (default 4096)", SRV_CFG(max_ops_conn), 1,
     1000000, 1},
    {"max-queued-writes-total", 0, SRV_OPT_COUNT, "N",
     "writes all connections may have awaiting commit (default 16384)", SRV_CFG(max_ops), 1,
     1000000, 1},
    {"max-unacked-total", 0, SRV_OPT_SIZE, "BYTES",
     "upload bytes all connections may have awaiting commit (default 1G)",
     SRV_CFG(max_unacked_total), 1, UINT64_MAX, 1},
    {"max-chunk-lists", 0, SRV_OPT_SIZE, "BYTES",
     "chunk lists held in memory for all users (default 256M)", SRV_CFG(max_lists), 1, UINT64_MAX,
     1},
    {"max-chunk-lists-per-user", 0, SRV_OPT_SIZE, "BYTES",
     "chunk lists held in memory for one user (default 64M)", SRV_CFG(max_lists_user), 1,
     UINT64_MAX, 1},
    {"verbose", 'v', SRV_OPT_FLAG, "", "log debug events", SRV_CFG(verbose), 0, 1, 1},
};
const size_t srv_nopts = sizeof(srv_opts) / sizeof(srv_opts[0]);
