/*
 * render.c - what a component is started from (obs.h): the catalog's
 * argument lists and configuration document with the platform's
 * {placeholders} filled in, "$if" objects pruned for peers that are not
 * enabled, and the user's config merged over the result (RFC 7386).
 *
 * Pure functions over the caller's obs_vars: no I/O, no global state;
 * safe on any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "obs/obs.h"
#include "util/util.h"
#include "util/yamljson.h"

#define ARG_MAX_BYTES 4096
#define ARGS_MAX 64
#define STR_MAX_BYTES (16 * 1024)    /* one expanded string of a config */
#define DOC_MAX_BYTES (256 * 1024)   /* a rendered config, serialized */

static const char *const plain_names[] = {
    "port",    "data",   "config",       "configdir", "log",  "retention",
    "secrets", "targets", "rules",       "stampd",    "stampd_token",
    "catalog", "name",   "version",      "platform",  NULL};

bool obs_placeholder_known(const obs_catalog *cat, const char *name) {
    if (str_has_prefix(name, "port:")) {
        const char *c = name + 5;
        if (cat) return obs_catalog_order(cat, c) >= 0;
        return name_valid(c, OBS_NAME_MAX - 1);
    }
    for (int i = 0; plain_names[i]; i++)
        if (strcmp(plain_names[i], name) == 0) return true;
    return false;
}

int obs_vars_set(obs_vars *v, const char *key, const char *val, serr *e) {
    if (strlen(key) >= sizeof(v->key[0]))
        return serr_set(e, SE_INVAL, "placeholder name \"%.40s...\" too long", key);
    if (strlen(val) >= sizeof(v->val[0]))
        return serr_set(e, SE_TOOBIG, "value of {%s} longer than %zu bytes", key,
                        sizeof(v->val[0]) - 1);
    int i = 0;
    while (i < v->n && strcmp(v->key[i], key) != 0) i++;
    if (i == v->n) {
        if (v->n >= OBS_VARS_MAX)
            return serr_set(e, SE_LIMIT, "more than %d placeholders", OBS_VARS_MAX);
        v->n++;
        str_copy(v->key[i], sizeof(v->key[i]), key);
    }
    str_copy(v->val[i], sizeof(v->val[i]), val);
    return 0;
}

static const char *vars_get(const obs_vars *v, const char *key) {
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->key[i], key) == 0) return v->val[i];
    return NULL;
}

/* The length of the placeholder name at p (just after a '{') when p holds
 * NAME '}' of the documented shape, else 0. */
static size_t placeholder_at(const char *p) {
    const char *q = p;
    if (!(*q >= 'a' && *q <= 'z')) return 0;
    while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_') q++;
    if (*q == ':') {
        const char *c0 = ++q;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-') q++;
        if (q == c0) return 0;
    }
    return *q == '}' ? (size_t)(q - p) : 0;
}

int obs_expand(const obs_vars *v, const char *s, char *out, size_t len, serr *e) {
    size_t n = 0;
    if (len == 0) return serr_set(e, SE_TOOBIG, "no room to expand into");
    for (const char *p = s; *p;) {
        size_t nl = *p == '{' ? placeholder_at(p + 1) : 0;
        const char *piece = p;
        size_t plen = 1;
        char name[80];
        if (nl) {
            if (nl >= sizeof(name))
                return serr_set(e, SE_INVAL, "placeholder too long in \"%.60s\"", s);
            memcpy(name, p + 1, nl);
            name[nl] = '\0';
            piece = vars_get(v, name);
            if (piece == NULL) {
                if (obs_placeholder_known(v->cat, name))
                    return serr_set(e, SE_INVAL, "placeholder {%s} has no value here%s", name,
                                    str_has_prefix(name, "port:") ? " (is that component enabled?)"
                                                                  : "");
                return serr_set(e, SE_INVAL, "unknown placeholder {%s}", name);
            }
            plen = strlen(piece);
            p += nl + 2;
        } else {
            p++;
        }
        if (plen >= len - n)
            return serr_set(e, SE_TOOBIG, "\"%.60s\" expands to more than %zu bytes", s, len - 1);
        memcpy(out + n, piece, plen);
        n += plen;
    }
    out[n] = '\0';
    return 0;
}

