/*
 * catalog.c - the component catalog (obs.h): loads
 * deploy/observability/catalog.yaml (and site-local files that add
 * versions), checks every field, and resolves each version to the
 * component's defaults overlaid by the version's own fields, so the
 * controller reads one flat obs_cat_version and never merges.
 *
 * A loaded catalog is immutable: readers on any thread share it without a
 * lock (obs_set_catalog publishes it once).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "util/util.h"
#include "util/yamljson.h"

#define CAT_FILES_MAX 8
#define CAT_ARGS_MAX 64
#define CAT_CMDS_MAX 16
#define CAT_FILE_MAX (1024 * 1024)
#define WHERE_MAX 160

/* Fields of a component that only the component level has. */
static const char *const comp_only_keys[] = {"title",      "defaultVersion", "defaultRetention",
                                             "storesData", "missingHint",    NULL};
/* Fields a version may override (and a component may default). */
static const char *const version_keys[] = {"binary", "args",        "configFile", "config",
                                           "check",  "ready",       "reload",     "backup",
                                           "restartKeys", "files", "exec", NULL};
static const char *const exec_keys[] = {"install", "upgrade", "rollback", "uninstall", "ready",
                                        NULL};

static bool in_list(const char *const *list, const char *k) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0) return true;
    return false;
}

/* A component or version name refers to itself in messages by file. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool version_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= OBS_VERSION_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '-' || c == '+' || c == '_';
        if (!ok) return false;
    }
    return true;
}

static bool file_name_valid(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 64 && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
           strstr(s, "..") == NULL;
}

/* Every {placeholder} in s known (obs_placeholder_known); $if values name
 * components.  Same brace rule as obs_expand. */
static int check_placeholders_str(const obs_catalog *cat, const char *s, const char *where, serr *e) {
    for (const char *p = strchr(s, '{'); p; p = strchr(p + 1, '{')) {
        const char *q = p + 1;
        if (!(*q >= 'a' && *q <= 'z')) continue;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_') q++;
        if (*q == ':') {
            q++;
            const char *c0 = q;
            while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-') q++;
            if (q == c0) continue;
        }
        if (*q != '}') continue;
        char name[80];
        size_t n = (size_t)(q - p - 1);
        if (n >= sizeof(name))
            return serr_set(e, SE_INVAL, "%s: placeholder too long in \"%.60s\"", where, s);
        memcpy(name, p + 1, n);
        name[n] = '\0';
        if (!obs_placeholder_known(cat, name))
            return serr_set(e, SE_INVAL, "%s: unknown placeholder {%s}", where, name);
    }
    return 0;
}

static int check_placeholders(const obs_catalog *cat, const json_t *v, const char *where, int depth,
                              serr *e) {
    if (depth > MANIFEST_MAX_DEPTH) return serr_set(e, SE_INVAL, "%s: nested too deep", where);
    if (json_is_string(v)) return check_placeholders_str(cat, json_string_value(v), where, e);
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int rc = check_placeholders(cat, x, where, depth + 1, e);
            if (rc) return rc;
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (strcmp(k, "$if") == 0) {
                const char *c = json_string_value(x);
                if (c == NULL || obs_catalog_order(cat, c) < 0)
                    return serr_set(e, SE_INVAL, "%s: \"$if\" must name a component of the catalog",
                                    where);
                continue;
            }
            int rc = check_placeholders(cat, x, where, depth + 1, e);
            if (rc) return rc;
        }
    }
    return 0;
}

/* An array of at most max strings. */
static int check_strv(const json_t *v, size_t max, const char *where, serr *e) {
    if (!json_is_array(v)) return serr_set(e, SE_INVAL, "%s: not a list of strings", where);
    if (json_array_size(v) > max)
        return serr_set(e, SE_INVAL, "%s: more than %zu elements", where, max);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_string(x) || json_string_length(x) > 4096)
            return serr_set(e, SE_INVAL, "%s[%zu]: not a string (of at most 4096 bytes)", where, i);
    }
    return 0;
}

