/*
 * cluster.h - several stampd replicas on one PostgreSQL store: which
 * replicas there are, which one leads the controllers, and since when.
 *
 * Every replica serves the API (reads and writes go to the database).  One
 * leads: it runs the reconcile workers' keys, the sweeps, the front door's
 * sync and the file_sd targets.  Leadership is a lease row in the
 * database (stamp_leader: holder, epoch, expires_at in the database's own
 * clock), not a session advisory lock: a leader stopped by SIGSTOP keeps
 * its TCP session (the kernel answers keepalives) and would hold such a
 * lock for ever, whereas a lease runs out.  Each election bumps the epoch;
 * the leader's threads write with that epoch as their fence
 * (store_fence_set), so a paused old leader that wakes up has every write
 * refused by the database (SE_FENCED), counts it, and steps down.
 *
 * Figures (as client-go's leader election): the lease (leader-lease,
 * 15 s) is what a dead leader holds the others off; the leader renews
 * every leader-retry (2 s) and steps down by itself when it could not
 * renew for leader-renew-deadline (10 s), before its lease runs out
 * elsewhere; a follower tries every leader-retry.
 *
 * Wake-ups: an API write on a follower asks the leader to reconcile the
 * resource through NOTIFY stamp_wake "Kind/name" (store_notify); every
 * replica LISTENs, the leader enqueues, and after every (re)connection of
 * its LISTEN session, and on becoming leader, it resyncs everything (a
 * NOTIFY is never replayed).
 *
 * Without cluster_start (SQLite, one stampd) this replica always leads
 * with epoch 0 (nothing is fenced).
 *
 * Threading: the state is atomics; cluster_* may be called from any
 * thread.  One election thread and one listen thread run per replica.
 */
#ifndef STAMP_CLUSTER_H
#define STAMP_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

struct ctl_ctx;

typedef struct cluster_config {
    const char *url;       /* the PostgreSQL URL of the store */
    const char *id;        /* this replica's id (unique) */
    const char *address;   /* its API address, for GET /v1/cluster */
    int64_t lease_ms, renew_deadline_ms, retry_ms;
} cluster_config;

/* The store is PostgreSQL: from now on this replica does not lead until
 * the election says so (call it right after opening the store, before
 * anything that could reconcile, write or run a job). */
void cluster_prepare(void);
/* Starts the election and listen threads; SE_INVAL when the figures are
 * inconsistent (renew deadline must be shorter than the lease, retry
 * shorter than the renew deadline). */
int cluster_start(const cluster_config *cfg, struct ctl_ctx *c, serr *e);
void cluster_stop(void);
void cluster_metrics_register(void);

/* Replicated: the store is PostgreSQL and cluster_start ran. */
bool cluster_enabled(void);
/* This replica leads (always true when not replicated). */
bool cluster_leading(void);
/* The epoch this replica leads with; 0 when it does not lead (or when not
 * replicated). */
int64_t cluster_epoch(void);
/* Bumped each time this replica becomes leader: a loop that must resync
 * when leadership starts compares it with the value it saw last. */
uint64_t cluster_terms(void);
/* A write of this replica with fence epoch was refused: if that is the
 * epoch it leads with, it is not the leader any more (work started under
 * an older term of its own says nothing about the current one). */
void cluster_fenced(int64_t epoch);
/* A LISTEN session (re)connected: whoever leads must resync. */
bool cluster_take_resync(void);

/* The leader as this replica saw it at its last election round: its id
 * and API address ("" when unknown or when this replica leads). */
void cluster_leader(char *id, size_t idlen, char *addr, size_t addrlen);

/* GET /v1/cluster's body: {backend, self, leader {holder, epoch, since,
 * renewedAt, expiresAt}, replicas [{id, address, startedAt, seenAt,
 * leader}]}.  Reads the database (call it from an API thread). */
int cluster_describe(struct ctl_ctx *c, json_t **out, serr *e);

#endif
