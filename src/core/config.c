/*
 * config.c - the configuration table and its parsers (config.h).
 */
#include "core/config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

enum ctype { CT_STR, CT_DUR, CT_INT, CT_FLOAT, CT_RANGE };

typedef struct crow {
    const char *key;
    int type;
    size_t off;
    size_t size; /* strings */
    const char *dflt;
    int64_t lo, hi; /* ints */
    const char *help;
} crow;

#define F(field) offsetof(stamp_config, field)
#define S(field) sizeof(((stamp_config *)0)->field)

static const crow rows[] = {
    {"data-dir", CT_STR, F(data_dir), S(data_dir), "/var/lib/stamp", 0, 0, "state, logs, workloads"},
    {"listen", CT_STR, F(listen), S(listen), "127.0.0.1:7480", 0, 0, "API address"},
    {"name-prefix", CT_STR, F(name_prefix), S(name_prefix), "synaxis", 0, 0,
     "stamp name prefix when the template sets none"},
    {"log-level", CT_STR, F(log_level), S(log_level), "INFO", 0, 0, "ERROR, WARNING, INFO, DEBUG"},
    {"jwt-issuer", CT_STR, F(jwt_issuer), S(jwt_issuer), "stampd", 0, 0, "required iss claim"},
    {"jwt-audience", CT_STR, F(jwt_audience), S(jwt_audience), "stamp", 0, 0, "required aud claim"},
    {"libexec-dir", CT_STR, F(libexec_dir), S(libexec_dir), "", 0, 0,
     "where stamp-workload and stamp-run live (default: next to stampd)"},
    {"port-range", CT_RANGE, F(port_lo), 0, "20000-29999", 1024, 65535,
     "ports given to workload replicas"},
    {"workers", CT_INT, F(workers), 0, "4", 1, 64, "reconcile workers"},
    {"job-threads", CT_INT, F(job_threads), 0, "4", 1, 64,
     "threads of the job pool (reaps, MTTC pipelines and other slow work)"},
    {"job-queue-max", CT_INT, F(job_queue_max), 0, "256", 1, 65536,
     "jobs waiting for a thread (past it a request gets 429)"},
    {"creating-timeout", CT_DUR, F(creating_timeout_ms), 0, "30m", 0, 0, "Creating -> Failed"},
    {"creating-attempts", CT_INT, F(creating_attempts), 0, "3", 1, 100,
     "deployment attempts before Failed"},
    {"failed-auto-delete", CT_DUR, F(failed_auto_delete_ms), 0, "0", 0, 0,
     "delete a Failed stamp after this long (0 = never; 1h is a common choice)"},
    {"drain-connections-timeout", CT_DUR, F(drain_connections_timeout_ms), 0, "10m", 0, 0,
     "wait for requests in flight (open connections for a workload that does not count requests)"},
    {"drain-jobs-timeout", CT_DUR, F(drain_jobs_timeout_ms), 0, "30m", 0, 0, "wait for jobs"},
    {"drain-total-timeout", CT_DUR, F(drain_total_timeout_ms), 0, "40m", 0, 0,
     "whole drain, then forced"},
    {"drain-poll-interval", CT_DUR, F(drain_poll_ms), 0, "50ms", 0, 0,
     "how often a drain looks at connections and jobs"},
    {"standby-max-age", CT_DUR, F(standby_max_age_ms), 0, "72h", 0, 0, "Ready -> retired"},
    {"activation-timeout", CT_DUR, F(activation_timeout_ms), 0, "10m", 0, 0,
     "one activation attempt from standby"},
    {"activation-attempts", CT_INT, F(activation_attempts), 0, "3", 1, 100,
     "activation attempts before Failed"},
    {"archive-retention", CT_DUR, F(archive_retention_ms), 0, "30d", 0, 0,
     "how long a retired stamp's archive is kept"},
    {"health-interval", CT_DUR, F(health_interval_ms), 0, "1s", 0, 0,
     "health gate probe interval"},
    {"probe-timeout", CT_DUR, F(probe_timeout_ms), 0, "2s", 0, 0, "one probe or scrape"},
    {"stop-grace", CT_DUR, F(stop_grace_ms), 0, "5s", 0, 0, "SIGTERM to SIGKILL"},
    {"update-replica-timeout", CT_DUR, F(update_replica_timeout_ms), 0, "2m", 0, 0,
     "an update's new replica must pass its gate within this, else the update rolls back"},
    {"restart-limit", CT_INT, F(restart_limit), 0, "5", 1, 1000,
     "replica restarts in Creating before the attempt fails"},
    {"backoff-initial", CT_DUR, F(backoff_initial_ms), 0, "10s", 0, 0, "first retry delay of a failed reconcile"},
    {"backoff-max", CT_DUR, F(backoff_max_ms), 0, "5m", 0, 0, "longest retry delay"},
    {"backoff-factor", CT_FLOAT, F(backoff_factor), 0, "2.0", 0, 0, "each retry delay is the previous one times this"},
    {"backoff-retries", CT_INT, F(backoff_retries), 0, "5", 0, 1000,
     "failed reconciles in a row before a resource is Stalled (0: retry for ever)"},
    {"token-ttl", CT_DUR, F(token_ttl_ms), 0, "8760h", 0, 0,
     "lifetime of the operator token in the client config"},
    {"traffic-driver", CT_STR, F(traffic_driver), S(traffic_driver), "haproxy", 0, 0,
     "front door: haproxy or none"},
    {"frontdoor-listen", CT_STR, F(frontdoor_listen), S(frontdoor_listen), "127.0.0.1:7481", 0, 0,
     "where the HAProxy stampd starts listens"},
    {"haproxy-bin", CT_STR, F(haproxy_bin), S(haproxy_bin), "/usr/sbin/haproxy", 0, 0,
     "the HAProxy binary stampd starts"},
    {"haproxy-socket", CT_STR, F(haproxy_socket), S(haproxy_socket), "", 0, 0,
     "drive an existing HAProxy through this admin socket instead of starting one"},
    {"haproxy-backend", CT_STR, F(haproxy_backend), S(haproxy_backend), "stamps", 0, 0,
     "the fleet's backend (balance hdr(X-Tenant-Id), hash-type consistent)"},
    {"frontdoor-sync-interval", CT_DUR, F(frontdoor_sync_ms), 0, "1s", 0, 0,
     "how often HAProxy's servers are compared with the store"},
    {"all-unhealthy-policy", CT_STR, F(all_unhealthy_policy), S(all_unhealthy_policy),
     "last-healthy", 0, 0, "when no Active stamp is healthy: last-healthy, fail-open or fail-closed"},
    {"prometheus-url", CT_STR, F(prometheus_url), S(prometheus_url), "", 0, 0,
     "Prometheus HTTP API base URL for the autoscaler's prometheus triggers (http://host:9090), or platform:NAME for the Prometheus an ObservabilityPlatform installed"},
    {"state-dir", CT_STR, F(state_dir), S(state_dir), "", 0, 0,
     "stamps', namespaces' and platforms' files (default: data-dir); replicas of stampd on one machine share one"},
    {"store", CT_STR, F(store_url), S(store_url), "", 0, 0,
     "the store: empty for DATA_DIR/stamp.db (SQLite), or postgresql://USER@HOST:PORT/DB (the database must exist) for several replicas (env STAMP_STORE_URL)"},
    {"replica-id", CT_STR, F(replica_id), S(replica_id), "", 0, 0,
     "this replica's name among several on PostgreSQL (default: host name, API port and a random suffix)"},
    {"leader-lease", CT_DUR, F(leader_lease_ms), 0, "15s", 0, 0,
     "how long a leader's lease holds the other replicas off (a dead leader is replaced after this)"},
    {"leader-renew-deadline", CT_DUR, F(leader_renew_deadline_ms), 0, "10s", 0, 0,
     "a leader that could not renew its lease for this long steps down (shorter than leader-lease)"},
    {"leader-retry", CT_DUR, F(leader_retry_ms), 0, "2s", 0, 0,
     "how often the leader renews and the others try to lead"},
    {"observability-catalog", CT_STR, F(obs_catalog), S(obs_catalog), "", 0, 0,
     "ObservabilityPlatform component catalog (default: share/stamp/observability/catalog.yaml next to stampd)"},
    {"observability-root", CT_STR, F(obs_root), S(obs_root), "/opt/stamp/observability", 0, 0,
     "where versions of components not in the system's packages are unpacked ({root} in the catalog)"},
    {"secrets-dir", CT_STR, F(secrets_dir), S(secrets_dir), "", 0, 0,
     "files an ObservabilityPlatform's spec.secrets name (default <state-dir>/secrets)"},
    {"prometheus-sd-dir", CT_STR, F(prometheus_sd_dir), S(prometheus_sd_dir), "", 0, 0,
     "where stampd writes Prometheus file_sd target files of the fleet (default <state-dir>/prometheus-sd)"},
    {"observability-pending-requeue", CT_DUR, F(obs_pending_requeue_ms), 0, "30s", 0, 0,
     "a platform whose prerequisites are missing looks again after this"},
    {"observability-install-requeue", CT_DUR, F(obs_install_requeue_ms), 0, "10s", 0, 0,
     "longest wait before looking again at a component that is not ready yet"},
    {"observability-health-interval", CT_DUR, F(obs_health_interval_ms), 0, "5s", 0, 0,
     "how often a Ready platform's components are checked"},
    {"fleet-min-regions", CT_INT, F(fleet_min_regions), 0, "2", 0, 100,
     "drain/standby/delete refused if fewer regions would keep an Active stamp (0 = off)"},
    {"health-unhealthy-threshold", CT_INT, F(health_unhealthy_threshold), 0, "3", 1, 100,
     "failures of the default /health check before a stamp leaves rotation"},
    {"health-recovery-grace", CT_DUR, F(health_recovery_grace_ms), 0, "30s", 0, 0,
     "after a redeploy, failures in this window do not count"},
    {"health-max-retries", CT_INT, F(health_max_retries), 0, "3", 0, 100,
     "recoveries of the default check before Failed"},
    {"api-threads", CT_INT, F(api_threads), 0, "4", 1, 64,
     "API threads (slow work runs in the job pool; a request waiting for it holds none)"},
    {"jwt-algorithms", CT_STR, F(jwt_algorithms), S(jwt_algorithms), "HS256", 0, 0,
     "accepted token algorithms: HS256, RS256, ES256 (comma separated)"},
    {"jwt-jwks", CT_STR, F(jwt_jwks), S(jwt_jwks), "", 0, 0,
     "JWKS file with the RS256/ES256 public keys, chosen by kid"},
    {"blob-backend", CT_STR, F(blob_backend), S(blob_backend), "auto", 0, 0,
     "dir, azure, or auto (azure when a connection string is set)"},
    {"blob-dir", CT_STR, F(blob_dir), S(blob_dir), "", 0, 0,
     "directory blob store (default DATA_DIR/blobs)"},
    {"azure-blob-connection-string", CT_STR, F(azure_connection), S(azure_connection), "", 0, 0,
     "Azure Blob account (env AZURE_BLOB_CONNECTION_STRING)"},
    {"diagnostic-container", CT_STR, F(diagnostic_container), S(diagnostic_container),
     "diagnostics", 0, 0, "container of diagnostics archives (env DIAGNOSTIC_CONTAINER_NAME)"},
    {"bundle-container", CT_STR, F(bundle_container), S(bundle_container), "bundles", 0, 0,
     "container of model bundles"},
    {"reap-interval", CT_DUR, F(reap_interval_ms), 0, "5m", 0, 0, "reaper sweep interval"},
    {"inactivity-threshold", CT_DUR, F(inactivity_threshold_ms), 0, "24h", 0, 0,
     "a namespace idle this long is reaped (env INACTIVITY_THRESHOLD_HOURS)"},
    {"reap-upload-window", CT_DUR, F(reap_upload_window_ms), 0, "1h", 0, 0,
     "how long failed diagnostics uploads are retried before the namespace is reaped anyway"},
    {"reap-retry-initial", CT_DUR, F(reap_retry_initial_ms), 0, "10s", 0, 0,
     "first retry of a failed reap; doubles"},
    {"reap-retry-max", CT_DUR, F(reap_retry_max_ms), 0, "5m", 0, 0, "longest reap retry delay"},
    {"ns-delete-timeout", CT_DUR, F(ns_delete_timeout_ms), 0, "60s", 0, 0,
     "wait for a namespace's pods and volumes to go"},
    {"ns-max-pods", CT_INT, F(ns_max_pods), 0, "64", 1, 4096, "pods per namespace"},
    {"pod-log-max", CT_INT, F(pod_log_max), 0, "67108864", 1024, 1073741824,
     "bytes of a pod log archived (the tail beyond it is kept)"},
    {"pod-command", CT_STR, F(pod_command), S(pod_command), "", 0, 0,
     "program pods run (default LIBEXEC/stamp-nsworker); pods choose only its arguments"},
    {"pipeline-command", CT_STR, F(pipeline_command), S(pipeline_command), "", 0, 0,
     "MTTC pipeline: CMD init DIR BUNDLE; CMD run DIR CONFIG OUT (default LIBEXEC/stamp-pipeline)"},
    {"pipeline-timeout", CT_DUR, F(pipeline_timeout_ms), 0, "10m", 0, 0, "one pipeline step"},
    {"bundle-max-size", CT_INT, F(bundle_max_size), 0, "67108864", 1, 1073741824,
     "largest model bundle accepted (bytes)"},
    {"diagnostics-retention", CT_DUR, F(diagnostics_retention_ms), 0, "30d", 0, 0,
     "how long archives are kept (directory backend)"},
    {"regulatory-retention", CT_DUR, F(regulatory_retention_ms), 0, "2557d", 0, 0,
     "retention for regulatory-locked tenants (7 years)"},
    {"regulatory-locked-tenants", CT_STR, F(regulatory_locked_tenants),
     S(regulatory_locked_tenants), "", 0, 0, "tenants whose archives keep 7 years (comma separated)"},
    {"retention-sweep-interval", CT_DUR, F(retention_sweep_ms), 0, "1h", 0, 0,
     "how often expired archives are deleted"},
    {"pod-user", CT_STR, F(pod_user), S(pod_user), "stamp-pod", 0, 0,
     "user tenant pods run as when stampd runs as root (make install creates it)"},
    {"pod-memory-max", CT_INT, F(pod_memory_max), 0, "2147483648", 16777216, INT64_MAX,
     "address space of one pod process (bytes, RLIMIT_AS)"},
    {"pod-procs-max", CT_INT, F(pod_procs_max), 0, "512", 1, 1000000,
     "processes of the pod user (RLIMIT_NPROC)"},
    {"pod-files-max", CT_INT, F(pod_files_max), 0, "256", 16, 1048576,
     "open files of one pod process (RLIMIT_NOFILE)"},
    {"pod-cpu-max", CT_DUR, F(pod_cpu_max_ms), 0, "0", 0, 0,
     "CPU time of one pod process (RLIMIT_CPU; 0 = unlimited)"},
    {"pod-file-size-max", CT_INT, F(pod_file_size_max), 0, "1073741824", 4096, INT64_MAX,
     "largest file a pod may write (bytes, RLIMIT_FSIZE)"},
    {"ns-disk-max", CT_INT, F(ns_disk_max), 0, "4294967296", 65536, INT64_MAX,
     "disk one namespace may use: pod directories, logs and volumes (bytes)"},
    {"disk-reserve", CT_INT, F(disk_reserve), 0, "67108864", 0, INT64_MAX,
     "free bytes kept for stampd's own store: pods stop and none start below it"},
    {"api-max-connections", CT_INT, F(api_max_connections), 0, "1024", 16, 65536,
     "open API connections in all"},
    {"api-max-connections-per-client", CT_INT, F(api_max_connections_per_client), 0, "64", 1, 65536,
     "open API connections from one client address"},
    {"api-header-timeout", CT_DUR, F(api_header_timeout_ms), 0, "10s", 0, 0,
     "a request's headers must arrive within this"},
    {"api-idle-timeout", CT_DUR, F(api_idle_timeout_ms), 0, "60s", 0, 0,
     "an idle keep-alive connection is closed after this"},
    {"api-min-body-rate", CT_INT, F(api_min_body_rate), 0, "4096", 0, INT64_MAX,
     "slowest request body accepted (bytes/s, after api-header-timeout; 0 = any)"},
    {"api-max-uploads", CT_INT, F(api_max_uploads), 0, "4", 1, 1024,
     "model bundle uploads at once"},
    {"jwt-jwks-url", CT_STR, F(jwt_jwks_url), S(jwt_jwks_url), "", 0, 0,
     "identity provider's jwks_uri (https), fetched and cached"},
    {"jwt-jwks-refresh", CT_DUR, F(jwt_jwks_refresh_ms), 0, "1h", 0, 0,
     "how often the JWKS is fetched again"},
    {"jwt-jwks-min-refresh", CT_DUR, F(jwt_jwks_min_refresh_ms), 0, "30s", 0, 0,
     "an unknown kid fetches the JWKS again at most this often"},
    {"jwt-issuers", CT_STR, F(jwt_issuers), S(jwt_issuers), "", 0, 0,
     "iss values accepted from JWKS keys (comma separated; default jwt-issuer)"},
    {"jwt-operator-issuers", CT_STR, F(jwt_operator_issuers), S(jwt_operator_issuers), "", 0, 0,
     "issuers whose JWKS-signed tokens may carry the operator role (default none)"},
    {"jwt-operator-kids", CT_STR, F(jwt_operator_kids), S(jwt_operator_kids), "", 0, 0,
     "if set, only these JWKS keys may sign operator tokens (comma separated)"},
    {"jwt-role-claim", CT_STR, F(jwt_role_claim), S(jwt_role_claim), "role", 0, 0,
     "claim that carries the role"},
    {"jwt-leeway", CT_DUR, F(jwt_leeway_ms), 0, "30s", 0, 0,
     "clock skew allowed on exp, nbf and iat (at most 1d)"},
    {"jwt-jwks-ca-file", CT_STR, F(jwt_jwks_ca_file), S(jwt_jwks_ca_file), "", 0, 0,
     "CA bundle that verifies jwt-jwks-url's certificate (default: the system's)"},
    {"log-format", CT_STR, F(log_format), S(log_format), "text", 0, 0,
     "text (\"TIME - LEVEL - message\") or json (one object a line: time, level, msg)"},
    {"api-max-watches", CT_INT, F(api_max_watches), 0, "64", 1, 4096,
     "open GET /v1/watch streams at once (429 past it)"},
    {"api-max-waiting", CT_INT, F(api_max_waiting), 0, "128", 1, 4096,
     "requests waiting for slow work (a reap, an MTTC pipeline) at once (503 past it)"},
};
#undef F
#undef S

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const crow *row_find(const char *key) {
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].key, key) == 0) return &rows[i];
    return NULL;
}