static int get_str(const json_t *o, const char *k, char *dst, size_t len, const char *where,
                   serr *e) {
    json_t *v = json_object_get(o, k);
    if (v == NULL) return 0;
    if (!json_is_string(v)) return serr_set(e, SE_INVAL, "%s.%s: not a string", where, k);
    if (!str_copy(dst, len, json_string_value(v)))
        return serr_set(e, SE_INVAL, "%s.%s: longer than %zu bytes", where, k, len - 1);
    return 0;
}

static int check_exec(const json_t *v, const char *where, serr *e) {
    if (!json_is_object(v)) return serr_set(e, SE_INVAL, "%s.exec: not an object", where);
    const char *k;
    json_t *cmds;
    char w[WHERE_MAX + 64];
    json_object_foreach((json_t *)v, k, cmds) {
        if (!in_list(exec_keys, k))
            return serr_set(e, SE_INVAL,
                            "%s.exec.%s: unknown field (install, upgrade, rollback, uninstall, ready)",
                            where, k);
        if (!json_is_array(cmds) || json_array_size(cmds) > CAT_CMDS_MAX)
            return serr_set(e, SE_INVAL, "%s.exec.%s: not a list of at most %d commands", where, k,
                            CAT_CMDS_MAX);
        size_t i;
        json_t *argv;
        json_array_foreach(cmds, i, argv) {
            str_fmt_cut(w, sizeof(w), "%s.exec.%s[%zu]", where, k, i);
            int rc = check_strv(argv, CAT_ARGS_MAX, w, e);
            if (rc) return rc;
            if (json_array_size(argv) == 0) return serr_set(e, SE_INVAL, "%s: empty command", w);
        }
    }
    return 0;
}

/* files: [{from, to}] with from resolved against dir; a new array. */
static int resolve_files(const json_t *v, const char *dir, json_t **out, const char *where, serr *e) {
    *out = NULL;
    if (!json_is_array(v) || json_array_size(v) > 16)
        return serr_set(e, SE_INVAL, "%s.files: not a list of at most 16 {from, to}", where);
    json_t *res = json_array();
    size_t i;
    json_t *f;
    json_array_foreach(v, i, f) {
        const char *k;
        json_t *x;
        json_object_foreach(f, k, x) {
            if (strcmp(k, "from") != 0 && strcmp(k, "to") != 0) {
                json_decref(res);
                return serr_set(e, SE_INVAL, "%s.files[%zu].%s: unknown field (from, to)", where, i, k);
            }
        }
        const char *from = jstr(f, "from", NULL), *to = jstr(f, "to", NULL);
        if (!json_is_object(f) || from == NULL || to == NULL || *from == '\0') {
            json_decref(res);
            return serr_set(e, SE_INVAL, "%s.files[%zu]: needs from and to (strings)", where, i);
        }
        if (!file_name_valid(to)) {
            json_decref(res);
            return serr_set(e, SE_INVAL, "%s.files[%zu].to: \"%s\" is not a plain file name", where,
                            i, to);
        }
        char path[1024];
        int rc = from[0] == '/' ? str_fmt(path, sizeof(path), e, "files.from", "%s", from)
                                : str_fmt(path, sizeof(path), e, "files.from", "%s/%s", dir, from);
        char *real = rc == 0 ? realpath(path, NULL) : NULL;
        if (rc == 0 && real == NULL && errno == ENOMEM)
            rc = serr_set(e, SE_NOMEM, "%s.files[%zu].from: out of memory", where, i);
        else if (rc == 0 && real == NULL)
            rc = serr_set(e, SE_INVAL, "%s.files[%zu].from: %s does not exist", where, i, path);
        if (rc) {
            json_decref(res);
            return rc;
        }
        rc = json_array_append_new(res, json_pack("{s:s, s:s}", "from", real, "to", to));
        free(real);
        if (rc) { /* a file left out would not be copied */
            json_decref(res);
            return serr_set(e, SE_NOMEM, "%s.files: out of memory", where);
        }
    }
    *out = res;
    return 0;
}

