/*
 * cluster.c - leader election, replica heartbeats and LISTEN wake-ups over
 * PostgreSQL (cluster.h says what and why).
 *
 * Two threads, each with its own connection (never the store's pool: an
 * election must not wait behind the API's queries):
 *   election  every leader-retry: heartbeat in stamp_replicas; a follower
 *             tries to take an expired lease (the epoch bumps); the leader
 *             renews its own (holder and epoch must match) and steps down
 *             when the renewal is refused, or has failed for longer than
 *             leader-renew-deadline, or a write of its was fenced;
 *   listen    LISTEN stamp_wake; a notification "Kind/name" is enqueued
 *             when this replica leads; every (re)connection asks for a
 *             resync.
 * The database's clock decides expiry (now()), so the replicas' clocks do
 * not matter.
 */
#include "cluster/cluster.h"

#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/ctl.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/util.h"
#include "util/version.h"

#define M_LEADER "stamp_leader"
#define M_EPOCH "stamp_leader_epoch"
#define M_CHANGES "stamp_leader_changes_total"

static struct {
    atomic_bool enabled, leading, resync, fenced, stop;
    _Atomic int64_t epoch;
    atomic_uint_fast64_t terms;
    char url[1024], id[128], address[256], options[128];
    _Atomic int64_t renewed_mono; /* the last renewal this replica saw succeed */
    int64_t lease_ms, renew_deadline_ms, retry_ms;
    pthread_t elect, listen;
    bool threads;
    ctl_ctx *c;
    pthread_mutex_t mu;      /* the leader's name */
    pthread_mutex_t desc_mu; /* the describe connection (never held by the election) */
    PGconn *desc;
    char leader_id[128], leader_addr[256];
} C = {.mu = PTHREAD_MUTEX_INITIALIZER, .desc_mu = PTHREAD_MUTEX_INITIALIZER};

void cluster_leader(char *id, size_t idlen, char *addr, size_t addrlen) {
    pthread_mutex_lock(&C.mu);
    str_copy(id, idlen, C.leader_id);
    str_copy(addr, addrlen, C.leader_addr);
    pthread_mutex_unlock(&C.mu);
}

bool cluster_enabled(void) { return atomic_load(&C.enabled); }
/* A leader that has not renewed for the renew deadline does not act any
 * more, even before its election thread says so: a process woken from
 * SIGSTOP (the monotonic clock ran on) stops at once. */
static bool fresh(void) { return mono_ms() - atomic_load(&C.renewed_mono) <= C.renew_deadline_ms; }
bool cluster_leading(void) { return !atomic_load(&C.enabled) || (atomic_load(&C.leading) && fresh()); }
int64_t cluster_epoch(void) {
    if (!atomic_load(&C.enabled) || !atomic_load(&C.leading)) return 0;
    int64_t ep = atomic_load(&C.epoch);
    return fresh() ? ep : 0;
}
uint64_t cluster_terms(void) { return atomic_load(&C.terms); }
bool cluster_take_resync(void) { return atomic_exchange(&C.resync, false); }

void cluster_fenced(int64_t epoch) {
    if (atomic_load(&C.enabled) && epoch != 0 && epoch == atomic_load(&C.epoch)) atomic_store(&C.fenced, true);
}

void cluster_prepare(void) {
    atomic_store(&C.leading, false);
    atomic_store(&C.enabled, true);
}

void cluster_metrics_register(void) {
    metrics_register(M_LEADER, MT_GAUGE, "1 while this replica leads the controllers");
    metrics_register(M_EPOCH, MT_GAUGE, "The leader epoch this replica leads with (0: it follows)");
    metrics_register(M_CHANGES, MT_COUNTER, "Times this replica became or stopped being the leader, by what");
}

/* A connection of its own, with keepalives and tcp_user_timeout so that a
 * dead peer ends the session in seconds, not at the kernel's hours. */
static PGconn *connect_db(void) {
    /* An election never waits long on a lock or a statement: it tries
     * again next round. */
    const char *const keys[] = {"dbname", "keepalives", "keepalives_idle", "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "connect_timeout",
                                "application_name", "options", NULL};
    const char *const vals[] = {C.url, "1", "5", "2", "3", "10000", "5", "stampd-cluster",
                                C.options, NULL};
    PGconn *pc = PQconnectdbParams(keys, vals, 1);
    if (pc && PQstatus(pc) == CONNECTION_OK) return pc;
    if (pc) {
        char m[200];
        utf8_sanitize(PQerrorMessage(pc), strlen(PQerrorMessage(pc)), m, sizeof(m));
        log_debug("cluster: cannot connect to the database: %s", m);
        PQfinish(pc);
    }
    return NULL;
}

