/*
 * exec.c - the variables and environment of workloads and exec steps, and
 * the exec-step runner: a step's create or delete command run by stamp-run
 * under its own unit, persisted before it starts, its result file written
 * atomically by stamp-run.  After a crash: a result file means the run
 * ended; a live process means it is running; neither means it never
 * started, so it is started (once) now.  Nothing here waits for a command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "stamp/internal.h"

#define TPL_STEP_NAME_KEY 160 /* "<step>/<tag>" */
#include "util/log.h"
#include "util/util.h"

void sc_var_set(sc_vars *v, const char *name, const char *value) {
    size_t nl = strlen(name);
    for (int i = 0; i < v->n; i++)
        if (strncmp(v->kv[i], name, nl) == 0 && v->kv[i][nl] == '=') {
            snprintf(v->kv[i], sizeof(v->kv[i]), "%s=%s", name, value);
            return;
        }
    if (v->n < SC_MAX_VARS) snprintf(v->kv[v->n++], sizeof(v->kv[0]), "%s=%s", name, value);
}

static const char *var_get(const sc_vars *v, const char *name, size_t nl) {
    for (int i = 0; i < v->n; i++)
        if (strncmp(v->kv[i], name, nl) == 0 && v->kv[i][nl] == '=') return v->kv[i] + nl + 1;
    return NULL;
}

sc_vars *sc_vars_new(sctx *s) {
    sc_vars *v = calloc(1, sizeof(*v));
    if (v == NULL) return NULL;
    json_t *spec = s->r.spec;
    char buf[PATH_MAX];
    sc_var_set(v, "STAMP_NAME", s->name);
    sc_var_set(v, "STAMP_REGION", jstr(spec, "region", ""));
    sc_var_set(v, "STAMP_REGION_CODE", jstr(spec, "regionCode", ""));
    sc_var_set(v, "STAMP_ID", jstr(spec, "stampId", ""));
    sc_var_set(v, "STAMP_TEMPLATE", jstr(spec, "template", ""));
    sc_var_set(v, "STAMP_LIBEXEC", s->c->libexec);
    sc_var_set(v, "STAMP_DATA_DIR", s->c->data_dir);
    sc_var_set(v, "STAMP_DIR", s->dir);
    /* s->dir fits (stamp_dir checked it) with room for any suffix. */
    if (str_fmt(buf, sizeof(buf), NULL, "path", "%s/logs", s->dir) == 0) sc_var_set(v, "LOG_DIR", buf);
    const char *ep = jstr(s->r.status, "endpoint", NULL);
    if (ep) sc_var_set(v, "STAMP_ENDPOINT", ep);
    const char *k;
    json_t *val;
    /* The declared defaults of the template it runs first, then its
     * parameters (which replace them).  Names are verbatim: ${app.version}
     * expands the parameter app.version. */
    json_t *tspec = s->tspec ? s->tspec : json_object_get(spec, "templateSpec");
    json_t *decl = json_object_get(tspec, "parameters");
    for (int pass = 0; pass < 2; pass++) {
        json_t *from = pass == 0 ? decl : s->params ? s->params : json_object_get(spec, "parameters");
        json_object_foreach(from, k, val) {
            if (pass == 0) val = json_object_get(val, "default");
            if (json_is_string(val)) sc_var_set(v, k, json_string_value(val));
            else if (json_is_integer(val)) {
                snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(val));
                sc_var_set(v, k, buf);
            }
        }
    }
    return v;
}

void sc_vars_free(sc_vars *v) { free(v); }