static int expand_root(const char *bin, const char *root, char *out, size_t len, const char *where,
                       serr *e) {
    if (str_has_prefix(bin, "{root}")) {
        if (root == NULL || *root == '\0')
            return serr_set(e, SE_INVAL, "%s.binary: \"%s\" needs observability-root, which is not set",
                            where, bin);
        if (str_fmt(out, len, e, "binary", "%s%s", root, bin + 6)) return serr_wrap(e, "%s: ", where);
    } else if (!str_copy(out, len, bin)) {
        return serr_set(e, SE_INVAL, "%s.binary: longer than %zu bytes", where, len - 1);
    }
    if (out[0] != '/' || strchr(out, '{'))
        return serr_set(e, SE_INVAL, "%s.binary: \"%s\" is not an absolute path", where, out);
    return 0;
}

/* Long: one check per field of a version, each naming what it refuses.
 * m is the merged object (component defaults, then the version's own
 * fields); files_dir is the directory `files` are relative to. */
static int version_resolve(obs_catalog *cat, obs_cat_comp *cc, obs_cat_version *cv, json_t *m,
                           const char *files_dir, const char *root, const char *where, serr *e) {
    int rc;
    const char *bin = jstr(m, "binary", NULL);
    if (bin == NULL) return serr_set(e, SE_INVAL, "%s.binary: required (a string)", where);
    if ((rc = expand_root(bin, root, cv->binary, sizeof(cv->binary), where, e))) return rc;
    if ((rc = get_str(m, "configFile", cv->config_file, sizeof(cv->config_file), where, e)))
        return rc;
    if (cv->config_file[0] && !file_name_valid(cv->config_file))
        return serr_set(e, SE_INVAL, "%s.configFile: \"%s\" is not a plain file name", where,
                        cv->config_file);
    if ((rc = get_str(m, "ready", cv->ready_path, sizeof(cv->ready_path), where, e))) return rc;
    if (cv->ready_path[0] != '/')
        return serr_set(e, SE_INVAL, "%s.ready: required, a path starting with /", where);
    str_copy(cv->reload, sizeof(cv->reload), "restart");
    if ((rc = get_str(m, "reload", cv->reload, sizeof(cv->reload), where, e))) return rc;
    if (strcmp(cv->reload, "sighup") != 0 && strcmp(cv->reload, "restart") != 0 &&
        !(str_has_prefix(cv->reload, "post:/") && strchr(cv->reload, ' ') == NULL))
        return serr_set(e, SE_INVAL, "%s.reload: \"%s\" is not sighup, restart or post:<path>",
                        where, cv->reload);
    str_copy(cv->backup, sizeof(cv->backup), cc->stores_data ? "stop-copy" : "none");
    if ((rc = get_str(m, "backup", cv->backup, sizeof(cv->backup), where, e))) return rc;
    if (strcmp(cv->backup, "prometheus-snapshot") != 0 && strcmp(cv->backup, "stop-copy") != 0 &&
        strcmp(cv->backup, "none") != 0)
        return serr_set(e, SE_INVAL,
                        "%s.backup: \"%s\" is not prometheus-snapshot, stop-copy or none", where,
                        cv->backup);
    if (!cc->stores_data && strcmp(cv->backup, "none") != 0)
        return serr_set(e, SE_INVAL, "%s.backup: \"%s\" for a component that stores no data",
                        where, cv->backup);

    char w[WHERE_MAX + 16];
    json_t *v = json_object_get(m, "args");
    str_fmt_cut(w, sizeof(w), "%s.args", where);
    if (v && (rc = check_strv(v, CAT_ARGS_MAX, w, e))) return rc;
    cv->args = v ? json_deep_copy(v) : json_array();
    if (cv->args == NULL) return serr_set(e, SE_NOMEM, "%s.args: out of memory", where);
    if ((rc = check_placeholders(cat, cv->args, w, 0, e))) return rc;

    v = json_object_get(m, "config");
    if (v && !json_is_object(v)) return serr_set(e, SE_INVAL, "%s.config: not an object", where);
    if (v && cv->config_file[0] == '\0')
        return serr_set(e, SE_INVAL, "%s.config: given without configFile", where);
    if (v == NULL && cv->config_file[0])
        return serr_set(e, SE_INVAL, "%s.configFile: given without config", where);
    if (v && json_depth(v) > MANIFEST_MAX_DEPTH)
        return serr_set(e, SE_INVAL, "%s.config: nested too deep", where);
    cv->config = json_deep_copy(v);
    if (v && cv->config == NULL) return serr_set(e, SE_NOMEM, "%s.config: out of memory", where);
    str_fmt_cut(w, sizeof(w), "%s.config", where);
    if (v && (rc = check_placeholders(cat, cv->config, w, 0, e))) return rc;

    v = json_object_get(m, "check");
    str_fmt_cut(w, sizeof(w), "%s.check", where);
    if (v && ((rc = check_strv(v, CAT_ARGS_MAX, w, e)) != 0)) return rc;
    if (v && json_array_size(v) == 0) return serr_set(e, SE_INVAL, "%s: empty command", w);
    if (v && cv->config_file[0] == '\0')
        return serr_set(e, SE_INVAL, "%s: given without configFile", w);
    cv->check = json_deep_copy(v);
    if (v && cv->check == NULL) return serr_set(e, SE_NOMEM, "%s: out of memory", w);
    if (v && (rc = check_placeholders(cat, cv->check, w, 0, e))) return rc;

    v = json_object_get(m, "restartKeys");
    str_fmt_cut(w, sizeof(w), "%s.restartKeys", where);
    if (v && (rc = check_strv(v, 64, w, e))) return rc;
    cv->restart_keys = json_deep_copy(v);
    if (v && cv->restart_keys == NULL) return serr_set(e, SE_NOMEM, "%s: out of memory", w);

    v = json_object_get(m, "exec");
    if (v && (rc = check_exec(v, where, e))) return rc;
    cv->exec = json_deep_copy(v);
    if (v && cv->exec == NULL) return serr_set(e, SE_NOMEM, "%s.exec: out of memory", where);
    str_fmt_cut(w, sizeof(w), "%s.exec", where);
    if (v && (rc = check_placeholders(cat, cv->exec, w, 0, e))) return rc;

    v = json_object_get(m, "files");
    if (v && (rc = resolve_files(v, files_dir, &cv->files, where, e))) return rc;
    return 0;
}

