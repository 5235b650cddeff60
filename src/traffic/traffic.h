/*
 * traffic.h - the front door: one interface, an instance handle, and a
 * table of operations per driver.
 *
 *   haproxy  stampd starts and owns an HAProxy (generated configuration,
 *            admin socket in the data dir, a detached process started
 *            through the runtime and adopted again after a restart of
 *            stampd), or drives an existing one through a configured admin
 *            socket.  One backend for the fleet, balanced on X-Tenant-Id
 *            with consistent hashing (tenant affinity); each serving stamp
 *            is a dynamic server named after the stamp.
 *   none     no front door: every call succeeds and changes nothing, a
 *            server is always absent, traffic_enabled is false.
 *
 * The controllers say what they want for a stamp (traffic_set: absent,
 * ready, drain, maint); the driver remembers what it applied and only talks
 * to HAProxy when that differs.  traffic_sync, run about once a second,
 * restarts an owned HAProxy that died, compares HAProxy's servers with what
 * was applied and forgets whatever differs, so the next reconcile of that
 * stamp applies it again: a restarted HAProxy (which has lost its dynamic
 * servers) converges to the store.  Which stamps should serve when the
 * fleet is unhealthy is not the driver's business (reconcile/fleet.h).
 *
 * Threading: any thread may call in.  The haproxy driver's mutex protects
 * only its in-memory table; no lock is held across the admin socket's I/O
 * (up to 3 s per command), so one slow command stalls only the callers
 * that wait on its answer.  Commands for one server are applied one at a
 * time (a second traffic_set or traffic_forget for the same name waits for
 * the first); commands for different servers run side by side.  A NULL
 * handle is the none driver.
 */
#ifndef STAMP_TRAFFIC_H
#define STAMP_TRAFFIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "util/err.h"

struct runtime;

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

typedef struct traffic traffic;

/* Picks the driver by cfg->traffic_driver.  haproxy: starts (or adopts)
 * HAProxy through rt, or checks the HAProxy at cfg->haproxy_socket; none:
 * nothing (rt may be NULL). */
int traffic_open(const stamp_config *cfg, const char *data_dir, struct runtime *rt, traffic **out,
                 serr *e);
/* Frees the handle; an owned HAProxy keeps running (like the workloads).
 * Accepts NULL.  After every other call. */
void traffic_close(traffic *t);

bool traffic_enabled(const traffic *t);
const char *traffic_driver(const traffic *t);

/* Make HAProxy's server for `name` (at addr "host:port") be in state st.
 * Idempotent; cheap when nothing changes. */
int traffic_set(traffic *t, const char *name, const char *addr, tr_state st, serr *e);
/* The stamp is gone for good: drop what was remembered of its server
 * (after traffic_set(..., TR_ABSENT)). */
void traffic_forget(traffic *t, const char *name);
/* What HAProxy reports for the stamp's server (none: absent). */
int traffic_stat(traffic *t, const char *name, tr_stat *out, serr *e);
/* End the sessions still on a server (a forced drain). */
int traffic_shutdown_sessions(traffic *t, const char *name, serr *e);

/* Supervision and convergence, about once a second from stampd's main loop.
 * Calls enqueue(name) for each stamp whose server must be applied again.
 * One sync at a time per instance (a second caller waits). */
typedef void (*traffic_enqueue_fn)(const char *name, void *arg);
void traffic_sync(traffic *t, traffic_enqueue_fn enqueue, void *arg);

/* A start of stampd that failed after traffic_open: stops the HAProxy that
 * traffic_open started (never one it adopted from an earlier stampd). */
void traffic_abort(traffic *t);

/* stampd --shutdown-all: stops the owned HAProxy, whoever started it. */
int traffic_stop_owned(traffic *t, serr *e);

/* {driver, owned, listen, adminSocket, backend, allUnhealthyPolicy,
 *  servers: [{name, status, ..., applied}]}; none: {driver}. */
int traffic_json(traffic *t, json_t **out, serr *e);

/* ---- for drivers ---- */

typedef struct traffic_ops {
    const char *name;
    bool enabled;
    int (*open)(const stamp_config *cfg, const char *data_dir, struct runtime *rt, void **impl,
                serr *e);
    void (*close)(void *impl);
    int (*set)(void *impl, const char *name, const char *addr, tr_state st, serr *e);
    void (*forget)(void *impl, const char *name);
    int (*stat)(void *impl, const char *name, tr_stat *out, serr *e);
    int (*shutdown_sessions)(void *impl, const char *name, serr *e);
    void (*sync)(void *impl, traffic_enqueue_fn enqueue, void *arg);
    void (*abort)(void *impl);
    int (*stop_owned)(void *impl, serr *e);
    /* Adds the driver's fields to o, the object traffic_json answers. */
    int (*json)(void *impl, json_t *o, serr *e);
} traffic_ops;

extern const traffic_ops traffic_haproxy_ops;

/* Parses a `show stat` reply (NUL-terminated CSV with its "# " header),
 * calling fn for each server row (not BACKEND/FRONTEND).  SE_IO when it
 * does not start with the header.  Exposed for the fuzz harness. */
int haproxy_stat_parse(const char *reply, void (*fn)(const char *name, const tr_stat *s, void *arg),
                       void *arg, serr *e);

#endif