int sc_expand(const sc_vars *v, const char *in, char *out, size_t len, serr *e) {
    size_t o = 0;
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end == NULL) return serr_set(e, SE_INVAL, "unterminated ${ in \"%s\"", in);
            const char *val = var_get(v, p + 2, (size_t)(end - p - 2));
            if (val == NULL)
                return serr_set(e, SE_INVAL, "unknown variable ${%.*s} in \"%s\"",
                                (int)(end - p - 2), p + 2, in);
            size_t vl = strlen(val);
            if (o + vl >= len) return serr_set(e, SE_TOOBIG, "expansion of \"%s\" too long", in);
            memcpy(out + o, val, vl);
            o += vl;
            p = end + 1;
            continue;
        }
        if (o + 1 >= len) return serr_set(e, SE_TOOBIG, "expansion of \"%s\" too long", in);
        out[o++] = *p++;
    }
    out[o] = '\0';
    return 0;
}

int sc_vars_step_env(sc_vars *v, const tpl_step *st, serr *e) {
    const char *k;
    json_t *val;
    char raw[512], buf[1024];
    json_object_foreach(st->env, k, val) {
        if (json_is_integer(val)) snprintf(raw, sizeof(raw), "%lld", (long long)json_integer_value(val));
        else str_copy(raw, sizeof(raw), json_string_value(val));
        int rc = sc_expand(v, raw, buf, sizeof(buf), e);
        if (rc) return rc;
        sc_var_set(v, k, buf);
    }
    return 0;
}

const char **sc_vars_envp(const sc_vars *v) {
    const char **env = calloc((size_t)v->n + 1, sizeof(*env));
    if (env == NULL) return NULL;
    for (int i = 0; i < v->n; i++) env[i] = v->kv[i];
    return env;
}

/* Mark a run as started, in status, before anything is spawned: after a
 * crash we must know a run may exist before we can have started it. */
static int begin_run(sctx *s, const tpl_step *stp, const char *tag, json_t *prog, serr *e) {
    char runid[64];
    /* Run numbers of a step and tag only grow, across redeploys that reset
     * the step progress too: a new run never finds an old run's result. */
    char key[TPL_STEP_NAME_KEY];
    snprintf(key, sizeof(key), "%s/%s", stp->name, tag);
    json_t *seen = jchild(s->r.status, "execRuns");
    int64_t n = jint(prog, "runs", 0);
    if (jint(seen, key, 0) > n) n = jint(seen, key, 0);
    n++;
    json_object_set_new(seen, key, json_integer(n));
    snprintf(runid, sizeof(runid), "%s-%lld", tag, (long long)n);
    json_object_set_new(prog, "runs", json_integer(n));
    json_object_set_new(prog, "runId", json_string(runid));
    json_object_set_new(prog, "state", json_string("Running"));
    json_object_set_new(prog, "startedMs", json_integer(now_ms()));
    /* Which create commands may have run is what decides which delete
     * commands run; unlike the step progress, it is never reset. */
    if (strcmp(tag, "create") == 0) {
        json_t *created = jchild(s->r.status, "createdSteps");
        if (!json_is_string(json_object_get(created, stp->name))) {
            char when[40];
            json_object_set_new(created, stp->name,
                                json_string(fmt_time_rfc3339_ms(now_ms(), when, sizeof(when))));
        }
    }
    s->dirty = true;
    return sc_save(s, e);
}

/* The run ended: its result file says how. */
static void end_run(sctx *s, const char *tag, const char *text, const char *logpath, json_t *prog,
                    int *result) {
    json_t *res = json_loads(text, 0, NULL);
    int64_t code = res ? jint(res, "exit", -1) : -1;
    bool timed_out = res && sc_jbool(res, "timedOut");
    json_object_set_new(prog, "endedMs", json_integer(now_ms()));
    json_object_set_new(prog, "exitCode", json_integer(code));
    json_object_set_new(prog, "log", json_string(logpath));
    if (code == 0) {
        json_object_set_new(prog, "state", json_string("Done"));
        *result = RUN_OK;
    } else {
        char msg[256];
        if (timed_out) snprintf(msg, sizeof(msg), "%s command timed out", tag);
        else snprintf(msg, sizeof(msg), "%s command exited %lld", tag, (long long)code);
        json_object_set_new(prog, "state", json_string("Failed"));
        json_object_set_new(prog, "message", json_string(msg));
        *result = RUN_FAILED;
    }
    json_decref(res);
    s->dirty = true;
}

