/*
 * unit.c - what the ObservabilityPlatform controller does to processes and
 * files, as jobs on the pool (reconcile/jobs.h): a reconcile worker never
 * waits for a component to start, a config check, a backup copy or a stop.
 *
 * Every job is check-then-act, so one started again after a restart of
 * stampd does only what is missing:
 *   ENSURE   the component's files (config, copied files, secrets) are
 *            what the plan says and its process is the plan's unit: a
 *            config is written as "<file>.new", checked by the component's
 *            own validator (promtool, amtool, ...), and only then renamed
 *            over the running one; a running unit of the plan gets a
 *            reload when its files changed; any other unit of the
 *            component (another version or other flags) is stopped before
 *            the plan's is started, so two never share a data dir or a
 *            port; then it waits (at most wait_ms) for the ready URL.
 *   STOP     every unit of the component, SIGTERM then SIGKILL.
 *   PROBE    per component: its unit alive, and its ready URL answering.
 *   BACKUP   per component: the data (Prometheus: a TSDB snapshot through
 *            its admin API, the running server stays; stop-copy: the
 *            process is stopped, which flushes, then its dir is copied)
 *            and its config dir, under "<dir>.partial", renamed to <dir>
 *            once every part is there.
 *   RESTORE  the component stopped, its data and config dirs replaced by
 *            the backup's.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "health/probes.h"
#include "obs/internal.h"
#include "reconcile/jobs.h"
#include "util/httpc.h"
#include "util/util.h"

#define CHECK_TIMEOUT_MS 30000
#define RELOAD_TIMEOUT_MS 10000
#define READY_PROBE_MS 1000
#define SCAN_MAX 8

void obs_plan_free(obs_plan *p) {
    obs_argv_free(p->argv);
    obs_argv_free(p->check);
    free(p->config);
    p->argv = p->check = NULL;
    p->config = NULL;
}

obs_job *obs_job_new(int kind, ctl_ctx *c) {
    obs_job *j = calloc(1, sizeof(*j));
    if (j == NULL) return NULL;
    j->kind = kind;
    j->rt = c->rt;
    j->grace_ms = (int)c->cfg->stop_grace_ms;
    j->wait_ms = 5000;
    return j;
}

void obs_job_free(void *arg) {
    obs_job *j = arg;
    if (j == NULL) return;
    for (int i = 0; i < OBS_MAX_COMP; i++) obs_plan_free(&j->p[i]);
    free(j);
}

/* The last bytes of a log, on one line, for a message. */
static void log_tail(const char *path, char *out, size_t len) {
    char *t = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (read_file_tail(path, 400, &t, &n, NULL, NULL) != 0) return;
    for (size_t i = 0; i < n; i++)
        if (t[i] == '\n' || t[i] == '\r' || t[i] == '\0') t[i] = ' ';
    while (n > 0 && t[n - 1] == ' ') n--;
    utf8_sanitize(t, n, out, len);
    free(t);
}

static bool same_file(const char *path, const char *data, size_t len) {
    char *old = NULL;
    size_t n = 0;
    if (read_file(path, 16u << 20, &old, &n, NULL) != 0) return false;
    bool same = n == len && memcmp(old, data, len) == 0;
    free(old);
    return same;
}

/* Writes data to path unless it is there already; *changed if written. */
static int put_file(const char *path, const char *data, size_t len, mode_t mode, bool *changed, serr *e) {
    if (same_file(path, data, len)) return 0;
    *changed = true;
    return write_file_atomic(path, data, len, mode, e);
}

static int copy_in(const char *from, const char *to, mode_t mode, bool *changed, serr *e) {
    char *d = NULL;
    size_t n = 0;
    int rc = read_file(from, 16u << 20, &d, &n, e);
    if (rc == 0) rc = put_file(to, d, n, mode, changed, e);
    free(d);
    return rc;
}

/* The component's files; SE_INVAL when its validator rejects the config
 * (nothing running is touched then). */
