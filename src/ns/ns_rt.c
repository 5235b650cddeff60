/*
 * ns_rt.c - namespaces on the local runtime (see ns.h for the layout).
 * Pods are started through stamp-run, so a pod that ends leaves its exit
 * status in pods/{pod}/rc even if stampd was down at the time; a running pod
 * is found by lrt_scan under the unit "ns/{ns}/{pod}".
 */
#include "ns/ns.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "runtime/local.h"
#include "util/util.h"

#define MAX_ARGS 64
#define MAX_ENV 32
#define ARG_MAX_LEN 1024

int nsrt_dir(const ctl_ctx *c, const char *ns, const char *sub, char *buf, size_t len) {
    int n = sub ? snprintf(buf, len, "%s/namespaces/%s/%s", c->data_dir, ns, sub)
                : snprintf(buf, len, "%s/namespaces/%s", c->data_dir, ns);
    return n >= (int)len ? SE_INVAL : 0;
}

static int vol_dir(const ctl_ctx *c, const char *ns, const char *vol, char *buf, size_t len) {
    int n = vol ? snprintf(buf, len, "%s/volumes/%s/%s", c->data_dir, ns, vol)
                : snprintf(buf, len, "%s/volumes/%s", c->data_dir, ns);
    return n >= (int)len ? SE_INVAL : 0;
}

static int pod_dir(const ctl_ctx *c, const char *ns, const char *pod, const char *file, char *buf,
                   size_t len) {
    int n = file ? snprintf(buf, len, "%s/namespaces/%s/pods/%s/%s", c->data_dir, ns, pod, file)
                 : snprintf(buf, len, "%s/namespaces/%s/pods/%s", c->data_dir, ns, pod);
    return n >= (int)len ? SE_INVAL : 0;
}

int nsrt_create(ctl_ctx *c, const char *ns, serr *e) {
    char d[PATH_MAX];
    if (nsrt_dir(c, ns, "pods", d, sizeof(d))) return serr_set(e, SE_INVAL, "path too long");
    return mkdir_p(d, 0750, e);
}

static bool annotation_key_valid(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 63 || k[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '-' ||
              k[i] == '.'))
            return false;
    return true;
}

static bool env_key_valid(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 64 || str_has_prefix(k, "STAMP")) return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] == '_') || (i > 0 && isdigit((unsigned char)k[i]))))
            return false;
    return true;
}