static void version_free(obs_cat_version *cv) {
    json_decref(cv->args);
    json_decref(cv->config);
    json_decref(cv->check);
    json_decref(cv->restart_keys);
    json_decref(cv->exec);
    json_decref(cv->files);
    memset(cv, 0, sizeof(*cv));
}

void obs_catalog_free(obs_catalog *cat) {
    if (cat == NULL) return;
    for (int i = 0; i < cat->n; i++)
        for (int j = 0; j < cat->c[i].nv; j++) version_free(&cat->c[i].v[j]);
    json_decref(cat->exec_tools);
    free(cat);
}

const obs_cat_comp *obs_catalog_comp(const obs_catalog *cat, const char *name) {
    int i = obs_catalog_order(cat, name);
    return i < 0 ? NULL : &cat->c[i];
}

const obs_cat_version *obs_catalog_version(const obs_cat_comp *cc, const char *version) {
    for (int i = 0; cc && version && i < cc->nv; i++)
        if (strcmp(cc->v[i].version, version) == 0) return &cc->v[i];
    return NULL;
}

int obs_catalog_order(const obs_catalog *cat, const char *name) {
    for (int i = 0; cat && name && i < cat->n; i++)
        if (strcmp(cat->c[i].name, name) == 0) return i;
    return -1;
}

static int check_keys(const json_t *o, const char *const *a, const char *const *b, const char *where,
                      serr *e) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        if (!in_list(a, k) && !(b && in_list(b, k)))
            return serr_set(e, SE_INVAL, "%s.%s: unknown field", where, k);
    }
    return 0;
}