static int write_files(const obs_plan *p, bool *changed, serr *e) {
    char path[800];
    int rc;
    for (int i = 0; i < p->nfiles; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->confdir, p->files_to[i]);
        if ((rc = copy_in(p->files_from[i], path, 0644, changed, e))) return rc;
    }
    if (p->nsecrets > 0) {
        char sdir[640], from[640];
        snprintf(sdir, sizeof(sdir), "%s/secrets", p->confdir);
        if ((rc = mkdir_p(sdir, 0700, e))) return rc;
        for (int i = 0; i < p->nsecrets; i++) {
            snprintf(from, sizeof(from), "%s/%s", p->secrets_dir, p->secrets[i]);
            snprintf(path, sizeof(path), "%s/%s", sdir, p->secrets[i]);
            if ((rc = copy_in(from, path, 0600, changed, e))) return rc;
        }
    }
    if (p->config == NULL) return 0;
    size_t len = strlen(p->config);
    if (same_file(p->config_path, p->config, len)) return 0;
    char cand[700];
    snprintf(cand, sizeof(cand), "%s.new", p->config_path);
    if ((rc = write_file_atomic(cand, p->config, len, 0644, e))) return rc;
    if (p->check) {
        char err[256], clog[700], tail[420];
        snprintf(clog, sizeof(clog), "%s/check.log", p->logdir);
        unlink(clog);
        const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
        if (probe_exec_argv((const char *const *)p->check, env, p->confdir, clog, CHECK_TIMEOUT_MS, err,
                            sizeof(err)) != 0) {
            log_tail(clog, tail, sizeof(tail));
            unlink(cand);
            return serr_set(e, SE_INVAL, "%s: the new configuration is rejected by %s (%s): %s; the running "
                            "one is kept", p->comp, p->check[0], err, tail);
        }
    }
    /* The running configuration is kept as <file>.good until the
     * component has loaded the new one (a reload it refuses puts it
     * back). */
    char good[700];
    snprintf(good, sizeof(good), "%s.good", p->config_path);
    bool had = path_exists(p->config_path);
    if (had && (rc = copy_in(p->config_path, good, 0644, &had, e))) return rc;
    if (rename(cand, p->config_path) != 0)
        return serr_set(e, SE_IO, "rename %s: %s", cand, strerror(errno));
    *changed = true;
    return 0;
}

/* What the running process has loaded: the plan's config hash, recorded in
 * <confdir>/.loaded once it started on it or reloaded it, so a reload cut
 * short by a crash of stampd is done again rather than taken as done. */
static bool loaded(const obs_plan *p) {
    char path[700], *d = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/.loaded", p->confdir);
    if (read_file(path, 256, &d, &n, NULL) != 0) return false;
    bool same = strcmp(d, p->config_hash) == 0;
    free(d);
    return same;
}

static void mark_loaded(const obs_plan *p) {
    char path[700];
    snprintf(path, sizeof(path), "%s/.loaded", p->confdir);
    serr e = {0};
    if (write_file_atomic(path, p->config_hash, strlen(p->config_hash), 0644, &e) == 0) {
        snprintf(path, sizeof(path), "%s.good", p->config_path);
        unlink(path);
    }
}

/* A reload the component refused: the previous file back in place. */
static void put_back(const obs_plan *p) {
    char good[700];
    snprintf(good, sizeof(good), "%s.good", p->config_path);
    if (path_exists(good)) rename(good, p->config_path);
}

static int reload(const obs_plan *p, pid_t pid, serr *e) {
    if (strcmp(p->reload, "sighup") == 0) {
        if (kill(pid, SIGHUP) != 0) return serr_set(e, SE_UNAVAIL, "%s: SIGHUP: %s", p->comp, strerror(errno));
        return 0;
    }
    char url[320];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", p->port, p->reload + 5);
    httpc_req rq = {.method = "POST", .url = url, .body = "", .body_len = 0, .timeout_ms = RELOAD_TIMEOUT_MS};
    long status = 0;
    sbuf body;
    int rc = httpc_do(&rq, &status, &body, e);
    if (rc) return rc;
    char msg[200];
    utf8_sanitize(body.data ? body.data : "", body.len, msg, sizeof(msg));
    sbuf_free(&body);
    if (status != 200)
        return serr_set(e, SE_INVAL, "%s: reload answered %ld: %s; the running configuration is kept", p->comp,
                        status, msg);
    return 0;
}