void obs_argv_free(char **argv) {
    if (argv == NULL) return;
    for (char **a = argv; *a; a++) free(*a);
    free(argv);
}

int obs_render_argv(const obs_vars *v, const char *binary, const json_t *args, char ***argv,
                    serr *e) {
    *argv = NULL;
    size_t na = args ? json_array_size(args) : 0;
    if (args && !json_is_array(args)) return serr_set(e, SE_INVAL, "arguments: not a list");
    if (na > ARGS_MAX) return serr_set(e, SE_INVAL, "more than %d arguments", ARGS_MAX);
    if (binary == NULL && na == 0) return serr_set(e, SE_INVAL, "an empty command");
    char **a = calloc(na + 2, sizeof(*a));
    char *buf = malloc(ARG_MAX_BYTES);
    int rc = 0, k = 0;
    if (a == NULL || buf == NULL) {
        rc = serr_set(e, SE_NOMEM, "arguments: out of memory");
        goto fail;
    }
    if (binary && (a[k++] = strdup(binary)) == NULL) {
        rc = serr_set(e, SE_NOMEM, "arguments: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < na; i++) {
        const char *s = json_string_value(json_array_get(args, i));
        if (s == NULL) {
            rc = serr_set(e, SE_INVAL, "argument %zu: not a string", i);
            goto fail;
        }
        if ((rc = obs_expand(v, s, buf, ARG_MAX_BYTES, e))) {
            serr_wrap(e, "argument %zu: ", i);
            goto fail;
        }
        if ((a[k++] = strdup(buf)) == NULL) {
            rc = serr_set(e, SE_NOMEM, "arguments: out of memory");
            goto fail;
        }
    }
    free(buf);
    *argv = a;
    return 0;
fail:
    free(buf);
    obs_argv_free(a);
    return rc;
}

/* Drops objects whose "$if" names a component that is not enabled; false
 * when node itself goes. */
static int prune(const obs_vars *v, json_t *node, bool *keep, int depth, serr *e) {
    *keep = true;
    if (depth > MANIFEST_MAX_DEPTH) return serr_set(e, SE_INVAL, "configuration nested too deep");
    if (json_is_object(node)) {
        json_t *cond = json_object_get(node, "$if");
        if (cond) {
            int i = v->cat ? obs_catalog_order(v->cat, json_string_value(cond)) : -1;
            if (i < 0)
                return serr_set(e, SE_INVAL, "\"$if\": %s is not a component of the catalog",
                                json_is_string(cond) ? json_string_value(cond) : "(not a string)");
            if (!v->enabled[i]) {
                *keep = false;
                return 0;
            }
            json_object_del(node, "$if");
        }
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(node, tmp, k, x) {
            bool kx;
            int rc = prune(v, x, &kx, depth + 1, e);
            if (rc) return rc;
            if (!kx) json_object_del(node, k);
        }
    } else if (json_is_array(node)) {
        for (size_t i = json_array_size(node); i-- > 0;) {
            bool kx;
            int rc = prune(v, json_array_get(node, i), &kx, depth + 1, e);
            if (rc) return rc;
            if (!kx) json_array_remove(node, i);
        }
    }
    return 0;
}

/* The expanded value of a string: a lone port placeholder becomes a number. */
static int expand_value(const obs_vars *v, const char *s, char *buf, json_t **out, serr *e) {
    int rc = obs_expand(v, s, buf, STR_MAX_BYTES, e);
    if (rc) return rc;
    size_t nl = s[0] == '{' ? placeholder_at(s + 1) : 0;
    int64_t port;
    if (nl && s[nl + 2] == '\0' && (strncmp(s + 1, "port}", 5) == 0 || str_has_prefix(s + 1, "port:")) &&
        parse_i64(buf, 0, 65535, &port) == 0) {
        *out = json_integer(port);
        return 0;
    }
    *out = json_string(buf);
    return *out ? 0 : serr_set(e, SE_INVAL, "\"%.60s\" does not expand to UTF-8 text", s);
}

static int expand_tree(const obs_vars *v, json_t *node, char *buf, serr *e) {
    if (json_is_object(node)) {
        const char *k;
        json_t *x;
        json_object_foreach(node, k, x) {
            int rc;
            if (json_is_string(x)) {
                json_t *nv;
                if ((rc = expand_value(v, json_string_value(x), buf, &nv, e)))
                    return serr_wrap(e, "%s: ", k);
                json_object_set_new(node, k, nv); /* replaces in place */
            } else if ((rc = expand_tree(v, x, buf, e))) {
                return rc;
            }
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *x = json_array_get(node, i);
            int rc;
            if (json_is_string(x)) {
                json_t *nv;
                if ((rc = expand_value(v, json_string_value(x), buf, &nv, e))) return rc;
                json_array_set_new(node, i, nv);
            } else if ((rc = expand_tree(v, x, buf, e))) {
                return rc;
            }
        }
    }
    return 0;
}

/* RFC 7386: objects merge member by member, null deletes, anything else
 * replaces.  Returns the new target (a new reference; target's is taken). */
static json_t *merge_patch(json_t *target, const json_t *patch) {
    if (!json_is_object(patch)) {
        json_decref(target);
        return json_deep_copy(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
    }
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)patch, k, x) {
        if (json_is_null(x)) {
            json_object_del(target, k);
            continue;
        }
        json_t *cur = json_object_get(target, k);
        json_incref(cur);
        json_object_set_new(target, k, merge_patch(cur, x));
    }
    return target;
}