/* The component-level fields of components.<name> (versions come later). */
static int comp_parse(obs_cat_comp *cc, const json_t *o, const char *where, serr *e) {
    if (!json_is_object(o)) return serr_set(e, SE_INVAL, "%s: not an object", where);
    int rc = check_keys(o, comp_only_keys, version_keys, where, e);
    if (rc) return rc;
    if ((rc = get_str(o, "title", cc->title, sizeof(cc->title), where, e))) return rc;
    if (cc->title[0] == '\0') str_copy(cc->title, sizeof(cc->title), cc->name);
    if ((rc = get_str(o, "defaultVersion", cc->default_version, sizeof(cc->default_version), where,
                      e)))
        return rc;
    if (!version_valid(cc->default_version))
        return serr_set(e, SE_INVAL, "%s.defaultVersion: required, a version like 2.42.0", where);
    if ((rc = get_str(o, "defaultRetention", cc->default_retention, sizeof(cc->default_retention),
                      where, e)))
        return rc;
    int64_t ms;
    if (cc->default_retention[0] &&
        (parse_duration_ms(cc->default_retention, &ms) != 0 || ms <= 0 ||
         strspn(cc->default_retention, "0123456789") == strlen(cc->default_retention)))
        return serr_set(e, SE_INVAL, "%s.defaultRetention: \"%s\" is not a duration like 15d",
                        where, cc->default_retention);
    json_t *sd = json_object_get(o, "storesData");
    if (sd && !json_is_boolean(sd)) return serr_set(e, SE_INVAL, "%s.storesData: not a boolean", where);
    cc->stores_data = json_is_true(sd);
    if (cc->default_retention[0] && !cc->stores_data)
        return serr_set(e, SE_INVAL, "%s.defaultRetention: given for a component that stores no data",
                        where);
    return get_str(o, "missingHint", cc->missing_hint, sizeof(cc->missing_hint), where, e);
}

typedef struct cat_file {
    json_t *doc;
    char path[512];
    char dir[512];
} cat_file;

static int file_load(cat_file *f, const char *path, serr *e) {
    char *real = realpath(path, NULL);
    if (real == NULL && errno == ENOMEM) return serr_set(e, SE_NOMEM, "catalog %s: out of memory", path);
    if (real == NULL) return serr_set(e, SE_NOTFOUND, "catalog %s: not found", path);
    bool fits = str_copy(f->path, sizeof(f->path), real);
    free(real);
    if (!fits) return serr_set(e, SE_INVAL, "catalog %s: path too long", path);
    str_copy(f->dir, sizeof(f->dir), f->path);
    char *slash = strrchr(f->dir, '/');
    if (slash == f->dir) slash[1] = '\0';
    else *slash = '\0';
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(f->path, CAT_FILE_MAX, &text, &len, e);
    if (rc) return serr_wrap(e, "catalog %s: ", path);
    rc = yaml_to_json(text, len, &f->doc, NULL, e);
    free(text);
    if (rc) return serr_wrap(e, "catalog %s: ", base_name(path));
    if (!json_is_object(f->doc)) return serr_set(e, SE_INVAL, "catalog %s: not a mapping", base_name(path));
    const char *av = jstr(f->doc, "apiVersion", ""), *kind = jstr(f->doc, "kind", "");
    if (strcmp(av, OBS_API_VERSION) != 0 || strcmp(kind, "ComponentCatalog") != 0)
        return serr_set(e, SE_INVAL, "catalog %s: apiVersion/kind must be %s ComponentCatalog",
                        base_name(path), OBS_API_VERSION);
    return 0;
}

