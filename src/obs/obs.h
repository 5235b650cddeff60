/*
 * obs.h - the ObservabilityPlatform kind: a monitoring stack (Prometheus,
 * Alertmanager, exporters; Loki, Tempo and Grafana where an operator has
 * installed them) that stampd installs, reloads, upgrades with a backup and
 * a rollback, heals, and uninstalls, and that watches the fleet.
 *
 * Manifest (stampctl apply -f):
 *   apiVersion: observability.synaxis.io/v1alpha1
 *   kind: ObservabilityPlatform
 *   metadata: {name: fleet-monitoring}
 *   spec:
 *     paused: false            nothing is touched while true
 *     keepVolumes: false       deletion keeps the components' data dirs
 *     runtime: local           local (processes here) or exec (the
 *                              catalog's helm/kubectl commands)
 *     retry: {maxRetries: 5, initialBackoff: 10s, maxBackoff: 5m, backoffFactor: 2}
 *     secrets: [NAME, ...]     files in the secrets-dir that must exist;
 *                              copied (0600) into each component's config
 *                              dir, where its config may name them
 *     components:
 *       - name: prometheus     a component of the catalog
 *         version: "2.42.0"    a version the catalog lists for it
 *         enabled: true
 *         port: 0              0: leased from port-range
 *         retention: 15d       the catalog's default when omitted
 *         storage: {size: 1Gi} checked against the free disk in Pending
 *         config: {...}        merged over the catalog's configuration
 *                              (JSON merge patch, RFC 7386)
 *
 * The catalog (deploy/observability/catalog.yaml, data, not code) says per
 * component and version how the local runtime runs it and how the exec
 * runtime installs it; obs_catalog_load reads it once at start.
 *
 * Files of a platform P live under <data-dir>/observability/P/<component>/
 * {config,data,log}; its processes are units "obs/P/<component>@<hash>",
 * where the hash covers what the process is started from (binary,
 * arguments), so a scan tells exactly which version and flags run.
 */
#ifndef STAMP_OBS_H
#define STAMP_OBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "reconcile/ctl.h"
#include "util/err.h"

#define OBS_KIND "ObservabilityPlatform"
#define OBS_API_VERSION "observability.synaxis.io/v1alpha1"
#define OBS_MAX_COMP 12
#define OBS_MAX_VERSIONS 8
#define OBS_MAX_SECRETS 16
#define OBS_NAME_MAX 32
#define OBS_VERSION_MAX 32

/* ---- the catalog (catalog.c) ---- */

typedef struct obs_cat_version {
    char version[OBS_VERSION_MAX];
    char binary[512];    /* absolute, {root} expanded (observability-root) */
    json_t *args;        /* array of strings, with {placeholders} */
    char config_file[64];/* file name in the config dir ("" : no config) */
    json_t *config;      /* the base configuration document (object), or NULL */
    json_t *check;       /* argv (array of strings, {placeholders}) that
                          * validates the rendered config, or NULL */
    char ready_path[128];/* GET http://127.0.0.1:{port}<ready_path>: 200 = ready */
    char reload[32];     /* "sighup", "post:/-/reload" or "restart" */
    char backup[32];     /* "prometheus-snapshot", "stop-copy" or "none" */
    json_t *restart_keys;/* array of top-level config keys a change of which
                          * needs a restart rather than a reload (may be NULL) */
    json_t *exec;        /* {install:[argv..], upgrade:[..], rollback:[..],
                          *  uninstall:[..], ready:[..]}: each an array of
                          * argv arrays, {placeholders}; NULL: not on exec */
    json_t *files;       /* [{from, to}]: files copied into the config dir;
                          * from an absolute path (resolved against the
                          * directory of the catalog file that named it, and
                          * present at load), to a plain file name; NULL: none */
} obs_cat_version;

typedef struct obs_cat_comp {
    char name[OBS_NAME_MAX];
    char title[64];            /* "Prometheus" */
    char default_version[OBS_VERSION_MAX];
    char default_retention[32];/* "" when the component keeps no data */
    bool stores_data;          /* a data dir is created and backed up */
    char missing_hint[256];    /* said when the binary is not installed */
    obs_cat_version v[OBS_MAX_VERSIONS];
    int nv;
} obs_cat_comp;