int obs_render_config(const obs_vars *v, const obs_cat_version *cv, const json_t *user,
                      json_t **out, serr *e) {
    *out = NULL;
    if (cv->config == NULL) {
        if (user && json_object_size(user) > 0)
            return serr_set(e, SE_INVAL, "config given, but version %s has no configuration file",
                            cv->version);
        return 0;
    }
    if (user && !json_is_object(user)) return serr_set(e, SE_INVAL, "config: not an object");
    if (user && json_depth(user) > MANIFEST_MAX_DEPTH)
        return serr_set(e, SE_INVAL, "config: nested too deep");
    json_t *doc = json_deep_copy(cv->config);
    char *buf = malloc(STR_MAX_BYTES);
    int rc = 0;
    bool keep;
    if (doc == NULL || buf == NULL) {
        rc = serr_set(e, SE_NOMEM, "rendering the configuration: out of memory");
        goto done;
    }
    if ((rc = prune(v, doc, &keep, 0, e))) goto done;
    if (!keep) {
        rc = serr_set(e, SE_INVAL, "the whole configuration carries \"$if\"");
        goto done;
    }
    if ((rc = expand_tree(v, doc, buf, e))) {
        serr_wrap(e, "configuration: ");
        goto done;
    }
    if (user) doc = merge_patch(doc, user);
    if (json_depth(doc) > MANIFEST_MAX_DEPTH) {
        rc = serr_set(e, SE_INVAL, "the configuration is nested deeper than %d", MANIFEST_MAX_DEPTH);
        goto done;
    }
    size_t size = json_dumpb(doc, NULL, 0, JSON_COMPACT);
    if (size > DOC_MAX_BYTES) {
        rc = serr_set(e, SE_TOOBIG, "the configuration is %zu bytes; the limit is %d", size,
                      DOC_MAX_BYTES);
        goto done;
    }
done:
    free(buf);
    if (rc) {
        json_decref(doc);
        return rc;
    }
    *out = doc;
    return 0;
}
