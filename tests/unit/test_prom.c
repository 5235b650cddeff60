/*
 * test_prom.c - what stampd shows Prometheus of the stamps (stamp/prom.h),
 * from stamps written into a temporary SQLite store in every phase the
 * series distinguish: the phase counts, the phase age, why a Failed stamp
 * failed, the attempt of a creation or activation, the health checks of
 * stamps whose checks run (and none for the others), a recovery under way,
 * label values escaped, and the service discovery listing the metrics
 * ports of the replicas that run (real processes of the local runtime) of
 * Active and Draining stamps only, without ever leasing a port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "health/health.h"
#include "runtime/runtime.h"
#include "stamp/internal.h"
#include "stamp/prom.h"
#include "util/util.h"
#include "util/yamljson.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    stamp_config cfg;
    ctl_ctx c;
    json_t *tpl; /* the shipped template's spec */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    str_copy(f->dir, sizeof(f->dir), "/tmp/stamp-prom-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/stamp.db", f->dir);
    serr e = {0};
    assert_int_equal(store_open_sqlite(f->path, &f->c.st, &e), 0);
    config_defaults(&f->cfg);
    f->c.cfg = &f->cfg;

    const char *src = getenv("STAMP_SRC");
    char path[1024], *text;
    size_t len;
    json_t *doc;
    snprintf(path, sizeof(path), "%s/deploy/templates/synaxis-stamp.yaml", src ? src : "..");
    assert_int_equal(read_file(path, 1 << 20, &text, &len, &e), 0);
    assert_int_equal(yaml_to_json(text, len, &doc, NULL, &e), 0);
    free(text);
    f->tpl = json_incref(json_object_get(doc, "spec"));
    json_decref(doc);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    store_close(f->c.st);
    json_decref(f->tpl);
    remove_tree(f->dir, NULL);
    free(f);
    return 0;
}

/* A stamp of the shipped template in region, phase since `age_ms` ago;
 * status_extra (JSON, may be NULL) is merged into its status. */
static void stamp(fixture *f, const char *name, const char *region, const char *phase, int64_t age_ms,
                  const char *status_extra) {
    resource r;
    serr e = {0};
    resource_init(&r);
    str_copy(r.kind, sizeof(r.kind), "Stamp");
    str_copy(r.name, sizeof(r.name), name);
    str_copy(r.tenant, sizeof(r.tenant), "system");
    json_object_set_new(r.spec, "region", json_string(region));
    json_object_set_new(r.spec, "template", json_string("synaxis-stamp"));
    json_object_set(r.spec, "templateSpec", f->tpl);
    json_object_set_new(r.status, "phase", json_string(phase));
    json_object_set_new(r.status, "phaseSince", json_integer(now_ms() - age_ms));
    if (status_extra) {
        json_t *x = json_loads(status_extra, 0, NULL);
        assert_non_null(x);
        json_object_update(r.status, x);
        json_decref(x);
    }
    if (store_create(f->c.st, &r, NULL, &e) != 0) fail_msg("%s", e.msg);
    resource_free(&r);
}

static char *render(fixture *f) {
    sbuf b;
    serr e = {0};
    sbuf_init(&b, 1u << 20);
    if (stamp_prom_render(&f->c, &b, &e) != 0) fail_msg("%s", e.msg);
    assert_int_equal(sbuf_add(&b, "", 1), 0); /* NUL */
    return b.data;
}

/* The line that starts with prefix; fails when there is none. */
static const char *line(const char *text, const char *prefix) {
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0) return p;
    fail_msg("no line starting with %s", prefix);
    return NULL;
}

static bool has(const char *text, const char *needle) { return strstr(text, needle) != NULL; }