static int count_dir(const char *path) {
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int nsrt_pod_start(ctl_ctx *c, const char *ns, const char *bucket, const char *pod,
                   const char *prog, json_t *args, json_t *env, json_t *volumes,
                   int64_t timeout_ms, serr *e) {
    int rc = ns_pod_check(pod, e);
    if (rc) return rc;
    if (args && (!json_is_array(args) || json_array_size(args) > MAX_ARGS))
        return serr_set(e, SE_INVAL, "args: at most %d strings", MAX_ARGS);
    if (env && (!json_is_object(env) || json_object_size(env) > MAX_ENV))
        return serr_set(e, SE_INVAL, "env: an object of at most %d strings", MAX_ENV);
    if (volumes && (!json_is_array(volumes) || json_array_size(volumes) > 16))
        return serr_set(e, SE_INVAL, "volumes: at most 16 names");
    size_t i;
    json_t *v;
    const char *k;
    json_array_foreach(args, i, v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) > ARG_MAX_LEN)
            return serr_set(e, SE_INVAL, "args[%zu]: a string of at most %d bytes", i, ARG_MAX_LEN);
    }
    json_object_foreach(env, k, v) {
        if (!env_key_valid(k) || !json_is_string(v) || strlen(json_string_value(v)) > ARG_MAX_LEN)
            return serr_set(e, SE_INVAL, "env.%.64s: names are [A-Z_][A-Z0-9_]* not starting with STAMP, values strings", k);
    }
    char pods[PATH_MAX], pd[PATH_MAX], path[PATH_MAX], rcpath[PATH_MAX], logpath[PATH_MAX];
    if (nsrt_dir(c, ns, "pods", pods, sizeof(pods)) || pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) ||
        pod_dir(c, ns, pod, "rc", rcpath, sizeof(rcpath)) ||
        pod_dir(c, ns, pod, "log", logpath, sizeof(logpath)))
        return serr_set(e, SE_INVAL, "path too long");
    if (!path_exists(pods)) return serr_set(e, SE_NOTFOUND, "namespace %s has no directory", ns);
    if (path_exists(pd)) return serr_set(e, SE_EXISTS, "pod %s already exists in %s", pod, ns);
    if (count_dir(pods) >= c->cfg->ns_max_pods)
        return serr_set(e, SE_LIMIT, "namespace %s has %lld pods already (ns-max-pods)", ns,
                        (long long)c->cfg->ns_max_pods);
    /* Volumes must exist: a pod cannot create storage by naming it. */
    char vpaths[16][PATH_MAX];
    json_array_foreach(volumes, i, v) {
        const char *vn = json_string_value(v);
        if (vn == NULL || !name_valid(vn, 63) || vol_dir(c, ns, vn, vpaths[i], sizeof(vpaths[i])))
            return serr_set(e, SE_INVAL, "volumes[%zu]: not a volume name", i);
        if (!path_exists(vpaths[i]))
            return serr_set(e, SE_NOTFOUND, "volume %s does not exist in %s", vn, ns);
    }
    if ((rc = mkdir_p(pd, 0750, e))) return rc;
    snprintf(path, sizeof(path), "%s/annotations", pd);
    if ((rc = mkdir_p(path, 0750, e))) return rc;
    json_t *spec = json_pack("{s:s,s:O?,s:O?,s:O?,s:I}", "name", pod, "args", args, "env", env,
                             "volumes", volumes, "createdMs", (json_int_t)now_ms());
    char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(spec);
    snprintf(path, sizeof(path), "%s/spec.json", pd);
    rc = text ? write_file_atomic(path, text, strlen(text), 0640, e) : serr_set(e, SE_NOMEM, "oom");
    free(text);
    if (rc) return rc;

    char runner[PATH_MAX], program[PATH_MAX], tmo[32];
    snprintf(runner, sizeof(runner), "%s/stamp-run", c->libexec);
    if (prog) str_copy(program, sizeof(program), prog);
    else if (c->cfg->pod_command[0]) str_copy(program, sizeof(program), c->cfg->pod_command);
    else snprintf(program, sizeof(program), "%s/stamp-nsworker", c->libexec);
    snprintf(tmo, sizeof(tmo), "%lld", (long long)timeout_ms);
    const char *argv[MAX_ARGS + 8];
    int n = 0;
    argv[n++] = runner;
    argv[n++] = "--rc";
    argv[n++] = rcpath;
    if (timeout_ms > 0) {
        argv[n++] = "--timeout-ms";
        argv[n++] = tmo;
    }
    argv[n++] = "--";
    argv[n++] = program;
    json_array_foreach(args, i, v) argv[n++] = json_string_value(v);
    argv[n] = NULL;

    char (*kv)[ARG_MAX_LEN + 80] = calloc(MAX_ENV + 24, sizeof(*kv));
    if (kv == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    const char *envp[MAX_ENV + 25];
    int ne = 0;
    snprintf(kv[ne], sizeof(kv[0]), "STAMP_NAMESPACE=%s", ns), envp[ne] = kv[ne], ne++;
    snprintf(kv[ne], sizeof(kv[0]), "STAMP_POD=%s", pod), envp[ne] = kv[ne], ne++;
    snprintf(kv[ne], sizeof(kv[0]), "STAMP_BUCKET_ID=%s", bucket), envp[ne] = kv[ne], ne++;
    snprintf(kv[ne], sizeof(kv[0]), "STAMP_POD_DIR=%s", pd), envp[ne] = kv[ne], ne++;
    snprintf(kv[ne], sizeof(kv[0]), "STAMP_ANNOTATIONS_DIR=%s/annotations", pd), envp[ne] = kv[ne], ne++;
    json_array_foreach(volumes, i, v) {
        char up[80];
        size_t j = 0;
        for (const char *p = json_string_value(v); *p && j + 1 < sizeof(up); p++)
            up[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        up[j] = '\0';
        snprintf(kv[ne], sizeof(kv[0]), "STAMP_VOLUME_%s=%s", up, vpaths[i]);
        envp[ne] = kv[ne];
        ne++;
    }
    json_object_foreach(env, k, v) {
        snprintf(kv[ne], sizeof(kv[0]), "%s=%s", k, json_string_value(v));
        envp[ne] = kv[ne];
        ne++;
    }
    envp[ne] = NULL;
    char unit[LRT_UNIT_MAX];
    snprintf(unit, sizeof(unit), "ns/%s/%s", ns, pod);
    lrt_spawn_spec sp = {.unit = unit, .argv = argv, .env = envp, .log_path = logpath, .cwd = pd};
    pid_t pid;
    rc = lrt_spawn(&sp, &pid, e);
    free(kv);
    return rc;
}

/* An annotation as its bytes (one trailing line end is not part of it). */
static int read_annotation_raw(const char *pd, const char *key, char **data, size_t *len) {
    char p[PATH_MAX + 300];
    if (snprintf(p, sizeof(p), "%s/annotations/%s", pd, key) >= (int)sizeof(p)) return SE_INVAL;
    int rc = read_file(p, NS_ANNOTATION_VALUE_MAX, data, len, NULL);
    if (rc) return rc;
    while (*len > 0 && ((*data)[*len - 1] == '\n' || (*data)[*len - 1] == '\r')) (*data)[--*len] = '\0';
    return 0;
}

char *nsrt_base64(const void *data, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* A pod writes its annotations as files, and may write any bytes.  Text
 * that is UTF-8 without NUL is shown as it is; anything else is shown with
 * the odd bytes as \xNN and its exact bytes, base64, in encoded{} (so that
 * nothing a pod reported vanishes or is silently altered). */
static json_t *read_annotations(const char *pd, json_t **encoded) {
    json_t *o = json_object();
    *encoded = NULL;
    char ad[PATH_MAX];
    snprintf(ad, sizeof(ad), "%s/annotations", pd);
    DIR *d = opendir(ad);
    if (d == NULL) return o;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!annotation_key_valid(de->d_name)) continue;
        char *text = NULL;
        size_t len = 0;
        if (read_annotation_raw(pd, de->d_name, &text, &len) == 0) {
            if (utf8_valid(text, len)) {
                json_object_set_new(o, de->d_name, json_stringn(text, len));
            } else {
                size_t max = len * 4 + 1;
                char *shown = malloc(max), *b64 = nsrt_base64(text, len);
                if (shown && b64) {
                    json_object_set_new(o, de->d_name, json_string(utf8_sanitize(text, len, shown, max)));
                    if (*encoded == NULL) *encoded = json_object();
                    json_object_set_new(*encoded, de->d_name, json_string(b64));
                }
                free(shown);
                free(b64);
            }
        }
        free(text);
    }
    closedir(d);
    return o;
}

