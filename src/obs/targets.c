/*
 * targets.c - see targets.h.  The targets themselves come from
 * stamp/prom.c (the same walk as GET /v1/prometheus/targets), so the files
 * and the API cannot disagree; this file owns only turning them into
 * files: canonical text, a hash to skip unchanged writes, the atomic
 * replacement, and the catalog's location.
 */
#include "obs/targets.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "stamp/prom.h"
#include "util/util.h"
#include "util/yamljson.h"

#define SWEEP_MAX 4096 /* directory entries looked at for stale temporaries */

int obs_sd_dir(const stamp_config *cfg, char *buf, size_t len) {
    if (cfg->prometheus_sd_dir[0])
        return str_fmt(buf, len, NULL, "prometheus-sd-dir", "%s", cfg->prometheus_sd_dir);
    return str_fmt(buf, len, NULL, "prometheus-sd-dir", "%s/prometheus-sd", config_state_dir(cfg));
}

int obs_sd_render(const json_t *groups, size_t max, char **out, size_t *len, serr *e) {
    *out = NULL;
    *len = 0;
    if (!json_is_array(groups)) return serr_set(e, SE_INVAL, "file_sd: the target groups are not an array");
    char *text = json_dumps(groups, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (text == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    size_t n = strlen(text);
    if (n + 1 > max) {
        free(text);
        return serr_set(e, SE_TOOBIG, "file_sd: %zu bytes of targets, more than %zu", n + 1, max);
    }
    char *t = realloc(text, n + 2);
    if (t == NULL) {
        free(text);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *out = t;
    *len = n + 1;
    return 0;
}

int obs_sd_write(const char *dir, const char *file, const char *text, size_t len, char hash[65],
                 bool *written, serr *e) {
    char path[PATH_MAX], want[65];
    if (written) *written = false;
    if (str_fmt(path, sizeof(path), e, "file_sd path", "%s/%s", dir, file)) return SE_TOOBIG;
    sha256_hex(text, len, want);
    struct stat st;
    bool exists = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    if (exists && hash[0] == '\0') {
        /* The first look (after a restart): what an earlier stampd left. */
        char *old = NULL;
        size_t olen = 0;
        if (read_file(path, OBS_SD_MAX, &old, &olen, NULL) == 0) sha256_hex(old, olen, hash);
        free(old);
    }
    if (exists && strcmp(hash, want) == 0) return 0;
    int rc = write_file_atomic(path, text, len, 0644, e);
    if (rc) {
        hash[0] = '\0';
        return rc;
    }
    memcpy(hash, want, 65);
    if (written) *written = true;
    return 0;
}

/* Temporary files of write_file_atomic that a crash between create and
 * rename left behind (ours only: NAME.tmp.XXXXXX). */
static void sweep_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *de;
    for (int n = 0; n < SWEEP_MAX && (de = readdir(d)) != NULL; n++) {
        if (!str_has_prefix(de->d_name, OBS_SD_STAMPS ".tmp.") &&
            !str_has_prefix(de->d_name, OBS_SD_HEALTH ".tmp.") && !str_has_prefix(de->d_name, OBS_SD_STAMPD ".tmp."))
            continue;
        char path[PATH_MAX];
        if (str_fmt(path, sizeof(path), NULL, "path", "%s/%s", dir, de->d_name) == 0) unlink(path);
    }
    closedir(d);
}

/* What was last written, per file; reset when the dir changes.  The run
 * loop's only. */
static struct {
    char dir[PATH_MAX];
    char hash[3][65];
    bool swept;
} last;

/* stampd itself: every live replica's API address (GET /v1/cluster), or
 * this one's listen address without replicas; so a platform's Prometheus
 * scrapes them all and a change of leader changes nothing in its config. */
static int stampd_targets(ctl_ctx *c, json_t **out, serr *e) {
    json_t *targets = json_array();
    if (cluster_enabled()) {
        json_t *d = NULL;
        int rc = cluster_describe(c, &d, e);
        if (rc) {
            json_decref(targets);
            return rc;
        }
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(d, "replicas"), i, r) if (!json_is_true(json_object_get(r, "stale")))
            json_array_append_new(targets, json_string(jstr(r, "address", "")));
        json_decref(d);
    } else {
        json_array_append_new(targets, json_string(c->cfg->listen));
    }
    *out = json_pack("[{s:o,s:{}}]", "targets", targets, "labels");
    return *out ? 0 : serr_set(e, SE_NOMEM, "out of memory");
}

static int sync_one(ctl_ctx *c, const char *dir, int i, serr *e) {
    static const char *const files[3] = {OBS_SD_STAMPS, OBS_SD_HEALTH, OBS_SD_STAMPD};
    json_t *groups = NULL;
    char *text = NULL;
    size_t len = 0;
    serr e2 = {0};
    int rc = i == 0   ? stamp_prom_targets(c, &groups, &e2)
             : i == 1 ? stamp_prom_health_targets(c, &groups, &e2)
                      : stampd_targets(c, &groups, &e2);
    if (rc == 0) rc = obs_sd_render(groups, OBS_SD_MAX, &text, &len, &e2);
    if (rc == 0) rc = obs_sd_write(dir, files[i], text, len, last.hash[i], NULL, &e2);
    json_decref(groups);
    free(text);
    if (rc) serr_set(e, rc, "prometheus-sd %s/%s: %s", dir, files[i], e2.msg);
    return rc;
}

int obs_targets_sync(ctl_ctx *c, serr *e) {
    char dir[PATH_MAX];
    if (obs_sd_dir(c->cfg, dir, sizeof(dir)))
        return serr_set(e, SE_TOOBIG, "prometheus-sd-dir: the path is too long");
    if (strcmp(dir, last.dir) != 0) {
        memset(&last, 0, sizeof(last));
        str_copy(last.dir, sizeof(last.dir), dir);
    }
    serr e2 = {0};
    if (mkdir_p(dir, 0755, &e2)) return serr_set(e, e2.code, "prometheus-sd-dir %s: %s", dir, e2.msg);
    if (!last.swept) {
        sweep_temporaries(dir);
        last.swept = true;
    }
    int rc = sync_one(c, dir, 0, e);
    int rc2 = sync_one(c, dir, 1, rc ? NULL : e);
    int rc3 = sync_one(c, dir, 2, rc || rc2 ? NULL : e);
    return rc ? rc : rc2 ? rc2 : rc3;
}

/* path made absolute into buf when it is a regular file: 1; not there: 0. */
static int found(const char *path, char *buf, size_t len, serr *e) {
    char *real = realpath(path, NULL);
    struct stat st;
    if (real == NULL || stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(real);
        return 0;
    }
    int rc = str_fmt(buf, len, e, "observability-catalog", "%s", real);
    free(real);
    return rc ? rc : 1;
}

int obs_catalog_path(const stamp_config *cfg, const char *exe_dir, char *buf, size_t len, serr *e) {
    if (len) buf[0] = '\0';
    if (cfg && strchr(cfg->obs_catalog, ',')) {
        /* A list (the shipped catalog, then site-local additions): the
         * loader names any file that is missing. */
        if (!str_copy(buf, len, cfg->obs_catalog)) return serr_set(e, SE_TOOBIG, "observability-catalog too long");
        return 0;
    }
    if (cfg && cfg->obs_catalog[0]) {
        int rc = found(cfg->obs_catalog, buf, len, e);
        if (rc < 0) return rc;
        if (rc == 0)
            return serr_set(e, SE_NOTFOUND, "observability-catalog %s: no such file", cfg->obs_catalog);
        return 0;
    }
    char exe[PATH_MAX];
    if (exe_dir == NULL) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0) return serr_set(e, SE_IO, "readlink /proc/self/exe: %s", strerror(errno));
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        exe_dir = exe;
    }
    static const char *const rel[] = {"../share/stamp/observability/catalog.yaml",
                                      "../deploy/observability/catalog.yaml"};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char path[PATH_MAX];
        if (str_fmt(path, sizeof(path), NULL, "path", "%s/%s", exe_dir, rel[i])) continue;
        int rc = found(path, buf, len, e);
        if (rc != 0) return rc < 0 ? rc : 0;
    }
    return serr_set(e, SE_NOTFOUND,
                    "no ObservabilityPlatform catalog in %s/%s nor %s/%s: set observability-catalog",
                    exe_dir, rel[0], exe_dir, rel[1]);
}