static void series_by_phase(void **state) {
    fixture *f = *state;
    stamp(f, "synaxis-weu-001", "westeurope", "Active", 90000,
          "{\"health\": {\"recovery\": {\"action\": \"redeploy\", \"attempt\": 1}}}");
    stamp(f, "synaxis-weu-002", "westeurope", "Failed", 1000,
          "{\"previousPhase\": \"Creating\", \"history\": [{\"phase\": \"Creating\", \"reason\": \"Redeploy\"},"
          " {\"phase\": \"Failed\", \"reason\": \"CreationTimeout\"}]}");
    stamp(f, "synaxis-eus-001", "eastus", "Ready", 1000, "{\"activation\": {\"attempt\": 2}}");
    stamp(f, "synaxis-eus-002", "eastus", "Ready", 1000, NULL);
    stamp(f, "synaxis-sea-001", "southeastasia", "Creating", 1000, "{\"attempt\": 3}");
    stamp(f, "synaxis-sea-002", "southeastasia", "Deleted", 1000, NULL);
    stamp(f, "synaxis-sea-003", "south\"east\\asia", "Draining", 3000000, NULL);

    /* The default check of weu-001 past its unhealthy threshold; the same
     * results for eus-002 (standby: its checks do not run) must not show. */
    hc_set set;
    hc_default(&f->cfg, "/health", &set);
    for (int i = 0; i < set.checks[0].unhealthy_threshold; i++) {
        hc_record("synaxis-weu-001", &set.checks[0], false, 1, "refused");
        hc_record("synaxis-eus-002", &set.checks[0], false, 1, "refused");
    }

    char *m = render(f);
    assert_true(has(m, "# TYPE active_stamps gauge\nactive_stamps 1\n"));
    assert_true(has(m, "\nready_stamps 2\n"));
    assert_true(has(m, "\ncreating_stamps 1\n"));
    assert_true(has(m, "\ndraining_stamps 1\n"));
    assert_true(has(m, "\nfailed_stamps 1\n"));

    const char *l = line(m, "stamp_phase_seconds{stamp=\"synaxis-weu-001\",region=\"westeurope\","
                            "template=\"synaxis-stamp\",phase=\"Active\"} ");
    double age = strtod(strchr(l, '}') + 2, NULL);
    assert_true(age >= 90.0 && age < 3600.0);
    /* Escaped, not cut or dropped. */
    line(m, "stamp_phase_seconds{stamp=\"synaxis-sea-003\",region=\"south\\\"east\\\\asia\","
            "template=\"synaxis-stamp\",phase=\"Draining\"} ");
    assert_false(has(m, "synaxis-sea-002")); /* Deleted: no series */

    line(m, "stamp_failed_info{stamp=\"synaxis-weu-002\",region=\"westeurope\",template=\"synaxis-stamp\","
            "from=\"Creating\",reason=\"CreationTimeout\"} 1\n");
    line(m, "stamp_attempt{stamp=\"synaxis-sea-001\",region=\"southeastasia\",template=\"synaxis-stamp\","
            "operation=\"create\"} 3\n");
    line(m, "stamp_attempt{stamp=\"synaxis-eus-001\",region=\"eastus\",template=\"synaxis-stamp\","
            "operation=\"activate\"} 2\n");
    assert_false(has(m, "stamp_attempt{stamp=\"synaxis-eus-002\""));

    line(m, "stamp_health_check_failing{stamp=\"synaxis-weu-001\",region=\"westeurope\","
            "template=\"synaxis-stamp\",check=\"health\"} 1\n");
    line(m, "stamp_health_check_failing{stamp=\"synaxis-sea-001\",region=\"southeastasia\","
            "template=\"synaxis-stamp\",check=\"health\"} 0\n");
    line(m, "stamp_health_check_failing{stamp=\"synaxis-eus-001\",region=\"eastus\","
            "template=\"synaxis-stamp\",check=\"health\"} 0\n");
    assert_false(has(m, "stamp_health_check_failing{stamp=\"synaxis-eus-002\""));
    assert_false(has(m, "stamp_health_check_failing{stamp=\"synaxis-weu-002\""));
    line(m, "stamp_health_recovering{stamp=\"synaxis-weu-001\",region=\"westeurope\","
            "template=\"synaxis-stamp\"} 1\n");

    char want[128];
    snprintf(want, sizeof(want), "stamp_phase_timeout_seconds{phase=\"Creating\"} %lld\n",
             (long long)(f->cfg.creating_timeout_ms / 1000));
    line(m, want);

    /* Each family once, its series right after its TYPE. */
    const char *fams[] = {"stamp_phase_seconds", "stamp_failed_info", "stamp_attempt",
                          "stamp_health_check_failing", "stamp_health_recovering"};
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        char type[96];
        snprintf(type, sizeof(type), "# TYPE %s gauge\n", fams[i]);
        const char *t = strstr(m, type);
        assert_non_null(t);
        assert_null(strstr(t + 1, type));
        const char *next = strstr(t + strlen(type), "# HELP");
        for (const char *p = strstr(m, fams[i]); p; p = strstr(p + 1, fams[i]))
            if (p[-1] == '\n' && p[strlen(fams[i])] == '{')
                assert_true(p > t && (next == NULL || p < next));
    }
    free(m);
    hc_reset("synaxis-weu-001");
    hc_reset("synaxis-eus-002");
}

static int veto(int port, void *arg) {
    (void)port;
    (void)arg;
    return 0;
}

/* Starts /bin/sleep as replica idx of step `step` of stamp name, as the
 * stamp controller names it (unit and lease by the step's spec hash);
 * returns its first port. */
