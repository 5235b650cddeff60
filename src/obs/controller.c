/*
 * controller.c - the ObservabilityPlatform controller: seed 003's
 * reconcile, in its order:
 *   1. the platform (gone: its gauges go too);
 *   2. deletion: the finalizer uninstalls the components in reverse
 *      install order, removes their volumes (unless spec.keepVolumes),
 *      releases their ports, then the record goes;
 *   3. the finalizer is added if missing;
 *   4. paused: nothing is looked at or touched;
 *   5. the phase's handler:
 *      Pending     the spec against the catalog (invalid: Failed, a
 *                  configuration error), then prerequisites: binaries
 *                  (or the exec runtime's tools), secrets, disk, ports;
 *                  missing: said in status, looked at again after
 *                  observability-pending-requeue;
 *      Installing  each enabled component in install order, each waiting
 *                  for the one before to be ready (ENSURE, unit.c);
 *      Ready       a version change is an upgrade (upgrade.c); a changed
 *                  configuration is checked and reloaded in place, a
 *                  changed flag (retention, port) restarts that one
 *                  component (both Ready -> Ready, "Minor Update"); the
 *                  components are probed every
 *                  observability-health-interval;
 *      Failed      by the error's category: a configuration error (or an
 *                  upgrade rolled back) waits for a change of the spec;
 *                  others are retried with spec.retry's backoff
 *                  (Failed -> Installing), then wait for a change;
 *                  resume also gives the retries back;
 *      Upgrading   upgrade.c.
 *   6. conditions (conditions.c), written only when they change.
 *
 * Slow work runs as one job at a time per platform (status.work), so a
 * worker never waits, and a restart of stampd finds the job's record and
 * runs it again: every job is check-then-act (unit.c).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/naming.h"
#include "obs/internal.h"
#include "obs/targets.h"
#include "reconcile/engine.h"
#include "reconcile/jobs.h"
#include "reconcile/phase.h"
#include "util/log.h"
#include "util/metrics.h"
#include <pthread.h>
#include "util/util.h"
#include "util/yamljson.h"
#include "util/wallclock.h"

#define M_DURATION "observability_platform_reconciliation_duration_seconds"
#define M_ERRORS "observability_platform_errors_total"
#define PROBE_FAILURES_MAX 3
#define FILE_MAX (1u << 20)

void obs_metrics_register(void) {
    metrics_register(obs_fsm.transitions_metric, MT_COUNTER,
                     "ObservabilityPlatform phase changes, by from and to");
    metrics_register(M_DURATION, MT_HISTOGRAM, "Time of one ObservabilityPlatform reconcile");
    metrics_register("observability_platform_component_status", MT_GAUGE,
                     "1 for the state each component of each platform is in, 0 for the others");
    metrics_register(M_ERRORS, MT_COUNTER,
                     "ObservabilityPlatform errors, by category: transient, configuration, resource, component");
}

/* ---- small helpers ---- */

void obs_requeue(obs_ctx *x, int64_t ms) {
    if (ms < 0) return;
    if (x->requeue < 0 || ms < x->requeue) x->requeue = ms;
}

json_t *obs_sobj(obs_ctx *x, const char *key) {
    json_t *o = json_object_get(x->r.status, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(x->r.status, key, o);
        x->dirty = true;
    }
    return o;
}

void obs_sset(obs_ctx *x, json_t *o, const char *key, json_t *v) {
    json_t *old = json_object_get(o, key);
    if (old && json_equal(old, v)) {
        json_decref(v);
        return;
    }
    json_object_set_new(o, key, v);
    x->dirty = true;
}

json_t *obs_cstatus(obs_ctx *x, const char *comp) {
    json_t *arr = json_object_get(x->r.status, "components");
    if (!json_is_array(arr)) {
        arr = json_array();
        json_object_set_new(x->r.status, "components", arr);
        x->dirty = true;
    }
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) if (strcmp(jstr(c, "name", ""), comp) == 0) return c;
    /* Kept in install order, so status reads like the plan. */
    int mine = x->cat ? obs_catalog_order(x->cat, comp) : 0;
    size_t at = json_array_size(arr);
    json_array_foreach(arr, i, c) {
        if (x->cat && obs_catalog_order(x->cat, jstr(c, "name", "")) > mine) {
            at = i;
            break;
        }
    }
    c = json_pack("{s:s,s:s}", "name", comp, "state", "Pending");
    json_array_insert_new(arr, at, c);
    x->dirty = true;
    return c;
}

void obs_cstate_set(obs_ctx *x, const char *comp, int state, const char *error) {
    json_t *c = obs_cstatus(x, comp);
    obs_sset(x, c, "state", json_string(obs_cstate_names[state]));
    if (error) obs_sset(x, c, "lastError", json_string(error));
    else if (state == CS_READY && json_object_get(c, "lastError")) {
        json_object_del(c, "lastError");
        x->dirty = true;
    }
}

void obs_event(obs_ctx *x, const char *type, const char *reason, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    store_event ev = {.type = type, .reason = reason, .message = msg};
    serr e = {0};
    if (store_event_add(x->c->st, OBS_KIND, x->r.name, &ev, &e))
        log_warnx("platform %s: event %s not recorded: %s", x->r.name, reason, e.msg);
    log_info("platform %s: %s: %s", x->r.name, reason, msg);
}

int obs_phase(obs_ctx *x, int to, const char *reason, const char *message, serr *e) {
    int rc = phase_change(x->c, &obs_fsm, &x->r, to, reason, message, e);
    if (rc == 0) {
        x->dirty = false; /* phase_change wrote the whole status */
        obs_requeue(x, 0);
    }
    return rc;
}

