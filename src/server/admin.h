/* ferry serve user|device: administration of a data directory (R-ADMIN-4). */
#ifndef FERRY_SERVE_ADMIN_H
#define FERRY_SERVE_ADMIN_H

/* argv[0] is "user" or "device". Returns the exit code: 0, 1 failure, 2 usage. */
int srv_admin_main(int argc, char **argv);

#endif