/* The first file's order, exec and components. */
static int load_components(obs_catalog *cat, const cat_file *f, serr *e) {
    const char *fn = base_name(f->path);
    static const char *const top[] = {"apiVersion", "kind", "order", "exec", "components",
                                      "versions", NULL};
    char where[WHERE_MAX];
    int rc = check_keys(f->doc, top, NULL, fn, e);
    if (rc) return rc;
    json_t *order = json_object_get(f->doc, "order");
    json_t *comps = json_object_get(f->doc, "components");
    if (!json_is_array(order) || json_array_size(order) == 0)
        return serr_set(e, SE_INVAL, "%s: order: required, the list of components", fn);
    if (json_array_size(order) > OBS_MAX_COMP)
        return serr_set(e, SE_INVAL, "%s: order: more than %d components", fn, OBS_MAX_COMP);
    if (!json_is_object(comps)) return serr_set(e, SE_INVAL, "%s: components: required, a mapping", fn);
    size_t i;
    json_t *x;
    json_array_foreach(order, i, x) {
        const char *name = json_string_value(x);
        if (name == NULL || !name_valid(name, OBS_NAME_MAX - 1))
            return serr_set(e, SE_INVAL, "%s: order[%zu]: not a component name", fn, i);
        if (obs_catalog_order(cat, name) >= 0)
            return serr_set(e, SE_INVAL, "%s: order[%zu]: %s listed twice", fn, i, name);
        json_t *o = json_object_get(comps, name);
        if (o == NULL)
            return serr_set(e, SE_INVAL, "%s: order[%zu]: %s is not in components", fn, i, name);
        obs_cat_comp *cc = &cat->c[cat->n++];
        str_copy(cc->name, sizeof(cc->name), name);
        str_fmt_cut(where, sizeof(where), "%s: components.%s", fn, name);
        if ((rc = comp_parse(cc, o, where, e))) return rc;
    }
    const char *k;
    json_object_foreach(comps, k, x) {
        if (obs_catalog_order(cat, k) < 0)
            return serr_set(e, SE_INVAL, "%s: components.%s: not in order", fn, k);
    }
    json_t *ex = json_object_get(f->doc, "exec");
    if (ex) {
        static const char *const exk[] = {"tools", NULL};
        if (!json_is_object(ex)) return serr_set(e, SE_INVAL, "%s: exec: not a mapping", fn);
        str_fmt_cut(where, sizeof(where), "%s: exec", fn);
        if ((rc = check_keys(ex, exk, NULL, where, e))) return rc;
        json_t *tools = json_object_get(ex, "tools");
        str_fmt_cut(where, sizeof(where), "%s: exec.tools", fn);
        if (tools && (rc = check_strv(tools, 8, where, e))) return rc;
        cat->exec_tools = json_deep_copy(tools);
        if (tools && cat->exec_tools == NULL) return serr_set(e, SE_NOMEM, "%s: out of memory", where);
    }
    if (cat->exec_tools == NULL) cat->exec_tools = json_array();
    if (cat->exec_tools == NULL) return serr_set(e, SE_NOMEM, "%s: out of memory", fn);
    return 0;
}