/* Failed, with the error's category (seed 003), from any phase. */
int obs_fail(obs_ctx *x, const char *category, const char *comp, const char *fmt, ...) {
    char msg[SERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    str_vfmt_cut(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char labels[64];
    snprintf(labels, sizeof(labels), "category=\"%s\"", category);
    metrics_inc(M_ERRORS, labels, 1);
    json_t *rt = obs_sobj(x, "retry");
    obs_sset(x, rt, "category", json_string(category));
    obs_sset(x, rt, "lastError", json_string(msg));
    obs_sset(x, rt, "failedGeneration", json_integer(x->r.generation));
    obs_sset(x, rt, "failedMs", json_integer(wall_stamp_ms()));
    if (comp) obs_cstate_set(x, comp, CS_FAILED, msg);
    obs_event(x, "Warning", strcmp(category, CAT_CONFIG) == 0 ? "ConfigurationError" : "ComponentError", "%s",
              msg);
    int from = phase_of(&obs_fsm, &x->r);
    if (from == OP_FAILED) return 0;
    const char *reason = from == OP_PENDING     ? "ValidationError"
                         : from == OP_READY     ? "HealthCheckFailed"
                         : from == OP_UPGRADING ? "UpgradeError"
                                                : "DeploymentError";
    serr e = {0};
    int rc = obs_phase(x, OP_FAILED, reason, msg, &e);
    if (rc) log_warnx("platform %s: %s", x->r.name, e.msg);
    return rc;
}

static int find_job_state(obs_ctx *x, const char *jid) {
    uint64_t id = jid ? strtoull(jid, NULL, 10) : 0;
    if (id == 0 || x->c->jobs == NULL) return JOB_UNKNOWN;
    job_result r;
    int st = jobs_poll(x->c->jobs, id, &r);
    if (st == JOB_DONE) job_result_free(&r);
    return st;
}

/* The platform's one job at a time.  A job of another (what, comp) still
 * running is waited for (its result is not this caller's). */
int obs_work(obs_ctx *x, const char *what, const char *comp, obs_job *j, int *state, json_t **res,
             serr *e) {
    *res = NULL;
    json_t *w = json_object_get(x->r.status, "work");
    if (w && (strcmp(jstr(w, "what", ""), what) != 0 || strcmp(jstr(w, "component", ""), comp) != 0)) {
        int st = find_job_state(x, jstr(w, "job", NULL));
        if (st == JOB_QUEUED || st == JOB_RUNNING) {
            obs_job_free(j);
            *state = st;
            return 0;
        }
        w = NULL;
    }
    if (w == NULL) {
        w = json_pack("{s:s,s:s}", "what", what, "component", comp);
        json_object_set_new(x->r.status, "work", w);
        x->dirty = true;
    }
    char key[JOBS_KEY_MAX];
    if (snprintf(key, sizeof(key), "%s/%s/%s/%s", OBS_KIND, x->r.name, what, comp) >= (int)sizeof(key)) {
        obs_job_free(j);
        return serr_set(e, SE_TOOBIG, "job key too long");
    }
    bool changed = false;
    int rc = ctl_job(x->c, w, key, obs_job_run, j, obs_job_free, state, res, &changed, e);
    if (changed) x->dirty = true;
    if (*state == JOB_DONE) {
        json_object_del(x->r.status, "work");
        x->dirty = true;
    }
    return rc;
}

/* ---- ports and plans ---- */

static int port_free(int port, void *arg) {
    (void)arg;
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    serr e = {0};
    return tcp_addr_free(addr, "port", &e) == 0;
}

int obs_comp_index(const obs_ctx *x, const char *comp) {
    for (int i = 0; i < x->sp.n; i++)
        if (strcmp(x->sp.c[i].name, comp) == 0) return i;
    return -1;
}

/* Every enabled component's port: held, or leased when take. */
static int lease_ports(obs_ctx *x, bool take, serr *e) {
    for (int i = 0; i < x->sp.n; i++) {
        const obs_comp_spec *cs = &x->sp.c[i];
        x->ports[i] = 0;
        if (!cs->enabled) continue;
        char owner[RES_NAME_MAX + 64];
        snprintf(owner, sizeof(owner), "obs:%s/%s", x->r.name, cs->name);
        int held[2], n = 0, rc = store_ports_held(x->c->st, owner, held, 2, &n, e);
        if (rc) return rc;
        if (n == 1 && (cs->port == 0 || held[0] == cs->port)) {
            x->ports[i] = held[0];
            continue;
        }
        if (!take) continue;
        if (n > 0 && (rc = store_ports_release(x->c->st, owner, e))) return rc;
        int lo = cs->port ? cs->port : (int)x->c->cfg->port_lo, hi = cs->port ? cs->port : (int)x->c->cfg->port_hi;
        rc = store_ports_lease(x->c->st, owner, 1, lo, hi, port_free, NULL, &x->ports[i], e);
        if (rc && cs->port)
            return serr_set(e, SE_UNAVAIL, "spec.components[%s].port: %d is in use", cs->name, cs->port);
        if (rc) return rc;
    }
    return 0;
}


static int set_vars(obs_ctx *x, const obs_comp_spec *cs, const obs_cat_comp *cc, const char *version,
                    const obs_plan *p, obs_vars *v, serr *e) {
    memset(v, 0, sizeof(*v));
    v->cat = x->cat;
    char buf[512];
    int rc = 0;
    for (int i = 0; i < x->sp.n; i++) {
        const obs_comp_spec *o = &x->sp.c[i];
        int k = obs_catalog_order(x->cat, o->name);
        if (k >= 0 && k < OBS_MAX_COMP) v->enabled[k] = o->enabled;
        if (!o->enabled || x->ports[i] == 0) continue;
        char key[64];
        snprintf(key, sizeof(key), "port:%s", o->name);
        snprintf(buf, sizeof(buf), "%d", x->ports[i]);
        if ((rc = obs_vars_set(v, key, buf, e))) return rc;
    }
    snprintf(buf, sizeof(buf), "%d", p->port);
    if ((rc = obs_vars_set(v, "port", buf, e))) return rc;
    const char *ret = cs->retention[0] ? cs->retention : cc->default_retention;
    char sd[512], secrets[600];
    obs_sd_dir(x->c->cfg, sd, sizeof(sd));
    snprintf(secrets, sizeof(secrets), "%s/secrets", p->confdir);
    if ((rc = obs_vars_set(v, "data", p->datadir, e)) || (rc = obs_vars_set(v, "config", p->config_path, e)) ||
        (rc = obs_vars_set(v, "configdir", p->confdir, e)) || (rc = obs_vars_set(v, "log", p->logdir, e)) ||
        (rc = obs_vars_set(v, "retention", ret, e)) || (rc = obs_vars_set(v, "secrets", secrets, e)) ||
        (rc = obs_vars_set(v, "targets", sd, e)) || (rc = obs_vars_set(v, "stampd", x->c->cfg->listen, e)) ||
        (rc = obs_vars_set(v, "catalog", x->cat->dir, e)) || (rc = obs_vars_set(v, "name", cs->name, e)) ||
        (rc = obs_vars_set(v, "version", version, e)) || (rc = obs_vars_set(v, "platform", x->r.name, e)))
        return rc;
    return 0;
}

static void hash_files(const obs_plan *p, char out[65]) {
    sbuf b;
    sbuf_init(&b, 32u << 20);
    if (p->config) sbuf_adds(&b, p->config);
    for (int i = 0; i < p->nfiles; i++) {
        char *d = NULL;
        size_t n = 0;
        sbuf_addf(&b, "\n--%s--\n", p->files_to[i]);
        if (read_file(p->files_from[i], FILE_MAX, &d, &n, NULL) == 0) sbuf_add(&b, d, n);
        free(d);
    }
    for (int i = 0; i < p->nsecrets; i++) {
        char path[700], h[65];
        int64_t sz = 0;
        snprintf(path, sizeof(path), "%s/%s", p->secrets_dir, p->secrets[i]);
        if (sha256_file_hex(path, h, &sz, NULL) == 0) sbuf_addf(&b, "\n--secret %s %s--\n", p->secrets[i], h);
    }
    sha256_hex(b.data ? b.data : "", b.len, out);
    sbuf_free(&b);
}

static void secrets_dir(const stamp_config *cfg, char *buf, size_t len) {
    int n = cfg->secrets_dir[0] ? snprintf(buf, len, "%s", cfg->secrets_dir)
                                : snprintf(buf, len, "%s/secrets", config_state_dir(cfg));
    if (n < 0 || (size_t)n >= len) buf[0] = '\0'; /* data-dir is bounded well below: never */
}

/* Long: one component's whole rendering (paths, placeholders, argv, unit,
 * config, check, files, secrets) in one place. */
int obs_plan_make(obs_ctx *x, const obs_comp_spec *cs, const char *version, obs_plan *p, serr *e) {
    memset(p, 0, sizeof(*p));
    const obs_cat_comp *cc = x->cat ? obs_catalog_comp(x->cat, cs->name) : NULL;
    const char *ver = version && *version ? version : cs->version;
    const obs_cat_version *cv = cc ? obs_catalog_version(cc, ver) : NULL;
    if (cv == NULL) return serr_set(e, SE_INVAL, "%s %s is not in the catalog", cs->name, ver);
    int idx = obs_comp_index(x, cs->name);
    str_copy(p->comp, sizeof(p->comp), cs->name);
    str_copy(p->version, sizeof(p->version), ver);
    p->port = idx >= 0 ? x->ports[idx] : 0;
    if (snprintf(p->root, sizeof(p->root), "%s/%s", x->dir, cs->name) >= (int)sizeof(p->root))
        return serr_set(e, SE_TOOBIG, "data-dir too long for %s", cs->name);
    snprintf(p->confdir, sizeof(p->confdir), "%s/config", p->root);
    snprintf(p->datadir, sizeof(p->datadir), "%s/data", p->root);
    snprintf(p->logdir, sizeof(p->logdir), "%s/log", p->root);
    snprintf(p->log_path, sizeof(p->log_path), "%s/%s.log", p->logdir, cs->name);
    if (cv->config_file[0]) snprintf(p->config_path, sizeof(p->config_path), "%s/%s", p->confdir, cv->config_file);
    p->stores_data = cc->stores_data;
    str_copy(p->reload, sizeof(p->reload), cv->reload);
    str_copy(p->backup, sizeof(p->backup), cv->backup);
    if (cv->ready_path[0]) snprintf(p->ready_url, sizeof(p->ready_url), "http://127.0.0.1:%d%s", p->port, cv->ready_path);
    obs_vars *v = malloc(sizeof(*v));
    if (v == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int rc = set_vars(x, cs, cc, ver, p, v, e);
    if (rc == 0) rc = obs_render_argv(v, cv->binary, cv->args, &p->argv, e);
    if (rc == 0 && cv->config_file[0] && cv->config) {
        json_t *doc = NULL;
        if ((rc = obs_render_config(v, cv, cs->config, &doc, e)) == 0) {
            p->config = json_dumps(doc, JSON_INDENT(2));
            json_decref(doc);
            if (p->config == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
        }
    }
    if (rc == 0 && cv->check && p->config) {
        char cand[700];
        snprintf(cand, sizeof(cand), "%s.new", p->config_path);
        if ((rc = obs_vars_set(v, "config", cand, e)) == 0) {
            const json_t *rest = NULL;
            json_t *args = json_array();
            size_t i;
            json_t *a;
            json_array_foreach(cv->check, i, a) if (i > 0) json_array_append(args, a);
            rest = args;
            rc = obs_render_argv(v, json_string_value(json_array_get(cv->check, 0)), rest, &p->check, e);
            json_decref(args);
        }
    }
    free(v);
    size_t i;
    json_t *f;
    json_array_foreach(cv->files, i, f) {
        if (p->nfiles >= (int)(sizeof(p->files_to) / sizeof(p->files_to[0]))) break;
        str_copy(p->files_from[p->nfiles], sizeof(p->files_from[0]), jstr(f, "from", ""));
        str_copy(p->files_to[p->nfiles], sizeof(p->files_to[0]), jstr(f, "to", ""));
        p->nfiles++;
    }
    secrets_dir(x->c->cfg, p->secrets_dir, sizeof(p->secrets_dir));
    for (int k = 0; k < x->sp.nsecrets; k++) str_copy(p->secrets[k], sizeof(p->secrets[0]), x->sp.secrets[k]);
    p->nsecrets = x->sp.nsecrets;
    if (rc) {
        obs_plan_free(p);
        return rc;
    }
    /* The unit is named after what the process is started from. */
    sbuf b;
    sbuf_init(&b, 1u << 20);
    for (int k = 0; p->argv[k]; k++) sbuf_add(&b, p->argv[k], strlen(p->argv[k]) + 1);
    char h[65];
    sha256_hex(b.data ? b.data : "", b.len, h);
    sbuf_free(&b);
    snprintf(p->hash, sizeof(p->hash), "%.12s", h);
    snprintf(p->prefix, sizeof(p->prefix), "obs/%s/%s@", x->r.name, cs->name);
    if (snprintf(p->unit, sizeof(p->unit), "%s%s", p->prefix, p->hash) >= (int)sizeof(p->unit)) {
        obs_plan_free(p);
        return serr_set(e, SE_TOOBIG, "unit name too long");
    }
    hash_files(p, p->config_hash);
    return 0;
}

/* ---- Pending ---- */

static bool on_path(const char *tool) {
    const char *dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", dirs[i], tool);
        if (access(p, X_OK) == 0) return true;
    }
    return false;
}

/* What is missing, or "" when nothing is. */
static void prerequisites(obs_ctx *x, char *out, size_t len) {
    size_t n = 0;
    out[0] = '\0';
    int64_t want = 0;
    for (int i = 0; i < x->sp.n; i++) {
        const obs_comp_spec *cs = &x->sp.c[i];
        if (!cs->enabled) continue;
        want += cs->storage_bytes;
        const obs_cat_comp *cc = obs_catalog_comp(x->cat, cs->name);
        const obs_cat_version *cv = cc ? obs_catalog_version(cc, cs->version) : NULL;
        if (cv == NULL) continue;
        if (x->sp.exec) {
            if (cv->exec == NULL)
                n += str_fmt_cut(out + n, len - n, "%s%s %s: the catalog has no exec commands for it", n ? "; " : "",
                                 cs->name, cs->version);
            continue;
        }
        if (access(cv->binary, X_OK) != 0)
            n += str_fmt_cut(out + n, len - n, "%s%s %s: %s is not installed%s%s", n ? "; " : "", cs->name,
                             cs->version, cv->binary, cc->missing_hint[0] ? " (" : "", cc->missing_hint);
        if (access(cv->binary, X_OK) != 0 && cc->missing_hint[0]) n += str_fmt_cut(out + n, len - n, ")");
        const char *chk = json_string_value(json_array_get(cv->check, 0));
        if (chk && strcmp(chk, cv->binary) != 0 && access(chk, X_OK) != 0)
            n += str_fmt_cut(out + n, len - n, "%s%s: its configuration checker %s is not installed",
                             n ? "; " : "", cs->name, chk);
    }
    size_t i;
    json_t *t;
    if (x->sp.exec)
        json_array_foreach(x->cat->exec_tools, i, t) if (!on_path(json_string_value(t))) n +=
            str_fmt_cut(out + n, len - n, "%sthe exec runtime needs %s on PATH", n ? "; " : "",
                        json_string_value(t));
    char sdir[512];
    secrets_dir(x->c->cfg, sdir, sizeof(sdir));
    for (int k = 0; k < x->sp.nsecrets; k++) {
        char p[640];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", sdir, x->sp.secrets[k]);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || access(p, R_OK) != 0)
            n += str_fmt_cut(out + n, len - n, "%ssecret %s: no readable file %s", n ? "; " : "", x->sp.secrets[k],
                             p);
    }
    struct statvfs fs;
    if (want > 0 && statvfs(config_state_dir(x->c->cfg), &fs) == 0) {
        int64_t avail = (int64_t)fs.f_bavail * (int64_t)fs.f_frsize;
        if (avail < want)
            n += str_fmt_cut(out + n, len - n, "%sstorage: %lld bytes asked, %lld free under %s", n ? "; " : "",
                             (long long)want, (long long)avail, config_state_dir(x->c->cfg));
    }
    if (n == 0) {
        serr e = {0};
        if (lease_ports(x, true, &e)) str_fmt_cut(out, len, "ports: %s", e.msg);
    }
}

static int pending(obs_ctx *x, serr *e) {
    if (!x->spec_ok) return obs_fail(x, CAT_CONFIG, NULL, "%s", x->spec_err.msg);
    char missing[1024];
    prerequisites(x, missing, sizeof(missing));
    if (missing[0]) {
        json_t *old = json_object_get(x->r.status, "prerequisites");
        if (!json_is_string(old) || strcmp(json_string_value(old), missing) != 0) {
            obs_event(x, "Warning", "PrerequisitesMissing", "%s", missing);
            json_object_set_new(x->r.status, "prerequisites", json_string(missing));
            json_object_set_new(x->r.status, "message", json_string(missing));
            x->dirty = true;
        }
        obs_requeue(x, x->c->cfg->obs_pending_requeue_ms);
        return 0;
    }
    if (json_object_get(x->r.status, "prerequisites")) {
        json_object_del(x->r.status, "prerequisites");
        x->dirty = true;
    }
    for (int i = 0; i < x->sp.n; i++)
        if (x->sp.c[i].enabled) obs_cstate_set(x, x->sp.c[i].name, CS_PENDING, NULL);
    return obs_phase(x, OP_INSTALLING, "Validated", "prerequisites present", e);
}

/* Stops every unit below prefix as the platform's job "uninstall" of comp:
 * 0 with *done, or an error. */
static int stop_units(obs_ctx *x, const char *comp, const char *prefix, bool *done, serr *e) {
    *done = false;
    obs_job *j = obs_job_new(OJ_STOP, x->c);
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    str_copy(j->p[0].comp, sizeof(j->p[0].comp), comp);
    if (!str_copy(j->p[0].prefix, sizeof(j->p[0].prefix), prefix)) {
        obs_job_free(j);
        return serr_set(e, SE_TOOBIG, "unit prefix too long");
    }
    int state;
    json_t *res = NULL;
    int rc = obs_work(x, "uninstall", comp, j, &state, &res, e);
    json_decref(res);
    *done = rc == 0 && state == JOB_DONE;
    return rc;
}

/* ---- components no longer enabled ---- */

/* Uninstalls, one at a time in reverse install order, the components in
 * status that the spec no longer enables.  1 while working. */
static int remove_disabled(obs_ctx *x, serr *e) {
    json_t *arr = json_object_get(x->r.status, "components");
    for (ssize_t i = (ssize_t)json_array_size(arr) - 1; i >= 0; i--) {
        json_t *c = json_array_get(arr, (size_t)i);
        const char *name = jstr(c, "name", "");
        int k = obs_comp_index(x, name);
        if (k >= 0 && x->sp.c[k].enabled) continue;
        if (!json_object_get(c, "unit") && !json_object_get(x->r.status, "work")) {
            /* Never started: nothing to uninstall. */
            json_array_remove(arr, (size_t)i);
            x->dirty = true;
            continue;
        }
        char prefix[RT_UNIT_MAX];
        bool done;
        snprintf(prefix, sizeof(prefix), "obs/%s/%s@", x->r.name, name);
        int rc = stop_units(x, name, prefix, &done, e);
        if (rc) return rc;
        if (!done) return 1;
        char owner[RES_NAME_MAX + 64], dir[700];
        snprintf(owner, sizeof(owner), "obs:%s/%s", x->r.name, name);
        store_ports_release(x->c->st, owner, NULL);
        snprintf(dir, sizeof(dir), "%s/%s", x->dir, name);
        if (!x->sp.keep_volumes) remove_tree(dir, NULL);
        obs_event(x, "Normal", "ComponentUninstalled", "%s stopped: no longer enabled in the spec%s", name,
                  x->sp.keep_volumes ? " (its volume kept: keepVolumes)" : "");
        json_array_remove(arr, (size_t)i);
        x->dirty = true;
        obs_requeue(x, 0);
        return 1;
    }
    return 0;
}

/* ---- ENSURE of one component, shared by Installing, Ready and Upgrading ---- */

/* Runs the plan of component k at version (NULL: the one installed, else
 * the spec's).  EN_DONE with *how: "started", "restarted", "reloaded" or
 * "adopted"; EN_WAIT (requeued); EN_FAILED with the error in e (SE_INVAL:
 * the configuration was rejected; the running one is kept); or a negative
 * code for the engine (the job pool is full or stopping). */
int obs_ensure(obs_ctx *x, int k, const char *version, const char *what, bool restart, bool keep_config,
               const char **how, serr *e) {
    const obs_comp_spec *cs = &x->sp.c[k];
    json_t *st = obs_cstatus(x, cs->name);
    const char *ver = version ? version : jstr(st, "version", cs->version);
    char verbuf[OBS_VERSION_MAX];
    str_copy(verbuf, sizeof(verbuf), ver);
    ver = verbuf;
    obs_job *j = obs_job_new(OJ_ENSURE, x->c);
    if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    j->restart = restart;
    j->keep_config = keep_config;
    int rc = obs_plan_make(x, cs, ver, &j->p[0], e);
    if (rc) {
        obs_job_free(j);
        e->code = SE_INVAL;
        return EN_FAILED;
    }
    char unit[RT_UNIT_MAX], hash[65];
    str_copy(unit, sizeof(unit), j->p[0].unit);
    str_copy(hash, sizeof(hash), j->p[0].config_hash);
    int port = j->p[0].port;
    if (!json_object_get(st, "since")) obs_sset(x, st, "since", json_integer(wall_stamp_ms()));
    int state;
    json_t *res = NULL;
    rc = obs_work(x, what, cs->name, j, &state, &res, e);
    if (rc == SE_NOMEM || rc == SE_LIMIT) return rc; /* the pool: the engine retries */
    if (rc) {
        json_object_del(st, "since");
        e->code = rc;
        return EN_FAILED;
    }
    if (state != JOB_DONE) {
        obs_requeue(x, 1000);
        return EN_WAIT;
    }
    bool ready = json_is_true(json_object_get(res, "ready"));
    obs_sset(x, st, "pid", json_integer(json_integer_value(json_object_get(res, "pid"))));
    obs_sset(x, st, "unit", json_string(unit));
    obs_sset(x, st, "port", json_integer(port));
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", port);
    obs_sset(x, st, "endpoint", json_string(ep));
    obs_sset(x, st, "version", json_string(ver));
    obs_sset(x, st, "enabled", json_true());
    if (*jstr(res, "configHash", "")) obs_sset(x, st, "configHash", json_string(hash));
    else if (keep_config) obs_sset(x, st, "configHash", json_string("restored"));
    bool started = json_is_true(json_object_get(res, "started"));
    bool reloaded = json_is_true(json_object_get(res, "reloaded"));
    if (started) obs_sset(x, st, "startedMs", json_integer(now_ms()));
    if (!ready) {
        int64_t since = json_integer_value(json_object_get(st, "since"));
        int64_t limit = x->c->cfg->update_replica_timeout_ms;
        if (since > 0 && wall_age_ms(since) > limit) {
            json_object_del(st, "since");
            serr_set(e, SE_TIMEOUT, "%s %s not ready within %lld s: %s", cs->name, ver, (long long)(limit / 1000),
                     jstr(res, "error", ""));
            json_decref(res);
            return EN_FAILED;
        }
        obs_cstate_set(x, cs->name, restart ? CS_UPGRADING : CS_INSTALLING, NULL);
        json_decref(res);
        int64_t rq = x->c->cfg->obs_install_requeue_ms;
        obs_requeue(x, rq < 1000 ? rq : 1000);
        return EN_WAIT;
    }
    json_object_del(st, "since");
    obs_cstate_set(x, cs->name, CS_READY, NULL);
    obs_sset(x, st, "readySince", json_integer(now_ms()));
    obs_sset(x, st, "probeFailures", json_integer(0));
    *how = started ? (restart ? "restarted" : "started") : reloaded ? "reloaded" : "adopted";
    json_decref(res);
    return EN_DONE;
}

/* EN_FAILED of obs_ensure: Failed with its category.  A rejected
 * configuration leaves the component running what it had (the last known
 * good): the component is not marked Failed then. */
static int ensure_failed(obs_ctx *x, const char *comp, serr *e) {
    char msg[SERR_MSG_MAX];
    str_copy(msg, sizeof(msg), e->msg);
    bool conf = e->code == SE_INVAL;
    serr_clear(e);
    if (conf) {
        obs_sset(x, obs_cstatus(x, comp), "lastError", json_string(msg));
        return obs_fail(x, CAT_CONFIG, NULL, "%s", msg);
    }
    return obs_fail(x, CAT_COMPONENT, comp, "%s", msg);
}

/* ---- Installing ---- */

void obs_record_good(obs_ctx *x) {
    json_t *g = json_pack("{s:I,s:{},s:{}}", "generation", (json_int_t)x->r.generation, "versions", "configHashes");
    json_t *arr = json_object_get(x->r.status, "components");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) {
        json_object_set(json_object_get(g, "versions"), jstr(c, "name", ""), json_object_get(c, "version"));
        json_t *h = json_object_get(c, "configHash");
        if (h) json_object_set(json_object_get(g, "configHashes"), jstr(c, "name", ""), h);
    }
    obs_sset(x, x->r.status, "lastGood", g);
}

static int installing(obs_ctx *x, serr *e) {
    if (!x->spec_ok) return obs_fail(x, CAT_CONFIG, NULL, "%s", x->spec_err.msg);
    int rc = lease_ports(x, true, e);
    if (rc) return obs_fail(x, CAT_RESOURCE, NULL, "%s", e->msg);
    if ((rc = remove_disabled(x, e)) != 0) return rc < 0 ? rc : 0;
    /* One ENSURE per component per pass through Installing. */
    json_t *pass = obs_sobj(x, "install");
    int64_t since = json_integer_value(json_object_get(x->r.status, "phaseSince"));
    if (json_integer_value(json_object_get(pass, "pass")) != since) {
        json_object_clear(pass);
        json_object_set_new(pass, "pass", json_integer(since));
        json_object_set_new(pass, "done", json_array());
        x->dirty = true;
    }
    json_t *done = json_object_get(pass, "done");
    int total = 0, ready = 0;
    for (int k = 0; k < x->sp.n; k++) total += x->sp.c[k].enabled;
    for (int k = 0; k < x->sp.n; k++) {
        const obs_comp_spec *cs = &x->sp.c[k];
        if (!cs->enabled) continue;
        bool is_done = false;
        size_t i;
        json_t *d;
        json_array_foreach(done, i, d) if (strcmp(json_string_value(d), cs->name) == 0) is_done = true;
        if (is_done) {
            ready++;
            continue;
        }
        const char *how = "";
        obs_cstate_set(x, cs->name, CS_INSTALLING, NULL);
        rc = obs_ensure(x, k, NULL, "install", false, false, &how, e);
        if (rc < 0) return rc;
        if (rc == EN_FAILED) return ensure_failed(x, cs->name, e);
        if (rc != EN_DONE) return 0;
        json_t *st = obs_cstatus(x, cs->name);
        json_array_append_new(done, json_string(cs->name));
        x->dirty = true;
        obs_event(x, "Normal", strcmp(how, "adopted") == 0 ? "ComponentReady" : "ComponentInstalled",
                  "%s %s %s on %s (pid %lld), %d of %d", cs->name, jstr(st, "version", ""),
                  strcmp(how, "adopted") == 0 ? "running and ready" : "installed and ready", jstr(st, "endpoint", ""),
                  (long long)json_integer_value(json_object_get(st, "pid")), ready + 1, total);
        ready++;
        obs_requeue(x, 0);
        return 0; /* the next component on the next reconcile: progress saved */
    }
    json_object_del(x->r.status, "install");
    obs_record_good(x);
    char msg[64];
    snprintf(msg, sizeof(msg), "%d components ready", total);
    return obs_phase(x, OP_READY, "AllComponentsReady", msg, e);
}

/* ---- Ready: health ---- */

/* When each Ready platform was probed last (in memory: a restart probes
 * at once, and nothing is written to the store unless health changes). */
#define PROBE_SLOTS 64
typedef struct probe_slot {
    char name[RES_NAME_MAX];
    int64_t next;      /* when to probe again (epoch ms) */
    int64_t submitted; /* when the job in flight was asked for */
    uint64_t job;
} probe_slot;
static probe_slot probes[PROBE_SLOTS];
static pthread_mutex_t probes_mu = PTHREAD_MUTEX_INITIALIZER;

/* The slot of a platform (probes_mu held); past PROBE_SLOTS platforms the
 * one probed longest ago gives its slot up (it probes at its next
 * reconcile). */
static probe_slot *slot_of(const char *name) {
    probe_slot *free_at = NULL, *oldest = &probes[0];
    for (int i = 0; i < PROBE_SLOTS; i++) {
        if (strcmp(probes[i].name, name) == 0) return &probes[i];
        if (free_at == NULL && probes[i].name[0] == '\0') free_at = &probes[i];
        if (probes[i].next < oldest->next) oldest = &probes[i];
    }
    probe_slot *p = free_at ? free_at : oldest;
    memset(p, 0, sizeof(*p));
    str_copy(p->name, sizeof(p->name), name);
    return p;
}

static void probe_forget(const char *name) {
    pthread_mutex_lock(&probes_mu);
    for (int i = 0; i < PROBE_SLOTS; i++)
        if (strcmp(probes[i].name, name) == 0) memset(&probes[i], 0, sizeof(probes[i]));
    pthread_mutex_unlock(&probes_mu);
}

/* Long: the probe's job (submit, poll) and what its answer means, per
 * component, in one place. */
static int health(obs_ctx *x, serr *e) {
    int64_t interval = x->c->cfg->obs_health_interval_ms;
    pthread_mutex_lock(&probes_mu);
    probe_slot *sl = slot_of(x->r.name);
    uint64_t id = sl->job;
    int64_t due = sl->next, asked = sl->submitted;
    pthread_mutex_unlock(&probes_mu);
    json_t *res = NULL;
    obs_requeue(x, interval);
    if (id != 0 && x->c->jobs) {
        job_result r;
        int st = jobs_poll(x->c->jobs, id, &r);
        if (st == JOB_QUEUED || st == JOB_RUNNING) return 0;
        if (st == JOB_DONE) {
            if (r.rc == 0) {
                res = r.result;
                r.result = NULL;
            }
            job_result_free(&r);
        }
        pthread_mutex_lock(&probes_mu);
        sl = slot_of(x->r.name);
        sl->next = mono_ms() + interval; /* a schedule in memory: monotonic */
        sl->job = 0;
        pthread_mutex_unlock(&probes_mu);
    } else if (mono_ms() >= due && x->c->jobs) {
        obs_job *j = obs_job_new(OJ_PROBE, x->c);
        if (j == NULL) return serr_set(e, SE_NOMEM, "out of memory");
        for (int k = 0; k < x->sp.n && j->n < OBS_MAX_COMP; k++) {
            const obs_comp_spec *cs = &x->sp.c[k];
            if (!cs->enabled) continue;
            json_t *st = obs_cstatus(x, cs->name);
            if (obs_plan_make(x, cs, jstr(st, "version", cs->version), &j->p[j->n], e) != 0) {
                serr_clear(e);
                continue;
            }
            j->n++;
        }
        char key[JOBS_KEY_MAX];
        snprintf(key, sizeof(key), "%s/%s/probe", OBS_KIND, x->r.name);
        int64_t now = now_ms();
        int rc = jobs_submit(x->c->jobs, key, obs_job_run, j, obs_job_free, ctl_job_wake, x->c, &id, e);
        if (rc) return rc;
        pthread_mutex_lock(&probes_mu);
        sl = slot_of(x->r.name);
        sl->next = mono_ms() + interval;
        sl->job = id;
        sl->submitted = now;
        pthread_mutex_unlock(&probes_mu);
        return 0;
    }
    if (res == NULL) return 0;
    const char *key;
    json_t *v;
    json_object_foreach(res, key, v) {
        json_t *st = obs_cstatus(x, key);
        /* An answer about another process than the one in status now (a
         * restart or an upgrade since it was asked) says nothing. */
        if (strcmp(jstr(v, "unit", ""), jstr(st, "unit", "")) != 0 ||
            json_integer_value(json_object_get(st, "startedMs")) >= asked)
            continue;
        if (!json_is_true(json_object_get(v, "alive"))) {
            char msg[RT_UNIT_MAX + 400];
            char comp[OBS_NAME_MAX];
            str_fmt_cut(msg, sizeof(msg), "%s: %s", key, jstr(v, "error", "not running"));
            str_copy(comp, sizeof(comp), key);
            json_decref(res); /* key was res's */
            return obs_fail(x, CAT_COMPONENT, comp, "%s", msg);
        }
        int64_t fails = json_integer_value(json_object_get(st, "probeFailures"));
        if (json_is_true(json_object_get(v, "ready"))) {
            if (fails) obs_sset(x, st, "probeFailures", json_integer(0));
            continue;
        }
        obs_sset(x, st, "probeFailures", json_integer(fails + 1));
        if (fails + 1 >= PROBE_FAILURES_MAX) {
            char msg[RT_UNIT_MAX + 400];
            char comp[OBS_NAME_MAX];
            str_fmt_cut(msg, sizeof(msg), "%s: not ready %d times in a row: %s", key, PROBE_FAILURES_MAX,
                        jstr(v, "error", ""));
            str_copy(comp, sizeof(comp), key);
            json_decref(res);
            return obs_fail(x, CAT_COMPONENT, comp, "%s", msg);
        }
    }
    json_decref(res);
    /* Stable for as long as the longest retry delay: the automatic
     * recoveries are given back. */
    json_t *rt = json_object_get(x->r.status, "retry");
    if (rt && wall_age_ms(json_integer_value(json_object_get(x->r.status, "phaseSince"))) > x->sp.retry.max_ms) {
        json_object_del(x->r.status, "retry");
        x->dirty = true;
    }
    return 0;
}

/* ---- Ready ---- */

static int ready_phase(obs_ctx *x, serr *e) {
    if (!x->spec_ok) return obs_fail(x, CAT_CONFIG, NULL, "%s", x->spec_err.msg);
    if (obs_upgrade_wanted(x)) return obs_phase(x, OP_UPGRADING, "VersionChange", "", e);
    int rc = lease_ports(x, true, e);
    if (rc) return obs_fail(x, CAT_RESOURCE, NULL, "%s", e->msg);
    if ((rc = remove_disabled(x, e)) != 0) {
        if (rc == 1 && !json_object_get(x->r.status, "work")) return obs_phase(x, OP_READY, "MinorUpdate", "a component was removed", e);
        return rc < 0 ? rc : 0;
    }
    /* A component whose plan changed (new config: reload; new flags:
     * restart) or newly enabled: one at a time, in install order. */
    for (int k = 0; k < x->sp.n; k++) {
        const obs_comp_spec *cs = &x->sp.c[k];
        if (!cs->enabled) continue;
        json_t *st = obs_cstatus(x, cs->name);
        obs_plan *p = malloc(sizeof(*p));
        if (p == NULL) return serr_set(e, SE_NOMEM, "out of memory");
        if (obs_plan_make(x, cs, jstr(st, "version", cs->version), p, e) != 0) {
            free(p);
            char m[SERR_MSG_MAX];
            str_copy(m, sizeof(m), e->msg);
            serr_clear(e);
            return obs_fail(x, CAT_CONFIG, cs->name, "%s", m);
        }
        bool fresh = !json_object_get(st, "unit");
        bool flags = !fresh && strcmp(jstr(st, "unit", ""), p->unit) != 0;
        bool conf = !fresh && strcmp(jstr(st, "configHash", ""), p->config_hash) != 0;
        obs_plan_free(p);
        free(p);
        if (!fresh && !flags && !conf) continue;
        const char *how = "";
        rc = obs_ensure(x, k, NULL, "update", flags, false, &how, e);
        if (rc < 0) return rc;
        if (rc == EN_FAILED) return ensure_failed(x, cs->name, e);
        if (rc != EN_DONE) return 0;
        json_t *s2 = obs_cstatus(x, cs->name);
        char msg[300];
        if (fresh) snprintf(msg, sizeof(msg), "%s %s installed", cs->name, jstr(s2, "version", ""));
        else if (strcmp(how, "reloaded") == 0)
            snprintf(msg, sizeof(msg), "%s: configuration reloaded in place (same pid %lld)", cs->name,
                     (long long)json_integer_value(json_object_get(s2, "pid")));
        else snprintf(msg, sizeof(msg), "%s restarted with its new settings (pid %lld)", cs->name,
                      (long long)json_integer_value(json_object_get(s2, "pid")));
        obs_event(x, "Normal", fresh ? "ComponentInstalled" : strcmp(how, "reloaded") == 0 ? "ComponentReloaded" : "ComponentRestarted", "%s", msg);
        obs_record_good(x);
        return obs_phase(x, OP_READY, "MinorUpdate", msg, e);
    }
    return health(x, e);
}

/* ---- Failed ---- */

static int64_t backoff_ms(const obs_retry *r, int attempts) {
    double d = (double)r->initial_ms;
    for (int i = 0; i < attempts && d < (double)r->max_ms; i++) d *= r->factor;
    return d > (double)r->max_ms ? r->max_ms : (int64_t)d;
}

static int failed(obs_ctx *x, serr *e) {
    json_t *rt = obs_sobj(x, "retry");
    int64_t fgen = json_integer_value(json_object_get(rt, "failedGeneration"));
    if (fgen != 0 && fgen != x->r.generation) {
        json_object_del(x->r.status, "retry");
        x->dirty = true;
        return obs_phase(x, OP_INSTALLING, "SpecChanged", "the spec changed", e);
    }
    if (!x->spec_ok) return 0; /* a change of the spec is what helps */
    const char *cat = jstr(rt, "category", CAT_TRANSIENT);
    bool wait_spec = strcmp(cat, CAT_CONFIG) == 0 || json_is_true(json_object_get(rt, "waitForSpec"));
    if (wait_spec) {
        obs_sset(x, rt, "nextAt", json_null());
        return 0;
    }
    int attempts = (int)json_integer_value(json_object_get(rt, "attempts"));
    if (attempts >= x->sp.retry.max_retries) {
        if (!json_is_true(json_object_get(rt, "exhausted"))) {
            obs_sset(x, rt, "exhausted", json_true());
            obs_event(x, "Warning", "RetriesExhausted",
                      "%d automatic recoveries failed; waiting for a change of the spec or a resume", attempts);
        }
        return 0;
    }
    int64_t left = backoff_ms(&x->sp.retry, attempts) - wall_age_ms(json_integer_value(json_object_get(rt, "failedMs")));
    if (left > 0) {
        char when[40];
        obs_sset(x, rt, "nextAt", json_string(fmt_time_rfc3339_ms(now_ms() + left, when, sizeof(when))));
        obs_requeue(x, left);
        return 0;
    }
    obs_sset(x, rt, "attempts", json_integer(attempts + 1));
    obs_event(x, "Normal", "RecoveryAttempt", "automatic recovery %d of %d after: %s", attempts + 1,
              x->sp.retry.max_retries, jstr(rt, "lastError", ""));
    return obs_phase(x, OP_INSTALLING, "RetryFix", "automatic recovery", e);
}

/* ---- deletion ---- */

static bool has_finalizer(const resource *r) {
    size_t i;
    json_t *f;
    json_array_foreach(r->finalizers, i, f) if (strcmp(json_string_value(f), OBS_FINALIZER) == 0) return true;
    return false;
}

/* Long: the finalizer's steps (wait for the job in flight, stop each
 * component in reverse order, sweep the prefix, ports, volumes, the
 * finalizer, the record) in the order they must happen. */
static int finalize(obs_ctx *x, serr *e) {
    if (has_finalizer(&x->r)) {
        json_t *w = json_object_get(x->r.status, "work");
        const char *what = jstr(w, "what", "");
        if (w && strcmp(what, "uninstall") != 0) {
            int st = find_job_state(x, jstr(w, "job", NULL));
            if (st == JOB_QUEUED || st == JOB_RUNNING) {
                obs_requeue(x, 500);
                return 0;
            }
            json_object_del(x->r.status, "work");
            x->dirty = true;
        }
        /* Every component in status, whatever the spec says now, in
         * reverse install order. */
        json_t *arr = json_object_get(x->r.status, "components");
        for (ssize_t i = (ssize_t)json_array_size(arr) - 1; i >= 0; i--) {
            json_t *c = json_array_get(arr, (size_t)i);
            if (json_is_true(json_object_get(c, "uninstalled"))) continue;
            const char *name = jstr(c, "name", "");
            char prefix[RT_UNIT_MAX];
            bool done;
            snprintf(prefix, sizeof(prefix), "obs/%s/%s@", x->r.name, name);
            int rc = stop_units(x, name, prefix, &done, e);
            if (rc) return rc;
            if (!done) {
                obs_requeue(x, 500);
                return 0;
            }
            obs_sset(x, c, "uninstalled", json_true());
            obs_sset(x, c, "state", json_string("Pending"));
            obs_event(x, "Normal", "ComponentUninstalled", "%s stopped (uninstall in reverse install order)", name);
            obs_requeue(x, 0);
            return 0;
        }
        /* Anything of the platform still running (a component started by
         * a job whose record a crash lost): stopped too. */
        json_t *w2 = json_object_get(x->r.status, "work");
        if (!json_is_true(json_object_get(x->r.status, "sweptAll")) || w2) {
            char prefix[RT_UNIT_MAX];
            bool done;
            snprintf(prefix, sizeof(prefix), "obs/%s/", x->r.name);
            int rc = stop_units(x, "*", prefix, &done, e);
            if (rc) return rc;
            if (!done) {
                obs_requeue(x, 500);
                return 0;
            }
            json_object_set_new(x->r.status, "sweptAll", json_true());
            x->dirty = true;
        }
        char owner[RES_NAME_MAX + 16];
        snprintf(owner, sizeof(owner), "obs:%s", x->r.name);
        int rc = store_ports_release(x->c->st, owner, e);
        if (rc) return rc;
        if (!x->sp.keep_volumes) {
            if ((rc = remove_tree(x->dir, e))) return rc;
            obs_event(x, "Normal", "VolumesRemoved", "%s removed", x->dir);
        } else {
            obs_event(x, "Normal", "VolumesKept", "%s kept (spec.keepVolumes)", x->dir);
        }
        json_t *keep = json_array();
        size_t i;
        json_t *f;
        json_array_foreach(x->r.finalizers, i, f) if (strcmp(json_string_value(f), OBS_FINALIZER) != 0)
            json_array_append(keep, f);
        json_decref(x->r.finalizers);
        x->r.finalizers = keep;
        store_event ev = {.type = "Normal", .reason = "FinalizerRemoved", .message = "every component uninstalled"};
        if ((rc = store_update(x->c->st, &x->r, &ev, e))) return rc;
        x->dirty = false;
    }
    if (json_array_size(x->r.finalizers) > 0) return 0; /* someone else's */
    int rc = store_delete(x->c->st, OBS_KIND, x->r.name, x->r.resource_version, e);
    if (rc == SE_NOTFOUND) rc = 0;
    if (rc == 0) {
        log_info("platform %s: deleted", x->r.name);
        obs_component_gauge(x->r.name, json_object_get(x->r.status, "components"), true);
        probe_forget(x->r.name);
        x->dirty = false;
    }
    return rc;
}

/* ---- the reconcile ---- */

static int dispatch(obs_ctx *x, serr *e) {
    int phase = phase_of(&obs_fsm, &x->r);
    if (phase < 0) {
        phase_init(&obs_fsm, &x->r, OP_PENDING);
        json_object_set_new(x->r.status, "message", json_string("created"));
        x->dirty = true;
        obs_event(x, "Normal", "Created", "platform created (Pending)");
        phase = OP_PENDING;
    }
    if (x->cat == NULL && phase == OP_PENDING) {
        obs_sset(x, x->r.status, "message", json_string("no component catalog is loaded (see stampd's log and the observability-catalog key)"));
        obs_requeue(x, x->c->cfg->obs_pending_requeue_ms);
        return 0;
    }
    /* Every handler renders with the ports held (Pending and Installing
     * lease the missing ones). */
    if (x->spec_ok && phase != OP_PENDING && lease_ports(x, false, e)) return e->code;
    switch (phase) {
    case OP_PENDING:
        return pending(x, e);
    case OP_INSTALLING:
        return installing(x, e);
    case OP_READY:
        return ready_phase(x, e);
    case OP_FAILED:
        return failed(x, e);
    case OP_UPGRADING:
        return obs_upgrading(x, e);
    default:
        return serr_set(e, SE_INTERNAL, "unknown phase");
    }
}

/* Long: seed 003's reconcile order, step by step, in one place. */
int obs_reconcile(ctl_ctx *c, const char *name, int64_t *requeue_ms, serr *e) {
    int64_t t0 = mono_ms();
    *requeue_ms = CTL_DONE;
    obs_ctx *x = calloc(1, sizeof(*x));
    if (x == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    x->c = c;
    x->requeue = CTL_DONE;
    resource_init(&x->r);
    int rc = store_get(c->st, OBS_KIND, name, &x->r, e);
    if (rc == SE_NOTFOUND) {
        serr_clear(e);
        probe_forget(name);
        resource_free(&x->r);
        free(x);
        return 0;
    }
    if (rc) goto out;
    x->cat = obs_get_catalog();
    if (snprintf(x->dir, sizeof(x->dir), "%s/observability/%s", config_state_dir(c->cfg), x->r.name) >= (int)sizeof(x->dir)) {
        rc = serr_set(e, SE_TOOBIG, "data-dir too long for platform %s", x->r.name);
        goto out;
    }
    x->spec_ok = obs_spec_parse(x->r.spec, x->cat, &x->sp, &x->spec_err) == 0;
    if (!x->spec_ok) x->sp.retry = (obs_retry){5, 10000, 300000, 2.0};
    if (x->r.deletion_ms > 0) {
        rc = finalize(x, e);
        if (rc == 0 && x->dirty) rc = store_update(c->st, &x->r, NULL, e);
        goto out;
    }
    if (!has_finalizer(&x->r)) {
        json_array_append_new(x->r.finalizers, json_string(OBS_FINALIZER));
        store_event ev = {.type = "Normal", .reason = "FinalizerAdded", .message = OBS_FINALIZER};
        rc = store_update(c->st, &x->r, &ev, e);
        if (rc == 0) x->requeue = 0;
        goto out;
    }
    bool paused = json_is_true(json_object_get(x->r.spec, "paused"));
    json_t *was = json_object_get(x->r.status, "paused");
    if (paused) {
        if (!json_is_true(was)) {
            json_object_set_new(x->r.status, "paused", json_true());
            x->dirty = true;
            obs_event(x, "Normal", "Paused", "spec.paused: nothing is reconciled until it is resumed");
        }
    } else {
        if (json_is_true(was)) {
            json_object_set_new(x->r.status, "paused", json_false());
            x->dirty = true;
            /* A resume gives the automatic recoveries back. */
            json_t *rt = json_object_get(x->r.status, "retry");
            if (rt) {
                json_object_set_new(rt, "attempts", json_integer(0));
                json_object_del(rt, "exhausted");
                json_object_set_new(rt, "failedMs", json_integer(0));
            }
            obs_event(x, "Normal", "Resumed", "reconciling again");
        }
        rc = dispatch(x, e);
    }
    if (rc == 0) obs_conditions(x);
    if (rc == 0 && x->dirty) {
        json_object_set_new(x->r.status, "observedGeneration", json_integer(x->r.generation));
        rc = store_update(c->st, &x->r, NULL, e);
    }
    if (rc == 0) obs_component_gauge(x->r.name, json_object_get(x->r.status, "components"), false);
out:
    *requeue_ms = rc == 0 ? x->requeue : CTL_DONE;
    metrics_observe(M_DURATION, "", (double)(mono_ms() - t0) / 1000.0);
    if (rc && rc != SE_CONFLICT) {
        char labels[64];
        snprintf(labels, sizeof(labels), "category=\"%s\"", CAT_TRANSIENT);
        metrics_inc(M_ERRORS, labels, 1);
    }
    resource_free(&x->r);
    free(x);
    return rc;
}

int obs_prometheus_url(ctl_ctx *c, const char *setting, char *buf, size_t len, serr *e) {
    if (strncmp(setting, "platform:", 9) != 0) {
        if (!str_copy(buf, len, setting)) return serr_set(e, SE_TOOBIG, "prometheus-url too long");
        return 0;
    }
    const char *name = setting + 9;
    resource r;
    resource_init(&r);
    int rc = store_get(c->st, OBS_KIND, name, &r, e);
    if (rc == SE_NOTFOUND) rc = serr_set(e, SE_NOTFOUND, "no ObservabilityPlatform %s (prometheus-url)", name);
    const json_t *p = NULL, *o;
    size_t i;
    json_array_foreach(json_object_get(r.status, "components"), i, o) if (strcmp(jstr(o, "name", ""), "prometheus") == 0) p = o;
    if (rc == 0 && p == NULL) rc = serr_set(e, SE_UNAVAIL, "platform %s has no prometheus", name);
    if (rc == 0 && strcmp(jstr(p, "state", ""), "Ready") != 0)
        rc = serr_set(e, SE_UNAVAIL, "platform %s: its prometheus is %s", name, jstr(p, "state", "not installed"));
    if (rc == 0 && !str_copy(buf, len, jstr(p, "endpoint", ""))) rc = serr_set(e, SE_TOOBIG, "endpoint too long");
    resource_free(&r);
    return rc;
}
