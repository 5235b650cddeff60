/*
 * config.h - stampd's configuration as one table (Redis config.c style):
 * each row is a key, a type, the field it fills and its default.  The same
 * table serves the config file (`key value` lines), `--set key=value` on the
 * command line, `stampd -n` and the documentation (`stampd --help-config`).
 * Every duration of the lifecycle is here so tests can run in seconds.
 */
#ifndef STAMP_CONFIG_H
#define STAMP_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

typedef struct stamp_config {
    char data_dir[512];
    char listen[128];
    char prometheus_url[256]; /* the autoscaler's prometheus triggers query it */
    char state_dir[512];      /* stamps', namespaces', platforms' files ("" : data-dir) */
    char store_url[1024];     /* "" : <data-dir>/stamp.db (SQLite); postgres://... */
    char replica_id[128];     /* "" : host-port-random */
    int64_t leader_lease_ms, leader_renew_deadline_ms, leader_retry_ms;
    char obs_catalog[512];    /* the ObservabilityPlatform catalog ("" : next to stampd) */
    char obs_root[512];       /* {root} of the catalog's binaries */
    char secrets_dir[512];    /* platforms' required secrets ("" : <data-dir>/secrets) */
    char prometheus_sd_dir[512]; /* file_sd files stampd writes ("" : <data-dir>/prometheus-sd) */
    int64_t obs_pending_requeue_ms, obs_install_requeue_ms, obs_health_interval_ms;
    char name_prefix[32];
    char log_level[16];
    char jwt_issuer[64];
    char jwt_audience[64];
    char libexec_dir[512];
    int64_t port_lo, port_hi;
    int64_t workers;
    int64_t job_threads;
    int64_t job_queue_max;
    /* Stamp lifecycle (seed 000) */
    int64_t creating_timeout_ms;
    int64_t creating_attempts;
    int64_t failed_auto_delete_ms; /* 0 = off */
    int64_t drain_connections_timeout_ms;
    int64_t drain_jobs_timeout_ms;
    int64_t drain_total_timeout_ms;
    int64_t drain_poll_ms;
    int64_t standby_max_age_ms;
    int64_t activation_timeout_ms;
    int64_t activation_attempts;
    int64_t archive_retention_ms;
    int64_t health_interval_ms;
    int64_t probe_timeout_ms;
    int64_t stop_grace_ms;
    int64_t update_replica_timeout_ms;
    int64_t restart_limit;
    /* Reconciler backoff (seed 003) */
    int64_t backoff_initial_ms;
    int64_t backoff_max_ms;
    int64_t backoff_retries;
    double backoff_factor;
    int64_t token_ttl_ms;
    /* Front door and health (seeds 000, 001) */
    char traffic_driver[16];
    char frontdoor_listen[128];
    char haproxy_bin[256];
    char haproxy_socket[108];
    char haproxy_backend[64];
    int64_t frontdoor_sync_ms;
    char all_unhealthy_policy[32];
    int64_t fleet_min_regions;
    int64_t health_unhealthy_threshold;
    int64_t health_recovery_grace_ms;
    int64_t health_max_retries;
    /* API and auth */
    int64_t api_threads;
    char jwt_algorithms[64];
    char jwt_jwks[512];
    /* Transient namespaces, diagnostics and MTTC (seed 004) */
    char blob_backend[16];
    char blob_dir[512];
    char azure_connection[1024];
    char diagnostic_container[64];
    char bundle_container[64];
    int64_t reap_interval_ms;
    int64_t inactivity_threshold_ms;
    int64_t reap_upload_window_ms;
    int64_t reap_retry_initial_ms;
    int64_t reap_retry_max_ms;
    int64_t ns_delete_timeout_ms;
    int64_t ns_max_pods;
    int64_t pod_log_max;
    char pod_command[512];
    char pipeline_command[512];
    int64_t pipeline_timeout_ms;
    int64_t bundle_max_size;
    int64_t diagnostics_retention_ms;
    int64_t regulatory_retention_ms;
    char regulatory_locked_tenants[1024];
    int64_t retention_sweep_ms;
    /* Tenant pods: who they run as and what they may use */
    char pod_user[64];
    int64_t pod_memory_max;
    int64_t pod_procs_max;
    int64_t pod_files_max;
    int64_t pod_cpu_max_ms;
    int64_t pod_file_size_max;
    int64_t ns_disk_max;
    int64_t disk_reserve;
    /* API connections and uploads */
    int64_t api_max_connections;
    int64_t api_max_connections_per_client;
    int64_t api_header_timeout_ms;
    int64_t api_idle_timeout_ms;
    int64_t api_min_body_rate;
    int64_t api_max_uploads;
    /* Tokens from identity providers */
    char jwt_jwks_url[512];
    int64_t jwt_jwks_refresh_ms;
    int64_t jwt_jwks_min_refresh_ms;
    char jwt_issuers[512];
    char jwt_operator_issuers[512];
    char jwt_operator_kids[512];
    char jwt_role_claim[64];
    int64_t jwt_leeway_ms;
    char jwt_jwks_ca_file[512];
    char log_format[16];
    /* API watches */
    int64_t api_max_watches;
    int64_t api_max_waiting;
} stamp_config;

void config_defaults(stamp_config *c);
/* key=value or key value. */
int config_set(stamp_config *c, const char *key, const char *value, serr *e);
int config_load_file(stamp_config *c, const char *path, serr *e);
/* Seed 004's environment variables (AZURE_BLOB_CONNECTION_STRING,
 * DIAGNOSTIC_CONTAINER_NAME, INACTIVITY_THRESHOLD_HOURS, LOG_LEVEL) as
 * configuration; applied after the defaults and before the file. */
int config_from_env(stamp_config *c, serr *e);
/* Cross-field checks (ranges, port range order). */
int config_validate(const stamp_config *c, serr *e);
/* Looks up a duration key (for the fsm timeout table); -1 when unknown. */
int64_t config_duration(const stamp_config *c, const char *key);
void config_print(const stamp_config *c, FILE *f);
void config_help(FILE *f);

/* state-dir, or data-dir when it is not set. */
static inline const char *config_state_dir(const stamp_config *c) {
    return c->state_dir[0] ? c->state_dir : c->data_dir;
}

#endif