typedef struct obs_catalog {
    obs_cat_comp c[OBS_MAX_COMP]; /* in install order (catalog's `order`) */
    int n;
    char dir[512];             /* the catalog file's directory: relative
                                * paths in it ({catalog}) are under it */
    json_t *exec_tools;        /* array of tool names the exec runtime needs
                                * on PATH (helm, kubectl) */
} obs_catalog;

/* Loads and checks the catalog (YAML).  root replaces {root} in binaries.
 * Errors name the file, the component and the field.
 * path may be a comma-separated list of files: the first defines
 * everything; each later one may only add `versions:` entries for
 * components the first defines (site-local builds).  Each version holds
 * the RESOLVED fields: the component's defaults overlaid by the version's.
 * Every placeholder in args, check, config and exec must be one of those
 * obs_placeholder_known accepts, and every "$if" must name a component. */
int obs_catalog_load(const char *path, const char *root, obs_catalog **out, serr *e);
void obs_catalog_free(obs_catalog *cat); /* NULL is fine */
const obs_cat_comp *obs_catalog_comp(const obs_catalog *cat, const char *name);
const obs_cat_version *obs_catalog_version(const obs_cat_comp *cc, const char *version);
/* Index of the component in install order, -1 when unknown. */
int obs_catalog_order(const obs_catalog *cat, const char *name);

/* ---- the spec (spec.c) ---- */

typedef struct obs_retry {
    int max_retries;     /* 0..100, default 5 */
    int64_t initial_ms;  /* default 10 s */
    int64_t max_ms;      /* default 5 min */
    double factor;       /* 1..10, default 2 */
} obs_retry;

typedef struct obs_comp_spec {
    char name[OBS_NAME_MAX];
    char version[OBS_VERSION_MAX]; /* the catalog's default when omitted */
    bool enabled;                  /* default true */
    int port;                      /* 0: leased */
    char retention[32];            /* the catalog's default when omitted;
                                    * normalized to hours, minutes, seconds
                                    * ("15d" -> "360h", "90m" -> "1h30m"),
                                    * which Prometheus and Go's
                                    * time.ParseDuration (Alertmanager) both
                                    * read; "" when the component keeps none */
    int64_t retention_ms;          /* the same in ms (0 with "") */
    int64_t storage_bytes;         /* 0: not said */
    json_t *config;                /* borrowed from the spec: object, or NULL */
} obs_comp_spec;

typedef struct obs_spec {
    obs_comp_spec c[OBS_MAX_COMP]; /* in the catalog's install order */
    int n;
    bool paused, keep_volumes, exec;
    obs_retry retry;
    char secrets[OBS_MAX_SECRETS][64];
    int nsecrets;
} obs_spec;

/* Validates spec against the catalog and fills out (whose config members
 * borrow from spec: keep spec alive).  Errors name the field:
 *   spec.components[2].version: "9.9" is not in the catalog for
 *   prometheus (it has 2.42.0, 2.53.3)
 * Checked: unknown keys, unknown or duplicate components, versions,
 * enabled components' ports (1024-65535, no two alike), retention (a
 * duration), storage.size (a quantity: 512Mi, 1Gi, 10G), config an
 * object of at most 64 KiB serialized, secrets' names (name_valid), retry
 * bounds.  cat NULL: only the shape is checked. */
int obs_spec_parse(json_t *spec, const obs_catalog *cat, obs_spec *out, serr *e);
const obs_comp_spec *obs_spec_comp(const obs_spec *sp, const char *name);
/* A storage quantity: plain bytes, or a number with k M G T P (powers of
 * 1000) or Ki Mi Gi Ti Pi (powers of 1024); 1 byte .. 1 PiB.  0 or
 * SE_INVAL. */
int obs_parse_quantity(const char *s, int64_t *bytes);

/* ---- rendering (render.c) ---- */