static int row_set(stamp_config *c, const crow *r, const char *v, serr *e) {
    char *base = (char *)c + r->off;
    switch (r->type) {
    case CT_STR:
        if (!str_copy(base, r->size, v)) return serr_set(e, SE_INVAL, "%s: value too long", r->key);
        return 0;
    case CT_DUR: {
        int64_t ms;
        if (parse_duration_ms(v, &ms) != 0)
            return serr_set(e, SE_INVAL, "%s: \"%s\" is not a duration (like 500ms, 30s, 10m, 72h)",
                            r->key, v);
        memcpy(base, &ms, sizeof(ms));
        return 0;
    }
    case CT_INT: {
        int64_t n;
        if (parse_i64(v, r->lo, r->hi, &n) != 0)
            return serr_set(e, SE_INVAL, "%s: \"%s\" is not an integer from %lld to %lld", r->key,
                            v, (long long)r->lo, (long long)r->hi);
        memcpy(base, &n, sizeof(n));
        return 0;
    }
    case CT_FLOAT: {
        char *end;
        double d = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || !(d >= 1.0 && d <= 10.0))
            return serr_set(e, SE_INVAL, "%s: \"%s\" is not a number from 1 to 10", r->key, v);
        memcpy(base, &d, sizeof(d));
        return 0;
    }
    case CT_RANGE: {
        char lo[16], *dash;
        if (!str_copy(lo, sizeof(lo), v) || (dash = strchr(lo, '-')) == NULL)
            return serr_set(e, SE_INVAL, "%s: \"%s\" is not a range like 20000-29999", r->key, v);
        *dash = '\0';
        int64_t a, b;
        if (parse_i64(lo, r->lo, r->hi, &a) != 0 || parse_i64(dash + 1, r->lo, r->hi, &b) != 0 ||
            a > b)
            return serr_set(e, SE_INVAL, "%s: \"%s\" is not a range within %lld-%lld", r->key, v,
                            (long long)r->lo, (long long)r->hi);
        c->port_lo = a;
        c->port_hi = b;
        return 0;
    }
    }
    return serr_set(e, SE_INTERNAL, "bad config row");
}