static int replica(fixture *f, const char *name, const char *step, int idx, const char *hash_of, pid_t *pid) {
    serr e = {0};
    sctx *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->c = &f->c;
    str_copy(s->name, sizeof(s->name), name);
    resource_init(&s->r);
    assert_int_equal(store_get(f->c.st, "Stamp", name, &s->r, &e), 0);
    assert_int_equal(sc_parse(s, &e), 0);
    const tpl_step *st = NULL;
    for (int i = 0; i < s->t.nsteps; i++)
        if (strcmp(s->t.steps[i].name, step) == 0) st = &s->t.steps[i];
    assert_non_null(st);
    char hash[SC_HASH_LEN], unit[RT_UNIT_MAX], logp[256];
    sc_step_hash(s, st, hash);
    if (hash_of) str_copy(hash, sizeof(hash), hash_of); /* a replica of another spec */
    int ports[TPL_MAX_PORTS];
    if (sc_replica_ports(s, st, idx, hash, ports, &e) != 0) fail_msg("%s", e.msg);
    snprintf(unit, sizeof(unit), "%s/p/%s/%d@%s", name, step, idx, hash);
    snprintf(logp, sizeof(logp), "%s/%s-%d.log", f->dir, step, idx);
    const char *argv[] = {"/bin/sleep", "30", NULL};
    rt_spawn_spec sp = {.unit = unit, .argv = argv, .log_path = logp};
    if (rt_spawn(f->c.rt, &sp, pid, &e) != 0) fail_msg("%s", e.msg);
    resource_free(&s->r);
    free(s);
    return ports[0];
}


static void service_discovery(void **state) {
    fixture *f = *state;
    serr e = {0};
    char owner[64];
    snprintf(owner, sizeof(owner), "test-prom-%d", (int)getpid());
    assert_int_equal(runtime_open("local", owner, &f->c.rt, &e), 0);
    f->cfg.port_lo = 20000;
    f->cfg.port_hi = 20100;
    stamp(f, "synaxis-weu-001", "westeurope", "Active", 1000, NULL);
    stamp(f, "synaxis-eus-001", "eastus", "Ready", 1000, NULL);
    stamp(f, "synaxis-sea-001", "southeastasia", "Draining", 1000, NULL);
    /* weu-001 runs app (and an update's new app replica beside it) and
     * inference; eus-001 (Ready) runs app; sea-001 runs nothing. */
    pid_t pids[4];
    int app = replica(f, "synaxis-weu-001", "app", 0, NULL, &pids[0]);
    int app_new = replica(f, "synaxis-weu-001", "app", 0, "0123456789ab", &pids[1]);
    int inf = replica(f, "synaxis-weu-001", "inference", 0, NULL, &pids[2]);
    replica(f, "synaxis-eus-001", "app", 0, NULL, &pids[3]);
    rt_invalidate(f->c.rt);

    json_t *groups;
    if (stamp_prom_targets(&f->c, &groups, &e) != 0) fail_msg("%s", e.msg);
    assert_true(json_is_array(groups));
    assert_int_equal(json_array_size(groups), 2); /* weu-001's app and inference */
    for (size_t i = 0; i < 2; i++) {
        json_t *g = json_array_get(groups, i), *l = json_object_get(g, "labels");
        const char *step = jstr(l, "step", "");
        bool is_app = strcmp(step, "app") == 0;
        assert_true(is_app || strcmp(step, "inference") == 0);
        assert_string_equal(jstr(l, "stamp", ""), "synaxis-weu-001");
        assert_string_equal(jstr(l, "region", ""), "westeurope");
        assert_string_equal(jstr(l, "pool", ""), is_app ? "general" : "gpu");
        assert_string_equal(jstr(l, "__metrics_path__", ""), "/metrics");
        json_t *tg = json_object_get(g, "targets");
        char want[32];
        snprintf(want, sizeof(want), "127.0.0.1:%d", is_app ? app : inf);
        assert_int_equal(json_array_size(tg), is_app ? 2 : 1);
        assert_string_equal(json_string_value(json_array_get(tg, 0)), want);
        if (is_app) {
            snprintf(want, sizeof(want), "127.0.0.1:%d", app_new);
            assert_string_equal(json_string_value(json_array_get(tg, 1)), want);
        }
    }
    json_decref(groups);
    /* The Draining stamp without replicas got no lease from the GET. */
    int ports[2];
    assert_int_not_equal(store_ports_lease(f->c.st, "synaxis-sea-001/app/0@x", 1, 20000, 20100, veto, NULL,
                                           ports, &e),
                         0);
    for (int i = 0; i < 4; i++) rt_stop(f->c.rt, pids[i], 1000, NULL);
    runtime_close(f->c.rt);
    f->c.rt = NULL;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(series_by_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(service_discovery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