/* Values of the {placeholders} of one component:
 *   {port} {port:<component>} (an enabled peer's port)
 *   {data} {config} (the rendered config file) {configdir} {log}
 *   {retention} {secrets} (the component's copy of the secrets)
 *   {targets} (the dir of stampd's file_sd files) {rules} (the alert
 *   rules file) {stampd} (host:port of the API) {stampd_token} (a file)
 *   {catalog} (the catalog's dir) {name} {version} {platform}
 * An unknown placeholder is SE_INVAL naming it.
 *
 * A placeholder is `{` NAME `}` with NAME [a-z][a-z0-9_]* optionally
 * followed by `:` and a component name ([a-z0-9-]+).  Any other `{` is a
 * literal brace ("{{ $labels.x }}", "a{2}", "{}"), so configuration text
 * with braces needs no escaping; a placeholder-shaped literal cannot be
 * written in the catalog (none is needed).  In a configuration document a
 * string that is exactly "{port}" or "{port:<component>}" becomes a number
 * (Loki's and Tempo's http_listen_port are integers).  The user's config
 * is never expanded. */
#define OBS_VARS_MAX 48
typedef struct obs_vars {
    char key[OBS_VARS_MAX][40];
    char val[OBS_VARS_MAX][512];
    int n;
    bool enabled[OBS_MAX_COMP]; /* per catalog component: enabled in the spec */
    const obs_catalog *cat;
} obs_vars;
int obs_vars_set(obs_vars *v, const char *key, const char *val, serr *e); /* sets or replaces */
/* Whether NAME (what is between the braces) is a placeholder the catalog
 * may use: one of the list above, {port:<c>} for c in cat (any c when cat
 * is NULL). */
bool obs_placeholder_known(const obs_catalog *cat, const char *name);

/* Expands every {placeholder} of s into out. */
int obs_expand(const obs_vars *v, const char *s, char *out, size_t len, serr *e);
/* The argv of an array of strings (the catalog's args or check), each
 * expanded; a NULL-terminated array of malloc'd strings in *argv (free
 * with obs_argv_free).  binary is argv[0] as is; binary NULL: argv is
 * args alone (check and exec commands, whose first element is the program).
 * At most 64 arguments of at most 4 KiB each. */
int obs_render_argv(const obs_vars *v, const char *binary, const json_t *args, char ***argv,
                    serr *e);
void obs_argv_free(char **argv);
/* The component's configuration: the catalog's document with its
 * placeholders expanded in every string, every object carrying
 * "$if": "<component>" dropped when that component is not enabled (the key
 * itself removed otherwise), then user (may be NULL) merged over it as a
 * JSON merge patch (RFC 7386).  *out is the document (JSON, which every
 * component reads as YAML). */
int obs_render_config(const obs_vars *v, const obs_cat_version *cv, const json_t *user,
                      json_t **out, serr *e);

/* ---- the controller (controller.c) and its API (api.c) ---- */

/* The catalog stampd loaded at start (NULL: none could be loaded; a
 * platform then stays Pending saying why, obs_catalog_error()).
 * obs_set_catalog takes ownership of cat; call it once at start before any
 * API thread or worker runs (a later call frees the previous catalog, so
 * only tests call it again, with no reader running).  Readers never lock:
 * the catalog is immutable once set. */
void obs_set_catalog(obs_catalog *cat, const char *load_error);
const obs_catalog *obs_get_catalog(void);
const char *obs_catalog_error(void); /* "" when a catalog is loaded */

/* The base URL of a Prometheus for the autoscaler's prometheus triggers:
 * setting (the prometheus-url key) as it is, or, for "platform:NAME", the
 * endpoint of platform NAME's prometheus component while it is Ready.
 * Reads the store: call it from a job, not a reconcile. */
int obs_prometheus_url(ctl_ctx *c, const char *setting, char *buf, size_t len, serr *e);

/* apply's validation of a manifest's spec (routes_stamps.c kinds[]). */
int obs_validate(json_t *spec, serr *e);

int obs_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e);
void obs_metrics_register(void);

/* pause or resume (spec.paused): 0 with *answer (the platform). */
int obs_action(ctl_ctx *c, const char *name, const char *action, const char *user, json_t **answer,
               serr *e);
/* Marks the platform for deletion (its finalizer uninstalls it; the record
 * goes when that is done).  0 with *answer. */
int obs_delete(ctl_ctx *c, const char *name, const char *user, json_t **answer, serr *e);

#endif