void config_defaults(stamp_config *c) {
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NROWS; i++) row_set(c, &rows[i], rows[i].dflt, NULL);
}

int config_set(stamp_config *c, const char *key, const char *value, serr *e) {
    const crow *r = row_find(key);
    if (r == NULL) return serr_set(e, SE_INVAL, "unknown configuration key \"%s\"", key);
    return row_set(c, r, value, e);
}

int config_load_file(stamp_config *c, const char *path, serr *e) {
    char *text;
    int rc = read_file(path, 1 << 20, &text, NULL, e);
    if (rc) return rc;
    int lineno = 0;
    /* Line by line, blank lines counted: an error names the line it is on
     * (strtok_r skipped empty lines and miscounted). */
    char *next = text;
    while (next) {
        char *line = next;
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            next = nl + 1;
        } else {
            next = NULL;
            if (*line == '\0') break; /* after the last newline */
        }
        lineno++;
        while (*line == ' ' || *line == '\t') line++;
        if (*line == '#' || *line == '\0') continue;
        char *sep = line + strcspn(line, " \t=");
        if (*sep == '\0') {
            rc = serr_set(e, SE_INVAL, "%s:%d: expected \"key value\"", path, lineno);
            break;
        }
        *sep++ = '\0';
        while (*sep == ' ' || *sep == '\t' || *sep == '=') sep++;
        char *end = sep + strlen(sep);
        while (end > sep && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) *--end = '\0';
        if ((rc = config_set(c, line, sep, e)) != 0) {
            serr_wrap(e, "%s:%d", path, lineno);
            break;
        }
    }
    free(text);
    return rc;
}