int nsrt_annotation(ctl_ctx *c, const char *ns, const char *pod, const char *key, char **data,
                    size_t *len, serr *e) {
    char pd[PATH_MAX];
    *data = NULL;
    *len = 0;
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd))) return serr_set(e, SE_INVAL, "name too long");
    int rc = read_annotation_raw(pd, key, data, len);
    if (rc == SE_NOTFOUND) return rc;
    if (rc) return serr_set(e, rc, "pod %s: annotation %s cannot be read", pod, key);
    return 0;
}

static void pod_state(ctl_ctx *c, const char *ns, const char *pod, const lrt_proc *procs, int np,
                      json_t *out) {
    char unit[LRT_UNIT_MAX], rcpath[PATH_MAX];
    snprintf(unit, sizeof(unit), "ns/%s/%s", ns, pod);
    for (int i = 0; i < np; i++) {
        if (strcmp(procs[i].unit, unit) == 0) {
            json_object_set_new(out, "phase", json_string("Running"));
            json_object_set_new(out, "pid", json_integer(procs[i].pid));
            return;
        }
    }
    pod_dir(c, ns, pod, "rc", rcpath, sizeof(rcpath));
    char *text = NULL;
    if (read_file(rcpath, 4096, &text, NULL, NULL) == 0) {
        json_t *res = json_loads(text, 0, NULL);
        free(text);
        json_t *code = json_object_get(res, "exit");
        int64_t x = json_is_integer(code) ? json_integer_value(code) : -1;
        json_object_set_new(out, "phase", json_string(x == 0 ? "Succeeded" : "Failed"));
        json_object_set_new(out, "exitCode", json_integer(x));
        json_t *ended = json_object_get(res, "endedMs");
        if (json_is_integer(ended)) {
            char t[40];
            json_object_set_new(out, "finishedAt",
                                json_string(fmt_time_rfc3339(json_integer_value(ended), t, sizeof(t))));
        }
        json_decref(res);
        return;
    }
    json_object_set_new(out, "phase", json_string("Unknown"));
}