static bool ready(const obs_plan *p, char *err, size_t len) {
    if (p->ready_url[0] == '\0') return true;
    return probe_http(p->ready_url, 200, READY_PROBE_MS, err, len) == 0;
}

/* Stops every unit of the component but keep (NULL: all). */
static int stop_others(const obs_job *j, const obs_plan *p, const char *keep, int *stopped, serr *e) {
    rt_proc procs[SCAN_MAX];
    int n = rt_scan(j->rt, p->prefix, true, procs, SCAN_MAX, e);
    if (n < 0) return n;
    for (int i = 0; i < n && i < SCAN_MAX; i++) {
        if (keep && strcmp(procs[i].unit, keep) == 0) continue;
        int rc = rt_stop(j->rt, procs[i].pid, j->grace_ms, e);
        if (rc) return rc;
        if (stopped) (*stopped)++;
    }
    if (n > 0) rt_invalidate(j->rt);
    return 0;
}

static pid_t find_unit(const obs_job *j, const obs_plan *p, serr *e) {
    rt_proc procs[SCAN_MAX];
    int n = rt_scan(j->rt, p->prefix, true, procs, SCAN_MAX, e);
    for (int i = 0; i < n && i < SCAN_MAX; i++)
        if (strcmp(procs[i].unit, p->unit) == 0) return procs[i].pid;
    return n < 0 ? -1 : 0;
}

/* Long: check, write, reload or replace, wait: the order is the point. */
static int ensure(obs_job *j, json_t **result, serr *e) {
    obs_plan *p = &j->p[0];
    int rc;
    if ((rc = mkdir_p(p->confdir, 0755, e)) || (rc = mkdir_p(p->logdir, 0755, e)) ||
        (p->stores_data && (rc = mkdir_p(p->datadir, 0755, e))))
        return rc;
    bool changed = false;
    if (!j->keep_config && (rc = write_files(p, &changed, e))) return rc;
    pid_t pid = find_unit(j, p, e);
    if (pid < 0) return e->code;
    bool started = false, reloaded = false;
    bool has_files = p->config || p->nfiles > 0 || p->nsecrets > 0;
    if (has_files && !j->keep_config && pid > 0 && !loaded(p)) changed = true;
    if (pid > 0 && changed && !j->restart && strcmp(p->reload, "restart") != 0) {
        if ((rc = reload(p, pid, e))) {
            put_back(p);
            return rc;
        }
        mark_loaded(p);
        reloaded = true;
    } else if (pid > 0 && changed) {
        if ((rc = rt_stop(j->rt, pid, j->grace_ms, e))) return rc;
        rt_invalidate(j->rt);
        pid = 0;
    }
    if ((rc = stop_others(j, p, pid > 0 ? p->unit : NULL, NULL, e))) return rc;
    if (pid == 0) {
        rt_spawn_spec sp = {.unit = p->unit,
                            .argv = (const char *const *)p->argv,
                            .log_path = p->log_path,
                            .cwd = p->root,
                            .env_clear = true};
        char home[600];
        snprintf(home, sizeof(home), "HOME=%s", p->root);
        const char *env[] = {"PATH=/usr/bin:/bin", home, NULL};
        sp.env = env;
        if ((rc = rt_spawn(j->rt, &sp, &pid, e))) return rc;
        started = true;
    }
    char err[256] = "";
    bool ok = false;
    int64_t until = mono_ms() + j->wait_ms;
    for (;;) {
        if (!rt_alive(j->rt, pid)) {
            char tail[420];
            sleep_ms(50); /* the last words reach the log */
            log_tail(p->log_path, tail, sizeof(tail));
            rt_invalidate(j->rt);
            return serr_set(e, SE_UNAVAIL, "%s %s exited%s: %s", p->comp, p->version,
                            started ? " at start" : "", tail[0] ? tail : "(nothing in its log)");
        }
        if ((ok = ready(p, err, sizeof(err))) || mono_ms() >= until) break;
        sleep_ms(100);
    }
    if (ok && started && has_files && !j->keep_config) mark_loaded(p);
    *result = json_pack("{s:i,s:s,s:b,s:b,s:b,s:s,s:s}", "pid", (int)pid, "unit", p->unit, "started", started,
                        "reloaded", reloaded, "ready", ok, "configHash", j->keep_config ? "" : p->config_hash,
                        "error", ok ? "" : err);
    return 0;
}