int config_from_env(stamp_config *c, serr *e) {
    const char *v;
    int rc;
    if ((v = getenv("AZURE_BLOB_CONNECTION_STRING")) && *v &&
        (rc = config_set(c, "azure-blob-connection-string", v, e)))
        return rc;
    if ((v = getenv("DIAGNOSTIC_CONTAINER_NAME")) && *v &&
        (rc = config_set(c, "diagnostic-container", v, e)))
        return rc;
    if ((v = getenv("STAMP_STORE_URL")) && *v && (rc = config_set(c, "store", v, e))) return rc;
    if ((v = getenv("INACTIVITY_THRESHOLD_HOURS")) && *v) {
        int64_t h;
        if (parse_i64(v, 0, 100000, &h) != 0)
            return serr_set(e, SE_INVAL, "INACTIVITY_THRESHOLD_HOURS: \"%s\" is not a number of hours", v);
        c->inactivity_threshold_ms = h * 3600 * 1000;
    }
    return 0;
}

int config_validate(const stamp_config *c, serr *e) {
    if (c->data_dir[0] == '\0') return serr_set(e, SE_INVAL, "data-dir: required");
    if (strchr(c->listen, ':') == NULL)
        return serr_set(e, SE_INVAL, "listen: \"%s\" is not ADDR:PORT", c->listen);
    if (log_level_parse(c->log_level) < 0)
        return serr_set(e, SE_INVAL, "log-level: \"%s\" is not ERROR, WARNING, INFO or DEBUG",
                        c->log_level);
    if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0)
        return serr_set(e, SE_INVAL, "log-format: \"%s\" is not text or json", c->log_format);
    if (c->backoff_initial_ms <= 0 || c->backoff_max_ms < c->backoff_initial_ms)
        return serr_set(e, SE_INVAL, "backoff-initial must be > 0 and <= backoff-max");
    if (strcmp(c->traffic_driver, "haproxy") != 0 && strcmp(c->traffic_driver, "none") != 0)
        return serr_set(e, SE_INVAL, "traffic-driver: \"%s\" is not haproxy or none", c->traffic_driver);
    if (strcmp(c->all_unhealthy_policy, "last-healthy") != 0 &&
        strcmp(c->all_unhealthy_policy, "fail-open") != 0 &&
        strcmp(c->all_unhealthy_policy, "fail-closed") != 0)
        return serr_set(e, SE_INVAL, "all-unhealthy-policy: \"%s\" is not last-healthy, fail-open or fail-closed",
                        c->all_unhealthy_policy);
    if (strchr(c->frontdoor_listen, ':') == NULL)
        return serr_set(e, SE_INVAL, "frontdoor-listen: \"%s\" is not ADDR:PORT", c->frontdoor_listen);
    if (!name_valid(c->haproxy_backend, 63))
        return serr_set(e, SE_INVAL, "haproxy-backend: \"%s\" must be lowercase letters, digits and '-'",
                        c->haproxy_backend);
    if (c->frontdoor_sync_ms <= 0) return serr_set(e, SE_INVAL, "frontdoor-sync-interval must be > 0");
    if (strcmp(c->blob_backend, "dir") && strcmp(c->blob_backend, "azure") &&
        strcmp(c->blob_backend, "auto"))
        return serr_set(e, SE_INVAL, "blob-backend: \"%s\" is not dir, azure or auto", c->blob_backend);
    if (c->reap_interval_ms <= 0 || c->reap_retry_initial_ms <= 0 ||
        c->reap_retry_max_ms < c->reap_retry_initial_ms)
        return serr_set(e, SE_INVAL, "reap-interval and reap-retry-* must be > 0, initial <= max");
    if (c->drain_poll_ms <= 0 || c->health_interval_ms <= 0 || c->probe_timeout_ms <= 0)
        return serr_set(e, SE_INVAL, "intervals and timeouts must be > 0");
    return 0;
}