static int scan_ns(const char *ns, lrt_proc **procs) {
    char prefix[LRT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "ns/%s/", ns);
    *procs = calloc(LRT_MAX_PROCS, sizeof(lrt_proc));
    if (*procs == NULL) return 0;
    int n = lrt_scan(prefix, true, *procs, LRT_MAX_PROCS, NULL);
    return n < 0 ? 0 : n > LRT_MAX_PROCS ? LRT_MAX_PROCS : n;
}

static int pod_entry(const struct dirent *de) { return name_valid(de->d_name, NS_POD_MAX); }

json_t *nsrt_pods(ctl_ctx *c, const char *ns) {
    json_t *arr = json_array();
    char pods[PATH_MAX];
    if (nsrt_dir(c, ns, "pods", pods, sizeof(pods))) return arr;
    struct dirent **names;
    int n = scandir(pods, &names, pod_entry, alphasort); /* name order: stable listings */
    if (n < 0) return arr;
    lrt_proc *procs = NULL;
    int np = scan_ns(ns, &procs);
    for (int i = 0; i < n; i++) {
        const char *pod = names[i]->d_name;
        char pd[PATH_MAX], sp[PATH_MAX + 16];
        pod_dir(c, ns, pod, NULL, pd, sizeof(pd));
        json_t *p = json_pack("{s:s}", "name", pod);
        pod_state(c, ns, pod, procs, np, p);
        snprintf(sp, sizeof(sp), "%s/spec.json", pd);
        char *text = NULL;
        if (read_file(sp, 1 << 20, &text, NULL, NULL) == 0) {
            json_t *spec = json_loads(text, 0, NULL);
            json_t *cm = json_object_get(spec, "createdMs");
            char t[40];
            if (json_is_integer(cm))
                json_object_set_new(p, "startedAt", json_string(fmt_time_rfc3339(json_integer_value(cm), t, sizeof(t))));
            if (json_is_array(json_object_get(spec, "args"))) json_object_set(p, "args", json_object_get(spec, "args"));
            json_decref(spec);
            free(text);
        }
        json_t *encoded = NULL;
        json_object_set_new(p, "annotations", read_annotations(pd, &encoded));
        if (encoded) json_object_set_new(p, "annotationsBase64", encoded);
        json_array_append_new(arr, p);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(procs);
    return arr;
}

int nsrt_pod_phase(ctl_ctx *c, const char *ns, const char *pod, char *phase, size_t len,
                   int *exit_code, serr *e) {
    char pd[PATH_MAX];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    lrt_proc *procs = NULL;
    int np = scan_ns(ns, &procs);
    json_t *o = json_object();
    pod_state(c, ns, pod, procs, np, o);
    free(procs);
    str_copy(phase, len, json_string_value(json_object_get(o, "phase")));
    json_t *x = json_object_get(o, "exitCode");
    *exit_code = json_is_integer(x) ? (int)json_integer_value(x) : -1;
    json_decref(o);
    return 0;
}

int nsrt_pod_log(ctl_ctx *c, const char *ns, const char *pod, size_t max, char **data,
                 size_t *len, bool *truncated, serr *e) {
    *data = NULL;
    *len = 0;
    if (truncated) *truncated = false;
    char pd[PATH_MAX], lp[PATH_MAX];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    pod_dir(c, ns, pod, "log", lp, sizeof(lp));
    int fd = open(lp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) return serr_set(e, SE_IO, "open %s: %s", lp, strerror(errno));
        *data = calloc(1, 1);
        return *data ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return serr_set(e, SE_IO, "stat %s: %s", lp, strerror(errno));
    }
    size_t size = (size_t)st.st_size, want = size;
    off_t off = 0;
    if (size > max) {
        want = max;
        off = (off_t)(size - max);
        if (truncated) *truncated = true;
    }
    char *buf = malloc(want + 1);
    if (buf == NULL) {
        close(fd);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

int nsrt_annotate_check(const char *key, const char *value, serr *e) {
    if (!annotation_key_valid(key)) {
        char shown[80];
        return serr_set(e, SE_INVAL, "annotation key \"%s\": 1-63 of [a-z0-9.-]",
                        utf8_sanitize(key, strlen(key), shown, sizeof(shown)));
    }
    if (value && strlen(value) > NS_ANNOTATION_VALUE_MAX)
        return serr_set(e, SE_TOOBIG, "annotation %s: value longer than %d bytes", key,
                        NS_ANNOTATION_VALUE_MAX);
    if (value && !utf8_valid(value, strlen(value)))
        return serr_set(e, SE_INVAL, "annotation %s: value is not UTF-8 text", key);
    return 0;
}

int nsrt_annotate(ctl_ctx *c, const char *ns, const char *pod, const char *key,
                  const char *value, serr *e) {
    int rc = nsrt_annotate_check(key, value, e);
    if (rc) return rc;
    char pd[PATH_MAX], p[PATH_MAX + 128];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    snprintf(p, sizeof(p), "%s/annotations", pd);
    rc = mkdir_p(p, 0750, e);
    if (rc) return rc;
    snprintf(p, sizeof(p), "%s/annotations/%s", pd, key);
    if (value == NULL) {
        if (unlink(p) != 0 && errno != ENOENT)
            return serr_set(e, SE_IO, "annotation %s: %s", key, strerror(errno));
        return 0;
    }
    return write_file_atomic(p, value, strlen(value), 0640, e);
}

int nsrt_volume_create(ctl_ctx *c, const char *ns, const char *vol, serr *e) {
    if (!name_valid(vol, 63))
        return serr_set(e, SE_INVAL, "volume name \"%.80s\": 1-63 lowercase letters, digits and '-'", vol);
    char p[PATH_MAX];
    if (vol_dir(c, ns, vol, p, sizeof(p))) return serr_set(e, SE_INVAL, "path too long");
    if (path_exists(p)) return serr_set(e, SE_EXISTS, "volume %s already exists in %s", vol, ns);
    char parent[PATH_MAX];
    vol_dir(c, ns, NULL, parent, sizeof(parent));
    if (count_dir(parent) >= 16) return serr_set(e, SE_LIMIT, "namespace %s has 16 volumes already", ns);
    return mkdir_p(p, 0750, e);
}

void nsrt_counts(ctl_ctx *c, const char *ns, int *pods, int *volumes) {
    char p[PATH_MAX];
    *pods = nsrt_dir(c, ns, "pods", p, sizeof(p)) ? 0 : count_dir(p);
    *volumes = vol_dir(c, ns, NULL, p, sizeof(p)) ? 0 : count_dir(p);
}

int nsrt_stop_pods(ctl_ctx *c, const char *ns, int64_t timeout_ms, serr *e) {
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        lrt_proc *procs = NULL;
        int np = scan_ns(ns, &procs);
        if (np == 0) {
            free(procs);
            lrt_invalidate();
            return 0;
        }
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            free(procs);
            return serr_set(e, SE_TIMEOUT, "%d pod process(es) of %s still running", np, ns);
        }
        int64_t grace = c->cfg->stop_grace_ms < left ? c->cfg->stop_grace_ms : left;
        for (int i = 0; i < np; i++) lrt_stop(procs[i].pid, (int)grace, NULL);
        free(procs);
        lrt_invalidate();
    }
}

int nsrt_delete(ctl_ctx *c, const char *ns, int64_t timeout_ms, int *orphans, serr *e) {
    *orphans = 0;
    int64_t deadline = mono_ms() + timeout_ms;
    int rc = nsrt_stop_pods(c, ns, timeout_ms, e);
    if (rc) return rc;
    char d[PATH_MAX], v[PATH_MAX];
    nsrt_dir(c, ns, NULL, d, sizeof(d));
    vol_dir(c, ns, NULL, v, sizeof(v));
    for (;;) {
        serr ie = {0};
        remove_tree(d, &ie);
        remove_tree(v, &ie);
        if (!path_exists(d) && !path_exists(v)) return 0;
        if (mono_ms() >= deadline) break;
        sleep_ms(100);
    }
    *orphans = count_dir(v);
    if (path_exists(d)) return serr_set(e, SE_TIMEOUT, "namespace directory %s still present", d);
    return 0;
}