static int probe(obs_job *j, json_t **result, serr *e) {
    json_t *o = json_object();
    for (int i = 0; i < j->n; i++) {
        obs_plan *p = &j->p[i];
        pid_t pid = find_unit(j, p, e);
        if (pid < 0) {
            /* Not knowing is not "dead". */
            json_decref(o);
            return e->code;
        }
        char err[RT_UNIT_MAX + 64] = "";
        bool alive = pid > 0, ok = alive && ready(p, err, sizeof(err));
        if (!alive) str_fmt_cut(err, sizeof(err), "no process of %s is running", p->unit);
        json_object_set_new(o, p->comp,
                            json_pack("{s:b,s:i,s:b,s:s,s:s}", "alive", alive, "pid", pid > 0 ? (int)pid : 0, "ready",
                                      ok, "error", ok ? "" : err, "unit", p->unit));
    }
    *result = o;
    return 0;
}

/* A Prometheus TSDB snapshot (hard links inside its data dir), copied out
 * and then removed from there. */
static int snapshot(const obs_plan *p, const char *to, serr *e) {
    char url[320];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/admin/tsdb/snapshot?skip_head=false", p->port);
    httpc_req rq = {.method = "POST", .url = url, .body = "", .body_len = 0, .timeout_ms = 60000};
    long status = 0;
    sbuf body;
    int rc = httpc_do(&rq, &status, &body, e);
    if (rc) return rc;
    json_t *doc = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    sbuf_free(&body);
    const char *name = json_string_value(json_object_get(json_object_get(doc, "data"), "name"));
    if (status != 200 || name == NULL || strchr(name, '/') || strcmp(name, "..") == 0) {
        json_decref(doc);
        return serr_set(e, SE_UNAVAIL, "%s: the snapshot API answered %ld", p->comp, status);
    }
    char snap[800];
    snprintf(snap, sizeof(snap), "%s/snapshots/%s", p->datadir, name);
    json_decref(doc);
    rc = copy_tree(snap, to, e);
    remove_tree(snap, NULL);
    if (rc == 0 && !path_exists(to)) rc = mkdir_p(to, 0755, e); /* an empty TSDB has no block */
    return rc;
}

/* Keeps the newest `keep` backups "upgrade-N" next to dir (by N), dir
 * itself aside: a backup is a whole copy of the data. */
static void prune_backups(const char *dir, int keep) {
    char parent[640];
    str_copy(parent, sizeof(parent), dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL) return;
    *slash = '\0';
    long long gens[64];
    int n = 0;
    DIR *d = opendir(parent);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 64) {
        char *end = NULL;
        if (strncmp(de->d_name, "upgrade-", 8) != 0) continue;
        long long g = strtoll(de->d_name + 8, &end, 10);
        if (end && *end == '\0' && g > 0) gens[n++] = g;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int k = 0; k < n; k++) newer += gens[k] > gens[i];
        char path[700];
        snprintf(path, sizeof(path), "%s/upgrade-%lld", parent, gens[i]);
        if (newer >= keep && strcmp(path, dir) != 0) remove_tree(path, NULL);
    }
}