int64_t config_duration(const stamp_config *c, const char *key) {
    const crow *r = row_find(key);
    if (r == NULL || r->type != CT_DUR) return -1;
    int64_t v;
    memcpy(&v, (const char *)c + r->off, sizeof(v));
    return v;
}

void config_print(const stamp_config *c, FILE *f) {
    for (size_t i = 0; i < NROWS; i++) {
        const crow *r = &rows[i];
        const char *base = (const char *)c + r->off;
        int64_t n;
        double d;
        char buf[64];
        switch (r->type) {
        case CT_STR:
            /* secrets are not printed */
            fprintf(f, "%-28s %s\n", r->key,
                    strstr(r->key, "connection-string") && *base ? "(set)" : base);
            break;
        case CT_DUR:
            memcpy(&n, base, sizeof(n));
            fprintf(f, "%-28s %s\n", r->key, fmt_duration(n, buf, sizeof(buf)));
            break;
        case CT_INT:
            memcpy(&n, base, sizeof(n));
            fprintf(f, "%-28s %lld\n", r->key, (long long)n);
            break;
        case CT_FLOAT:
            memcpy(&d, base, sizeof(d));
            fprintf(f, "%-28s %g\n", r->key, d);
            break;
        case CT_RANGE:
            fprintf(f, "%-28s %lld-%lld\n", r->key, (long long)c->port_lo, (long long)c->port_hi);
            break;
        }
    }
}

void config_help(FILE *f) {
    for (size_t i = 0; i < NROWS; i++)
        fprintf(f, "  %-28s %-16s %s\n", rows[i].key, *rows[i].dflt ? rows[i].dflt : "\"\"",
                rows[i].help);
}