/* Runs a statement; returns its result when it succeeded (free it), NULL
 * when it failed (*broken: the connection is gone). */
static PGresult *run(PGconn *pc, const char *sql, int n, const char *const *params, bool *broken) {
    PGresult *r = PQexecParams(pc, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    char m[200];
    const char *why = PQerrorMessage(pc);
    utf8_sanitize(why, strlen(why), m, sizeof(m));
    log_warnx("cluster: %s", m);
    PQclear(r);
    *broken = PQstatus(pc) != CONNECTION_OK;
    return NULL;
}

static void became_leader(int64_t epoch) {
    atomic_store(&C.epoch, epoch);
    atomic_store(&C.fenced, false);
    atomic_store(&C.leading, true);
    atomic_fetch_add(&C.terms, 1);
    metrics_set(M_LEADER, "", 1);
    metrics_set(M_EPOCH, "", (double)epoch);
    metrics_inc(M_CHANGES, "change=\"elected\"", 1);
    log_info("cluster: replica %s leads the controllers, epoch %lld", C.id, (long long)epoch);
}

static void step_down(const char *why) {
    if (!atomic_exchange(&C.leading, false)) return;
    int64_t epoch = atomic_exchange(&C.epoch, 0);
    metrics_set(M_LEADER, "", 0);
    metrics_set(M_EPOCH, "", 0);
    char labels[64];
    snprintf(labels, sizeof(labels), "change=\"%s\"", why);
    metrics_inc(M_CHANGES, labels, 1);
    log_warnx("cluster: replica %s steps down (epoch %lld): %s", C.id, (long long)epoch, why);
}

static void nap(int64_t ms) {
    int64_t until = mono_ms() + ms;
    while (!atomic_load(&C.stop) && mono_ms() < until) sleep_ms(20);
}

/* Long: one round of the election (heartbeat, then take or renew), with
 * what each answer means for this replica. */
static void round_once(PGconn *pc, int64_t *last_renew, bool *broken) {
    char lease[32], started[32], epoch[32];
    snprintf(lease, sizeof(lease), "%lld", (long long)C.lease_ms);
    static int64_t started_ms;
    if (started_ms == 0) started_ms = now_ms();
    snprintf(started, sizeof(started), "%lld", (long long)started_ms);
    const char *hb[] = {C.id, C.address, started, STAMP_VERSION};
    PGresult *r = run(pc,
                      "INSERT INTO stamp_replicas (id, address, started_at, seen_at, version) "
                      "VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), now(), $4) "
                      "ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, seen_at = now()",
                      4, hb, broken);
    PQclear(r);
    if (*broken) return;
    if (atomic_load(&C.fenced)) step_down("fenced");
    r = run(pc,
            "SELECT l.holder, coalesce(r.address, '') FROM stamp_leader l "
            "LEFT JOIN stamp_replicas r ON r.id = l.holder WHERE l.id = 1 AND l.expires_at > now()",
            0, NULL, broken);
    pthread_mutex_lock(&C.mu);
    bool known = r && PQntuples(r) == 1;
    str_copy(C.leader_id, sizeof(C.leader_id), known ? PQgetvalue(r, 0, 0) : "");
    str_copy(C.leader_addr, sizeof(C.leader_addr), known ? PQgetvalue(r, 0, 1) : "");
    pthread_mutex_unlock(&C.mu);
    PQclear(r);
    if (*broken) return;
    if (atomic_load(&C.leading)) {
        snprintf(epoch, sizeof(epoch), "%lld", (long long)atomic_load(&C.epoch));
        const char *p[] = {C.id, epoch, lease};
        r = run(pc,
                "UPDATE stamp_leader SET renewed_at = now(), "
                "expires_at = now() + $3::bigint * interval '1 millisecond' "
                "WHERE id = 1 AND holder = $1 AND epoch = $2::bigint RETURNING epoch",
                3, p, broken);
        if (r && PQntuples(r) == 1) {
            *last_renew = mono_ms();
            atomic_store(&C.renewed_mono, *last_renew);
            /* Replicas unseen for five leases are gone (a kill -9 leaves
             * its row; a restart comes back under a new id). */
            char gone[32];
            snprintf(gone, sizeof(gone), "%lld", (long long)(5 * C.lease_ms));
            const char *g[] = {gone};
            PQclear(run(pc, "DELETE FROM stamp_replicas WHERE seen_at < now() - $1::bigint * interval '1 millisecond'",
                        1, g, broken));
        } else if (r) step_down("lease-lost");
        else if (mono_ms() - *last_renew > C.renew_deadline_ms) step_down("renew-deadline");
        PQclear(r);
        return;
    }
    const char *p[] = {C.id, lease};
    r = run(pc,
            "UPDATE stamp_leader SET epoch = epoch + 1, holder = $1, since = now(), renewed_at = now(), "
            "expires_at = now() + $2::bigint * interval '1 millisecond' "
            "WHERE id = 1 AND (expires_at IS NULL OR expires_at < now()) RETURNING epoch",
            2, p, broken);
    if (r && PQntuples(r) == 1) {
        *last_renew = mono_ms();
        atomic_store(&C.renewed_mono, *last_renew);
        became_leader(strtoll(PQgetvalue(r, 0, 0), NULL, 10));
    }
    PQclear(r);
}

static void *election(void *arg) {
    (void)arg;
    PGconn *pc = NULL;
    int64_t last_renew = 0;
    while (!atomic_load(&C.stop)) {
        if (pc == NULL) pc = connect_db();
        bool broken = pc == NULL;
        if (pc) round_once(pc, &last_renew, &broken);
        if (broken) {
            if (pc) PQfinish(pc);
            pc = NULL;
            if (atomic_load(&C.leading) && mono_ms() - last_renew > C.renew_deadline_ms)
                step_down("database-unreachable");
        }
        nap(C.retry_ms);
    }
    /* A clean stop hands the lease over at once. */
    if (pc && atomic_load(&C.leading)) {
        char epoch[32];
        snprintf(epoch, sizeof(epoch), "%lld", (long long)atomic_load(&C.epoch));
        const char *p[] = {C.id, epoch};
        bool broken = false;
        PQclear(run(pc, "UPDATE stamp_leader SET expires_at = now() WHERE id = 1 AND holder = $1 AND epoch = $2::bigint",
                    2, p, &broken));
        step_down("stopped");
    }
    if (pc) {
        const char *p[] = {C.id};
        bool broken = false;
        PQclear(run(pc, "DELETE FROM stamp_replicas WHERE id = $1", 1, p, &broken));
        PQfinish(pc);
    }
    return NULL;
}

/* "Kind/name" -> the leader's queue. */
static void wake(const char *payload) {
    const char *slash = strchr(payload, '/');
    char kind[RES_KIND_MAX];
    if (slash == NULL || slash == payload || (size_t)(slash - payload) >= sizeof(kind) || slash[1] == '\0') return;
    memcpy(kind, payload, (size_t)(slash - payload));
    kind[slash - payload] = '\0';
    ctl_enqueue(C.c, kind, slash + 1);
}

static void *listener(void *arg) {
    (void)arg;
    while (!atomic_load(&C.stop)) {
        PGconn *pc = connect_db();
        if (pc == NULL) {
            nap(C.retry_ms);
            continue;
        }
        bool broken = false;
        PQclear(run(pc, "LISTEN stamp_wake", 0, NULL, &broken));
        if (broken) {
            PQfinish(pc);
            continue;
        }
        /* Notifications sent while this session was away are lost. */
        atomic_store(&C.resync, true);
        while (!atomic_load(&C.stop)) {
            struct pollfd pfd = {.fd = PQsocket(pc), .events = POLLIN};
            if (pfd.fd < 0) break;
            int n = poll(&pfd, 1, 200);
            if (n < 0) continue;
            if (n > 0 && !PQconsumeInput(pc)) break;
            PGnotify *nt;
            while ((nt = PQnotifies(pc)) != NULL) {
                if (cluster_leading()) wake(nt->extra);
                PQfreemem(nt);
            }
            if (PQstatus(pc) != CONNECTION_OK) break;
        }
        PQfinish(pc);
        if (!atomic_load(&C.stop)) log_warnx("cluster: the LISTEN session ended; reconnecting");
    }
    return NULL;
}

int cluster_start(const cluster_config *cfg, ctl_ctx *c, serr *e) {
    if (cfg->lease_ms <= 0 || cfg->renew_deadline_ms <= 0 || cfg->retry_ms <= 0 ||
        cfg->renew_deadline_ms >= cfg->lease_ms || cfg->retry_ms >= cfg->renew_deadline_ms)
        return serr_set(e, SE_INVAL,
                        "leader election: need leader-retry < leader-renew-deadline < leader-lease (now %lldms, %lldms, %lldms)",
                        (long long)cfg->retry_ms, (long long)cfg->renew_deadline_ms, (long long)cfg->lease_ms);
    if (!str_copy(C.url, sizeof(C.url), cfg->url) || !str_copy(C.id, sizeof(C.id), cfg->id) ||
        !str_copy(C.address, sizeof(C.address), cfg->address))
        return serr_set(e, SE_INVAL, "cluster: store URL, replica id or address too long");
    C.lease_ms = cfg->lease_ms;
    C.renew_deadline_ms = cfg->renew_deadline_ms;
    C.retry_ms = cfg->retry_ms;
    snprintf(C.options, sizeof(C.options), "-c lock_timeout=%lld -c statement_timeout=%lld",
             (long long)cfg->retry_ms, (long long)cfg->renew_deadline_ms);
    C.c = c;
    cluster_metrics_register();
    metrics_set(M_LEADER, "", 0);
    atomic_store(&C.stop, false);
    atomic_store(&C.enabled, true);
    if (pthread_create(&C.elect, NULL, election, NULL) != 0)
        return serr_set(e, SE_INTERNAL, "cluster: cannot start the election thread");
    if (pthread_create(&C.listen, NULL, listener, NULL) != 0) {
        atomic_store(&C.stop, true);
        pthread_join(C.elect, NULL);
        return serr_set(e, SE_INTERNAL, "cluster: cannot start the listen thread");
    }
    C.threads = true;
    log_info("cluster: replica %s (%s); lease %lldms, renew deadline %lldms, retry %lldms", C.id, C.address,
             (long long)C.lease_ms, (long long)C.renew_deadline_ms, (long long)C.retry_ms);
    return 0;
}

void cluster_stop(void) {
    if (!C.threads) return;
    atomic_store(&C.stop, true);
    pthread_join(C.elect, NULL);
    pthread_join(C.listen, NULL);
    C.threads = false;
    pthread_mutex_lock(&C.desc_mu);
    if (C.desc) PQfinish(C.desc);
    C.desc = NULL;
    pthread_mutex_unlock(&C.desc_mu);
}

/* Long: two queries and their rows as JSON. */
int cluster_describe(ctl_ctx *c, json_t **out, serr *e) {
    (void)c;
    *out = NULL;
    if (!atomic_load(&C.enabled)) {
        *out = json_pack("{s:s,s:s,s:{s:s,s:i},s:[]}", "backend", "sqlite", "self", "local", "leader", "holder",
                         "local", "epoch", 0, "replicas");
        return 0;
    }
    pthread_mutex_lock(&C.desc_mu);
    if (C.desc == NULL || PQstatus(C.desc) != CONNECTION_OK) {
        if (C.desc) PQfinish(C.desc);
        C.desc = connect_db();
    }
    if (C.desc == NULL) {
        pthread_mutex_unlock(&C.desc_mu);
        return serr_set(e, SE_UNAVAIL, "cluster: the database is unreachable");
    }
    bool broken = false;
    PGresult *l = run(C.desc,
                      "SELECT holder, epoch, "
                      "to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                      "to_char(renewed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                      "to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                      "expires_at > now() FROM stamp_leader WHERE id = 1",
                      0, NULL, &broken);
    PGresult *rs = l ? run(C.desc,
                           "SELECT id, address, "
                           "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                           "to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), version, "
                           "(extract(epoch from now() - seen_at) * 1000)::bigint "
                           "FROM stamp_replicas ORDER BY started_at, id",
                           0, NULL, &broken)
                     : NULL;
    pthread_mutex_unlock(&C.desc_mu);
    if (l == NULL || rs == NULL || PQntuples(l) != 1) {
        PQclear(l);
        PQclear(rs);
        return serr_set(e, SE_UNAVAIL, "cluster: cannot read the leader and the replicas");
    }
    const char *holder = PQgetvalue(l, 0, 0);
    bool valid = strcmp(PQgetvalue(l, 0, 5), "t") == 0;
    json_t *o = json_pack("{s:s,s:s,s:{s:s,s:I,s:s,s:s,s:s,s:b},s:[]}", "backend", "postgres", "self", C.id, "leader",
                          "holder", holder, "epoch", (json_int_t)strtoll(PQgetvalue(l, 0, 1), NULL, 10), "since",
                          PQgetvalue(l, 0, 2), "renewedAt", PQgetvalue(l, 0, 3), "expiresAt", PQgetvalue(l, 0, 4),
                          "valid", valid, "replicas");
    json_t *arr = json_object_get(o, "replicas");
    for (int i = 0; i < PQntuples(rs); i++) {
        int64_t ago = strtoll(PQgetvalue(rs, i, 5), NULL, 10);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:b,s:b,s:b}", "id", PQgetvalue(rs, i, 0),
                                             "address", PQgetvalue(rs, i, 1), "startedAt", PQgetvalue(rs, i, 2),
                                             "seenAt", PQgetvalue(rs, i, 3), "version", PQgetvalue(rs, i, 4),
                                             "seenMsAgo", (json_int_t)ago, "leader",
                                             valid && strcmp(PQgetvalue(rs, i, 0), holder) == 0, "self",
                                             strcmp(PQgetvalue(rs, i, 0), C.id) == 0, "stale", ago > C.lease_ms));
    }
    PQclear(l);
    PQclear(rs);
    *out = o;
    return 0;
}