static int backup(obs_job *j, json_t **result, serr *e) {
    prune_backups(j->dir, 1);
    if (path_exists(j->dir)) {
        *result = json_pack("{s:s,s:b}", "dir", j->dir, "existed", true);
        return 0;
    }
    char part[700], d[800];
    snprintf(part, sizeof(part), "%s.partial", j->dir);
    int rc = remove_tree(part, e);
    if (rc || (rc = mkdir_p(part, 0700, e))) return rc;
    json_t *what = json_object();
    for (int i = 0; i < j->n && rc == 0; i++) {
        obs_plan *p = &j->p[i];
        snprintf(d, sizeof(d), "%s/%s/config", part, p->comp);
        if ((rc = copy_tree(p->confdir, d, e))) break;
        snprintf(d, sizeof(d), "%s/%s/data", part, p->comp);
        const char *how = "none";
        if (!p->stores_data || strcmp(p->backup, "none") == 0) {
        } else if (strcmp(p->backup, "prometheus-snapshot") == 0 && find_unit(j, p, e) > 0) {
            how = "snapshot";
            rc = snapshot(p, d, e);
        } else {
            /* stop-copy, or a snapshot of a server that is not running:
             * stopped, its files are consistent. */
            how = "copy";
            if ((rc = stop_others(j, p, NULL, NULL, e)) == 0) rc = copy_tree(p->datadir, d, e);
            if (rc == 0 && !path_exists(d)) rc = mkdir_p(d, 0755, e);
        }
        json_object_set_new(what, p->comp, json_pack("{s:s,s:s}", "version", p->version, "data", how));
    }
    if (rc == 0) {
        json_t *m = json_pack("{s:O,s:I}", "components", what, "takenMs", (json_int_t)now_ms());
        char *text = json_dumps(m, JSON_SORT_KEYS);
        json_decref(m);
        snprintf(d, sizeof(d), "%s/backup.json", part);
        rc = text ? write_file_atomic(d, text, strlen(text), 0600, e) : serr_set(e, SE_NOMEM, "out of memory");
        free(text);
    }
    if (rc == 0 && rename(part, j->dir) != 0) rc = serr_set(e, SE_IO, "rename %s: %s", part, strerror(errno));
    if (rc) {
        json_decref(what);
        return rc;
    }
    *result = json_pack("{s:s,s:o}", "dir", j->dir, "components", what);
    return 0;
}

static int restore(obs_job *j, json_t **result, serr *e) {
    obs_plan *p = &j->p[0];
    char from[800];
    int rc = stop_others(j, p, NULL, NULL, e);
    if (rc) return rc;
    snprintf(from, sizeof(from), "%s/%s/config", j->dir, p->comp);
    if (!path_exists(from)) return serr_set(e, SE_NOTFOUND, "%s: the backup %s has no config", p->comp, j->dir);
    if ((rc = remove_tree(p->confdir, e)) || (rc = copy_tree(from, p->confdir, e))) return rc;
    snprintf(from, sizeof(from), "%s/%s/data", j->dir, p->comp);
    if (p->stores_data && path_exists(from)) {
        if ((rc = remove_tree(p->datadir, e)) || (rc = copy_tree(from, p->datadir, e))) return rc;
    }
    *result = json_pack("{s:s}", "restored", j->dir);
    return 0;
}

int obs_job_run(void *arg, json_t **result, serr *e) {
    obs_job *j = arg;
    int stopped = 0, rc;
    switch (j->kind) {
    case OJ_ENSURE:
        return ensure(j, result, e);
    case OJ_STOP:
        if ((rc = stop_others(j, &j->p[0], NULL, &stopped, e))) return rc;
        *result = json_pack("{s:i}", "stopped", stopped);
        return 0;
    case OJ_PROBE:
        return probe(j, result, e);
    case OJ_BACKUP:
        return backup(j, result, e);
    case OJ_RESTORE:
        return restore(j, result, e);
    default:
        return serr_set(e, SE_INTERNAL, "unknown job %d", j->kind);
    }
}
