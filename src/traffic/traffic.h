/*
 * traffic.h - the front door: one interface, two drivers.
 *
 *   haproxy  stampd starts and owns an HAProxy (generated configuration,
 *            admin socket in the data dir, a detached process adopted again
 *            after a restart of stampd), or drives an existing one through a
 *            configured admin socket.  One backend for the fleet, balanced on
 *            X-Tenant-Id with consistent hashing (tenant affinity); each
 *            serving stamp is a dynamic server named after the stamp.
 *   none     no front door; every call succeeds and reports nothing.
 *
 * The controllers say what they want for a stamp (traffic_set: absent,
 * ready, drain, maint); the driver remembers what it applied and only talks
 * to HAProxy when that differs.  traffic_sync, run about once a second,
 * restarts an owned HAProxy that died, compares HAProxy's servers with what
 * was applied and forgets whatever differs, so the next reconcile of that
 * stamp applies it again: a restarted HAProxy (which has lost its dynamic
 * servers) converges to the store.
 *
 * Threading: one mutex around the applied-state table and the socket, so
 * any reconcile worker may call in.
 */
#ifndef STAMP_TRAFFIC_H
#define STAMP_TRAFFIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "util/err.h"

typedef enum tr_state { TR_ABSENT, TR_READY, TR_DRAIN, TR_MAINT } tr_state;

extern const char *const tr_state_names[4];

typedef struct tr_stat {
    bool present;
    char status[16];   /* HAProxy's: UP, no check, DRAIN, MAINT, ... */
    int64_t scur;      /* current sessions */
    int64_t qcur;      /* queued requests */
    int64_t stot;      /* sessions since start */
    int64_t rate;      /* sessions per second, last second */
    int64_t req_tot;   /* HTTP requests since start */
    int64_t hrsp_5xx;
    int64_t rtime_ms;  /* average response time, last 1024 requests */
} tr_stat;

/* Starts (or adopts) HAProxy for the haproxy driver; nothing for none. */
int traffic_init(const stamp_config *cfg, const char *data_dir, serr *e);
bool traffic_enabled(void);
const char *traffic_driver(void);

/* Make HAProxy's server for `name` (at addr "host:port") be in state st.
 * Idempotent; cheap when nothing changes. */
int traffic_set(const char *name, const char *addr, tr_state st, serr *e);
/* The stamp is gone for good: drop what was remembered of its server
 * (after traffic_set(..., TR_ABSENT)). */
void traffic_forget(const char *name);
/* What HAProxy reports for the stamp's server. */
int traffic_stat(const char *name, tr_stat *out, serr *e);
/* End the sessions still on a server (a forced drain). */
int traffic_shutdown_sessions(const char *name, serr *e);

/* Health as the controllers see it, for the all-unhealthy policy: what the
 * rotation of an unhealthy Active stamp should be, given the fleet.  Sets
 * *all_unhealthy when no Active stamp in the fleet is healthy. */
tr_state traffic_rotation(const char *name, bool healthy, bool *all_unhealthy);
/* The stamp is not Active any more: it no longer counts for the policy. */
void traffic_forget_health(const char *name);

/* Supervision and convergence, about once a second from stampd's main loop.
 * Calls enqueue(name) for each stamp whose server must be applied again. */
typedef void (*traffic_enqueue_fn)(const char *name, void *arg);
void traffic_sync(traffic_enqueue_fn enqueue, void *arg);

/* Leaves an owned HAProxy running (like the workloads). */
void traffic_shutdown(void);

/* A start of stampd that failed after traffic_init: stops the HAProxy that
 * traffic_init started (never one it adopted from an earlier stampd). */
void traffic_abort(void);

/* stampd --shutdown-all: stops the owned HAProxy, whoever started it. */
int traffic_stop_owned(serr *e);

/* {driver, listen, adminSocket, backend, servers: [{name, status, ...}]} */
int traffic_json(json_t **out, serr *e);

/* Raw runtime API command, for tests and `stampctl`-less debugging. */
int traffic_command(const char *cmd, char **reply, serr *e);

#endif