/* The versions of one file; later files may hold nothing else. */
static int load_versions(obs_catalog *cat, const cat_file *f, const cat_file *first, bool later,
                         const char *root, serr *e) {
    const char *fn = base_name(f->path);
    int rc;
    if (later) {
        static const char *const top[] = {"apiVersion", "kind", "versions", NULL};
        if ((rc = check_keys(f->doc, top, NULL, fn, e)))
            return serr_wrap(e, "(a later catalog file may only add versions) ");
    }
    json_t *vers = json_object_get(f->doc, "versions");
    if (!json_is_array(vers)) return serr_set(e, SE_INVAL, "%s: versions: required, a list", fn);
    json_t *comps = json_object_get(first->doc, "components");
    size_t i;
    json_t *ve;
    char where[WHERE_MAX];
    json_array_foreach(vers, i, ve) {
        const char *cname = jstr(ve, "component", NULL), *ver = jstr(ve, "version", NULL);
        if (!json_is_object(ve) || cname == NULL || ver == NULL)
            return serr_set(e, SE_INVAL, "%s: versions[%zu]: needs component and version (strings)",
                            fn, i);
        int ci = obs_catalog_order(cat, cname);
        if (ci < 0)
            return serr_set(e, SE_INVAL, "%s: versions[%zu].component: %s is not a component of %s",
                            fn, i, cname, base_name(first->path));
        obs_cat_comp *cc = &cat->c[ci];
        str_fmt_cut(where, sizeof(where), "%s: versions[%zu] (%s %s)", fn, i, cname, ver);
        static const char *const idk[] = {"component", "version", NULL};
        if ((rc = check_keys(ve, idk, version_keys, where, e))) return rc;
        if (!version_valid(ver))
            return serr_set(e, SE_INVAL, "%s.version: not a version like 2.42.0", where);
        if (obs_catalog_version(cc, ver))
            return serr_set(e, SE_INVAL, "%s: %s %s is listed twice", where, cname, ver);
        if (cc->nv >= OBS_MAX_VERSIONS)
            return serr_set(e, SE_INVAL, "%s: more than %d versions of %s", where, OBS_MAX_VERSIONS,
                            cname);
        /* The component's defaults, then the version's own fields. */
        json_t *m = json_object();
        if (m == NULL) return serr_set(e, SE_NOMEM, "%s: out of memory", where);
        const char *k;
        json_t *x;
        json_object_foreach(json_object_get(comps, cname), k, x) {
            if (in_list(version_keys, k)) json_object_set(m, k, x);
        }
        json_object_foreach(ve, k, x) {
            if (in_list(version_keys, k)) json_object_set(m, k, x);
        }
        const char *files_dir = json_object_get(ve, "files") ? f->dir : first->dir;
        obs_cat_version *cv = &cc->v[cc->nv++];
        str_copy(cv->version, sizeof(cv->version), ver);
        rc = version_resolve(cat, cc, cv, m, files_dir, root, where, e);
        json_decref(m);
        if (rc) return rc;
    }
    return 0;
}

int obs_catalog_load(const char *path, const char *root, obs_catalog **out, serr *e) {
    *out = NULL;
    if (path == NULL || *path == '\0') return serr_set(e, SE_INVAL, "catalog: no file given");
    int nf = 0, rc = 0;
    unsigned long nomem = json_alloc_failures();
    obs_catalog *cat = calloc(1, sizeof(*cat));
    cat_file *files = calloc(CAT_FILES_MAX, sizeof(*files));
    if (cat == NULL || files == NULL) {
        free(cat);
        free(files);
        return serr_set(e, SE_NOMEM, "catalog: out of memory");
    }
    /* Split the comma-separated list. */
    for (const char *p = path; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char one[512];
        if (nf >= CAT_FILES_MAX) {
            rc = serr_set(e, SE_INVAL, "catalog: more than %d files", CAT_FILES_MAX);
            goto done;
        }
        if (n == 0 || n >= sizeof(one)) {
            rc = serr_set(e, SE_INVAL, "catalog: an empty or too long file name in \"%.100s\"", path);
            goto done;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if ((rc = file_load(&files[nf++], one, e))) goto done;
        p = c ? c + 1 : p + n;
    }
    str_copy(cat->dir, sizeof(cat->dir), files[0].dir);
    if ((rc = load_components(cat, &files[0], e))) goto done;
    for (int i = 0; i < nf; i++)
        if ((rc = load_versions(cat, &files[i], &files[0], i > 0, root, e))) goto done;
    for (int i = 0; i < cat->n; i++) {
        obs_cat_comp *cc = &cat->c[i];
        if (obs_catalog_version(cc, cc->default_version) == NULL) {
            rc = serr_set(e, SE_INVAL, "%s: components.%s.defaultVersion: %s is not in versions",
                          base_name(files[0].path), cc->name, cc->default_version);
            goto done;
        }
    }
done:
    /* jansson cannot always say it ran out (json_object_set on the merged
     * version, a deep copy): a field lost that way would load as a
     * catalog with a hole, or as a misleading error ("binary: required"). */
    if (json_alloc_failures() != nomem)
        rc = serr_set(e, SE_NOMEM, "catalog %s: out of memory", path);
    for (int i = 0; i < nf; i++) json_decref(files[i].doc);
    free(files);
    if (rc) {
        obs_catalog_free(cat);
        return rc;
    }
    *out = cat;
    return 0;
}