static int spawn_run(sctx *s, const tpl_step *stp, const char *cmd, const char *unit,
                     const char *rcpath, const char *logpath, serr *e) {
    sc_vars *v = sc_vars_new(s);
    if (v == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    sc_var_set(v, "STAMP_STEP", stp->name);
    int rc = sc_vars_step_env(v, stp, e);
    const char **env = rc == 0 ? sc_vars_envp(v) : NULL;
    if (rc == 0 && env == NULL) rc = serr_set(e, SE_NOMEM, "out of memory");
    if (rc == 0) {
        char prog_path[PATH_MAX], tmo[32];
        snprintf(prog_path, sizeof(prog_path), "%s/stamp-run", s->c->libexec);
        snprintf(tmo, sizeof(tmo), "%lld", (long long)stp->timeout_ms);
        /* --reap-all: what the command started ends with it, also a
         * process that left its group (setsid, a daemon): a step past its
         * timeout leaves nothing running. */
        const char *argv[] = {prog_path, "--rc", rcpath, "--timeout-ms", tmo, "--reap-all", "--",
                              "/bin/sh", "-c", cmd, NULL};
        rt_spawn_spec sp = {.unit = unit, .argv = argv, .env = env, .log_path = logpath, .cwd = s->dir};
        pid_t pid;
        rc = rt_spawn(s->c->rt, &sp, &pid, e);
    }
    free(env);
    sc_vars_free(v);
    return rc;
}

int sc_exec_follow(sctx *s, const tpl_step *stp, const char *cmd, const char *tag, json_t *prog,
                   int *result, serr *e) {
    char runid[64], unit[RT_UNIT_MAX], rcpath[PATH_MAX], logpath[PATH_MAX], dir[PATH_MAX];
    int rc;
    if (strcmp(jstr(prog, "state", "Pending"), "Running") != 0 &&
        (rc = begin_run(s, stp, tag, prog, e)))
        return rc;
    str_copy(runid, sizeof(runid), jstr(prog, "runId", "run"));
    if ((rc = str_fmt(dir, sizeof(dir), e, "path", "%s/steps", s->dir)) || (rc = mkdir_p(dir, 0750, e)))
        return rc;
    if (snprintf(rcpath, sizeof(rcpath), "%s/%s.%s.rc", dir, stp->name, runid) >= (int)sizeof(rcpath) ||
        snprintf(logpath, sizeof(logpath), "%s/%s.%s.log", dir, stp->name, runid) >= (int)sizeof(logpath) ||
        snprintf(unit, sizeof(unit), "%s/x/%s/%s", s->name, stp->name, runid) >= (int)sizeof(unit))
        return serr_set(e, SE_TOOBIG, "step %s: paths too long", stp->name);

    char *text = NULL;
    if (read_file(rcpath, 4096, &text, NULL, NULL) == 0) {
        end_run(s, tag, text, logpath, prog, result);
        free(text);
        return 0;
    }
    rt_proc p[2];
    int n = rt_scan(s->c->rt, unit, true, p, 2, e);
    if (n < 0) return n;
    if (n == 0 && read_file(rcpath, 4096, &text, NULL, NULL) == 0) {
        /* It ended between the first look at the result file and the scan:
         * stamp-run writes the file before it exits, so a second look after
         * a scan that finds nothing tells "ended" from "never started". */
        end_run(s, tag, text, logpath, prog, result);
        free(text);
        return 0;
    }
    if (n == 0) {
        /* Neither running nor finished: start it (the first time, or again
         * after a crash that came between persisting Running and the spawn). */
        if ((rc = spawn_run(s, stp, cmd, unit, rcpath, logpath, e))) return rc;
        log_info("stamp %s: step %s: running %s command (%s)", s->name, stp->name, tag, runid);
    }
    *result = RUN_RUNNING;
    sc_want(s, SC_EXEC_POLL_MS);
    return 0;
}
