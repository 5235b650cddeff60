/*
 * test_obs_catalog.c - the data side of ObservabilityPlatform: the shipped
 * catalog loads and resolves, later files add versions and nothing else,
 * the loader and the spec parser refuse what they must with messages
 * that name the field, rendering fills placeholders, prunes "$if" and
 * merges the user's config; and the rendered Prometheus, Alertmanager and
 * blackbox configurations pass the real promtool, amtool and
 * blackbox-exporter checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "obs/obs.h"
#include "util/util.h"
#include "util/yamljson.h"

extern char **environ;

#define ROOT "/opt/stamp/observability"

static char tmp[256];
static char shipped[1024];

static int group_setup(void **st) {
    const char *src = getenv("STAMP_SRC");
    if (src == NULL) src = ".";
    snprintf(shipped, sizeof(shipped), "%s/deploy/observability/catalog.yaml", src);
    str_copy(tmp, sizeof(tmp), "/tmp/stamp-obs-XXXXXX");
    if (mkdtemp(tmp) == NULL) return -1;
    /* The process-wide catalog the render tests read. */
    obs_catalog *cat = NULL;
    serr e = {0};
    if (obs_catalog_load(shipped, ROOT, &cat, &e) != 0) {
        print_error("%s\n", e.msg);
        return -1;
    }
    obs_set_catalog(cat, NULL);
    return 0;
}

static int group_teardown(void **st) {
    obs_set_catalog(NULL, "");
    return remove_tree(tmp, NULL) == 0 ? 0 : -1;
}

/* Writes text to tmp/name; returns the path (static buffer per call site). */
static const char *put(const char *name, const char *text) {
    static char paths[8][512];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 512, "%s/%s", tmp, name);
    serr e = {0};
    if (write_file_atomic(p, text, strlen(text), 0644, &e) != 0) fail_msg("%s", e.msg);
    return p;
}

static obs_catalog *load_ok(const char *path) {
    obs_catalog *cat = NULL;
    serr e = {0};
    if (obs_catalog_load(path, ROOT, &cat, &e) != 0) fail_msg("catalog %s refused: %s", path, e.msg);
    return cat;
}

/* Loading must fail with a message containing want. */
static void load_fails(const char *path, const char *want) {
    obs_catalog *cat = NULL;
    serr e = {0};
    int rc = obs_catalog_load(path, ROOT, &cat, &e);
    if (rc == 0) fail_msg("catalog %s accepted; wanted \"%s\"", path, want);
    assert_null(cat);
    if (strstr(e.msg, want) == NULL) fail_msg("message \"%s\" lacks \"%s\"", e.msg, want);
}

/* ---- the shipped catalog ---- */

static void test_shipped_catalog(void **st) {
    obs_catalog *cat = load_ok(shipped);
    static const char *const order[] = {"node-exporter", "blackbox-exporter", "prometheus", "loki",
                                        "tempo",         "grafana",           "alertmanager",
                                        "pushgateway"};
    assert_int_equal(cat->n, 8);
    for (int i = 0; i < 8; i++) {
        assert_string_equal(cat->c[i].name, order[i]);
        assert_int_equal(obs_catalog_order(cat, order[i]), i);
        const obs_cat_comp *cc = obs_catalog_comp(cat, order[i]);
        assert_non_null(cc);
        /* Every version resolved: absolute binary, ready path, args. */
        for (int j = 0; j < cc->nv; j++) {
            const obs_cat_version *cv = &cc->v[j];
            assert_true(cv->binary[0] == '/');
            assert_null(strchr(cv->binary, '{'));
            assert_true(cv->ready_path[0] == '/');
            assert_true(json_is_array(cv->args));
            assert_non_null(cv->exec);
            assert_true(json_array_size(json_object_get(cv->exec, "install")) >= 1);
            assert_true((cv->config == NULL) == (cv->config_file[0] == '\0'));
        }
        assert_non_null(obs_catalog_version(cc, cc->default_version));
        assert_true(cc->missing_hint[0] != '\0');
    }
    /* Seed 003's five keep its order. */
    assert_true(obs_catalog_order(cat, "prometheus") < obs_catalog_order(cat, "loki"));
    assert_true(obs_catalog_order(cat, "loki") < obs_catalog_order(cat, "tempo"));
    assert_true(obs_catalog_order(cat, "tempo") < obs_catalog_order(cat, "grafana"));
    assert_true(obs_catalog_order(cat, "grafana") < obs_catalog_order(cat, "alertmanager"));
    assert_int_equal(obs_catalog_order(cat, "nope"), -1);

    const obs_cat_comp *p = obs_catalog_comp(cat, "prometheus");
    assert_string_equal(p->default_version, "2.42.0");
    assert_string_equal(p->default_retention, "15d");
    assert_true(p->stores_data);
    const obs_cat_version *v1 = obs_catalog_version(p, "2.42.0");
    const obs_cat_version *v2 = obs_catalog_version(p, "2.53.3");
    assert_string_equal(v1->binary, "/usr/bin/prometheus");
    assert_string_equal(v2->binary, ROOT "/prometheus/2.53.3/usr/bin/prometheus");
    assert_string_equal(v2->reload, "post:/-/reload");
    assert_string_equal(v2->backup, "prometheus-snapshot");
    assert_string_equal(v2->config_file, "prometheus.yml");
    assert_non_null(v2->check);
    assert_int_equal(json_array_size(v2->args), 7);
    assert_null(obs_catalog_version(p, "9.9"));
    /* files: from resolved to the shipped rules, to a plain name. */
    assert_int_equal(json_array_size(v1->files), 1);
    const char *from = jstr(json_array_get(v1->files, 0), "from", "");
    assert_true(from[0] == '/');
    assert_non_null(strstr(from, "/deploy/prometheus/stamp-alerts.yaml"));
    assert_null(strstr(from, ".."));
    assert_true(path_exists(from));
    assert_string_equal(jstr(json_array_get(v1->files, 0), "to", ""), "stamp-alerts.yaml");

    const obs_cat_version *am = obs_catalog_version(obs_catalog_comp(cat, "alertmanager"), "0.28.1");
    assert_string_equal(am->binary, ROOT "/alertmanager/0.28.1/usr/bin/prometheus-alertmanager");
    assert_string_equal(am->backup, "stop-copy");
    assert_string_equal(obs_catalog_comp(cat, "alertmanager")->default_retention, "120h");
    const obs_cat_comp *ne = obs_catalog_comp(cat, "node-exporter");
    assert_false(ne->stores_data);
    assert_string_equal(ne->v[0].backup, "none");
    assert_string_equal(ne->v[0].reload, "restart");
    assert_string_equal(ne->v[0].ready_path, "/metrics");
    /* The components Debian lacks name the upstream binaries. */
    assert_string_equal(obs_catalog_comp(cat, "loki")->v[0].binary, "/usr/local/bin/loki");
    assert_string_equal(obs_catalog_comp(cat, "tempo")->v[0].binary, "/usr/local/bin/tempo");
    assert_string_equal(obs_catalog_comp(cat, "grafana")->v[0].binary, "/usr/local/bin/grafana");
    assert_string_equal(obs_catalog_comp(cat, "grafana")->v[0].ready_path, "/api/health");
    assert_int_equal(json_array_size(cat->exec_tools), 2);
    obs_catalog_free(cat);

    /* {root} with no root set is refused, naming the version. */
    serr e = {0};
    assert_int_equal(obs_catalog_load(shipped, NULL, &cat, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "(prometheus 2.53.3).binary"));
    assert_non_null(strstr(e.msg, "observability-root"));
}

/* A site-local file adds a version (the broken 3.5.3 of the upgrade test:
 * the 2.x arguments, which 3.x refuses, inherited from the component). */
static void test_later_file_adds_versions(void **st) {
    const char *extra = put("extra.yaml",
                            "apiVersion: observability.synaxis.io/v1alpha1\n"
                            "kind: ComponentCatalog\n"
                            "versions:\n"
                            "  - {component: prometheus, version: 3.5.3,\n"
                            "     binary: \"{root}/prometheus/3.5.3/usr/bin/prometheus\"}\n"
                            "  - component: alertmanager\n"
                            "    version: 0.33.1\n"
                            "    binary: /opt/am/alertmanager\n"
                            "    reload: sighup\n");
    char list[2400];
    snprintf(list, sizeof(list), "%s,%s", shipped, extra);
    obs_catalog *cat = load_ok(list);
    const obs_cat_comp *p = obs_catalog_comp(cat, "prometheus");
    assert_int_equal(p->nv, 3);
    const obs_cat_version *v = obs_catalog_version(p, "3.5.3");
    assert_non_null(v);
    assert_string_equal(v->binary, ROOT "/prometheus/3.5.3/usr/bin/prometheus");
    const char *last = json_string_value(json_array_get(v->args, json_array_size(v->args) - 1));
    assert_string_equal(last, "--storage.tsdb.use-lockfile");
    assert_int_equal(json_array_size(v->files), 1); /* resolved against the first file */
    assert_true(path_exists(jstr(json_array_get(v->files, 0), "from", "")));
    const obs_cat_version *a = obs_catalog_version(obs_catalog_comp(cat, "alertmanager"), "0.33.1");
    assert_string_equal(a->reload, "sighup");       /* overridden */
    assert_string_equal(a->backup, "stop-copy");    /* inherited */
    assert_string_equal(a->config_file, "alertmanager.yml");
    obs_catalog_free(cat);

    /* A later file may not define components, nor versions of unknown
     * components, nor repeat a version. */
    const char *bad1 = put("bad1.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                                        "kind: ComponentCatalog\n"
                                        "components: {}\nversions: []\n");
    snprintf(list, sizeof(list), "%s,%s", shipped, bad1);
    load_fails(list, "bad1.yaml.components: unknown field");
    const char *bad2 = put("bad2.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                                        "kind: ComponentCatalog\n"
                                        "versions: [{component: mimir, version: 1.0.0, binary: /x}]\n");
    snprintf(list, sizeof(list), "%s,%s", shipped, bad2);
    load_fails(list, "bad2.yaml: versions[0].component: mimir is not a component of catalog.yaml");
    const char *bad3 = put("bad3.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                                        "kind: ComponentCatalog\n"
                                        "versions: [{component: prometheus, version: 2.42.0}]\n");
    snprintf(list, sizeof(list), "%s,%s", shipped, bad3);
    load_fails(list, "prometheus 2.42.0 is listed twice");
    snprintf(list, sizeof(list), "%s,%s/missing.yaml", shipped, tmp);
    load_fails(list, "missing.yaml: not found");
}

/* A minimal first file; %s is spliced into the component, %s into versions. */
static const char *mini(const char *name, const char *comp_extra, const char *versions) {
    char text[4096];
    snprintf(text, sizeof(text),
             "apiVersion: observability.synaxis.io/v1alpha1\n"
             "kind: ComponentCatalog\n"
             "order: [a, b]\n"
             "components:\n"
             "  a:\n"
             "    defaultVersion: 1.0.0\n"
             "    storesData: true\n"
             "    defaultRetention: 1d\n"
             "    ready: /-/ready\n"
             "    binary: /usr/bin/a\n"
             "%s"
             "  b: {defaultVersion: 1.0.0, ready: /, binary: /usr/bin/b}\n"
             "versions:\n"
             "  - {component: a, version: 1.0.0}\n"
             "  - {component: b, version: 1.0.0}\n"
             "%s",
             comp_extra, versions);
    return put(name, text);
}

static void test_catalog_rejections(void **st) {
    obs_catalog *cat = load_ok(mini("ok.yaml", "", ""));
    assert_string_equal(cat->c[0].v[0].reload, "restart"); /* defaults */
    assert_string_equal(cat->c[0].v[0].backup, "stop-copy");
    assert_string_equal(cat->c[1].v[0].backup, "none");
    assert_string_equal(cat->c[1].title, "b");
    obs_catalog_free(cat);

    load_fails(mini("r1.yaml", "    reload: kill\n", ""),
               "r1.yaml: versions[0] (a 1.0.0).reload: \"kill\" is not sighup, restart or post:<path>");
    load_fails(mini("r2.yaml", "    backup: tar\n", ""),
               "r2.yaml: versions[0] (a 1.0.0).backup: \"tar\" is not prometheus-snapshot");
    load_fails(mini("r3.yaml", "", "  - {component: a, version: 2.0.0, binary: bin/a}\n"),
               "r3.yaml: versions[2] (a 2.0.0).binary: \"bin/a\" is not an absolute path");
    load_fails(mini("r4.yaml", "    files: [{from: ok.yaml, to: ../x}]\n", ""),
               "(a 1.0.0).files[0].to: \"../x\" is not a plain file name");
    load_fails(mini("r5.yaml", "    files: [{from: ok.yaml, to: d/x}]\n", ""),
               "files[0].to: \"d/x\" is not a plain file name");
    load_fails(mini("r6.yaml", "    colour: red\n", ""), "r6.yaml: components.a.colour: unknown field");
    load_fails(mini("r7.yaml", "", "  - {component: a, version: 3.0.0, colour: red}\n"),
               "versions[2] (a 3.0.0).colour: unknown field");
    load_fails(mini("r8.yaml", "    args: [\"--x={prot}\"]\n", ""),
               "(a 1.0.0).args: unknown placeholder {prot}");
    load_fails(mini("r9.yaml", "    args: [\"--x={port:c}\"]\n", ""), "unknown placeholder {port:c}");
    load_fails(mini("r10.yaml", "    configFile: a.yml\n    config: {x: {\"$if\": c}}\n", ""),
               "(a 1.0.0).config: \"$if\" must name a component");
    load_fails(mini("r11.yaml", "    files: [{from: nowhere.yaml, to: x}]\n", ""),
               "files[0].from: ");
    load_fails(mini("r12.yaml", "    config: {x: 1}\n", ""), "config: given without configFile");
    load_fails(mini("r13.yaml", "", "  - {component: a, version: 1.0.0}\n"),
               "a 1.0.0 is listed twice");
    /* More than OBS_MAX_VERSIONS. */
    char many[1024];
    size_t n = 0;
    for (int i = 2; i <= OBS_MAX_VERSIONS + 1; i++)
        n += str_fmt_cut(many + n, sizeof(many) - n, "  - {component: a, version: %d.0.0}\n", i);
    load_fails(mini("r14.yaml", "", many), "more than 8 versions of a");
    /* order and components must match. */
    load_fails(put("r15.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                               "kind: ComponentCatalog\n"
                               "order: [a, c]\n"
                               "components: {a: {defaultVersion: 1.0.0, ready: /, binary: /a}}\n"
                               "versions: [{component: a, version: 1.0.0}]\n"),
               "r15.yaml: order[1]: c is not in components");
    load_fails(put("r16.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                               "kind: ComponentCatalog\n"
                               "order: [a]\n"
                               "components:\n"
                               "  a: {defaultVersion: 1.0.0, ready: /, binary: /a}\n"
                               "  b: {defaultVersion: 1.0.0, ready: /, binary: /b}\n"
                               "versions: [{component: a, version: 1.0.0}]\n"),
               "r16.yaml: components.b: not in order");
    load_fails(put("r17.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                               "kind: ComponentCatalog\n"
                               "order: [a]\n"
                               "components:\n"
                               "  a: {defaultVersion: 2.0.0, ready: /, binary: /a}\n"
                               "versions: [{component: a, version: 1.0.0}]\n"),
               "components.a.defaultVersion: 2.0.0 is not in versions");
    /* Anchors are refused by the YAML reader. */
    load_fails(put("r18.yaml", "apiVersion: observability.synaxis.io/v1alpha1\n"
                               "kind: ComponentCatalog\n"
                               "order: [a]\n"
                               "components:\n"
                               "  a: &x {defaultVersion: 1.0.0, ready: /, binary: /a}\n"
                               "versions: [{component: a, version: 1.0.0}]\n"),
               "r18.yaml");
    load_fails(put("r19.yaml", "apiVersion: v1\nkind: ComponentCatalog\n"), "apiVersion/kind must be");
}

/* ---- the spec ---- */

static json_t *yaml(const char *text) {
    json_t *j = NULL;
    serr e = {0};
    if (yaml_to_json(text, strlen(text), &j, NULL, &e) != 0) fail_msg("yaml: %s", e.msg);
    return j;
}

static void spec_fails(const obs_catalog *cat, const char *text, const char *want) {
    json_t *j = yaml(text);
    obs_spec *sp = malloc(sizeof(*sp));
    serr e = {0};
    int rc = obs_spec_parse(j, cat, sp, &e);
    if (rc == 0) fail_msg("spec accepted; wanted \"%s\"", want);
    assert_int_equal(rc, SE_INVAL);
    if (strstr(e.msg, want) == NULL) fail_msg("message \"%s\" lacks \"%s\"", e.msg, want);
    free(sp);
    json_decref(j);
}

static void test_spec_parse(void **st) {
    obs_catalog *cat = load_ok(shipped);
    json_t *j = yaml("components:\n"
                     "  - {name: alertmanager, port: 19093}\n"
                     "  - name: prometheus\n"
                     "    version: \"2.53.3\"\n"
                     "    retention: 36h\n"
                     "    storage: {size: 1Gi}\n"
                     "    config: {global: {scrape_interval: 5s}}\n"
                     "  - {name: loki, enabled: false}\n"
                     "  - {name: node-exporter}\n"
                     "secrets: [grafana-admin]\n"
                     "retry: {maxRetries: 3, initialBackoff: 1s, maxBackoff: 10s, backoffFactor: 1.5}\n"
                     "keepVolumes: true\n");
    obs_spec *sp = malloc(sizeof(*sp));
    serr e = {0};
    if (obs_spec_parse(j, cat, sp, &e) != 0) fail_msg("spec refused: %s", e.msg);
    assert_int_equal(sp->n, 4);
    /* Install order, not the manifest's. */
    assert_string_equal(sp->c[0].name, "node-exporter");
    assert_string_equal(sp->c[1].name, "prometheus");
    assert_string_equal(sp->c[2].name, "loki");
    assert_string_equal(sp->c[3].name, "alertmanager");
    const obs_comp_spec *p = obs_spec_comp(sp, "prometheus");
    assert_string_equal(p->version, "2.53.3");
    assert_string_equal(p->retention, "36h");
    assert_int_equal(p->retention_ms, 36 * 3600000LL);
    assert_int_equal(p->storage_bytes, 1LL << 30);
    assert_true(json_is_object(p->config));
    const obs_comp_spec *a = obs_spec_comp(sp, "alertmanager");
    assert_string_equal(a->version, "0.25.0"); /* the catalog's default */
    assert_string_equal(a->retention, "120h");
    assert_int_equal(a->port, 19093);
    assert_true(a->enabled);
    assert_false(obs_spec_comp(sp, "loki")->enabled);
    assert_string_equal(obs_spec_comp(sp, "loki")->retention, "168h"); /* 7d, normalized */
    assert_string_equal(obs_spec_comp(sp, "node-exporter")->retention, "");
    assert_null(obs_spec_comp(sp, "grafana"));
    assert_int_equal(sp->retry.max_retries, 3);
    assert_int_equal(sp->retry.initial_ms, 1000);
    assert_int_equal(sp->retry.max_ms, 10000);
    assert_true(sp->retry.factor == 1.5);
    assert_int_equal(sp->nsecrets, 1);
    assert_true(sp->keep_volumes);
    assert_false(sp->paused);
    assert_false(sp->exec);
    json_decref(j);

    /* Defaults (seed 003's retry). */
    j = yaml("components: [{name: prometheus}]\n");
    assert_int_equal(obs_spec_parse(j, cat, sp, &e), 0);
    assert_int_equal(sp->retry.max_retries, 5);
    assert_int_equal(sp->retry.initial_ms, 10000);
    assert_int_equal(sp->retry.max_ms, 300000);
    assert_string_equal(sp->c[0].retention, "360h");
    json_decref(j);
    free(sp);

    spec_fails(cat, "components: [{name: node-exporter}, {name: blackbox-exporter}, {name: prometheus, version: \"9.9\"}]\n",
               "spec.components[2].version: \"9.9\" is not in the catalog for prometheus (it has "
               "2.42.0, 2.53.3)");
    spec_fails(cat, "components: [{name: mimir}]\n",
               "spec.components[0].name: mimir is not a component of the catalog (node-exporter, ");
    spec_fails(cat, "components: [{name: prometheus}, {name: prometheus}]\n",
               "spec.components[1].name: prometheus is listed twice (also components[0])");
    spec_fails(cat, "components: [{name: prometheus, port: 20000}, {name: alertmanager, port: 20000}]\n",
               "spec.components[1].port: 20000 is also the port of prometheus");
    spec_fails(cat, "components: [{name: prometheus, port: 80}]\n",
               "spec.components[0].port: not 0 (leased) or a port from 1024 to 65535");
    spec_fails(cat, "components: [{name: prometheus, retention: soon}]\n",
               "spec.components[0].retention: \"soon\" is not a duration");
    spec_fails(cat, "components: [{name: prometheus, retention: \"15\"}]\n",
               "spec.components[0].retention: \"15\" is not a duration");
    spec_fails(cat, "components: [{name: node-exporter, retention: 1d}]\n",
               "spec.components[0].retention: node-exporter keeps no data");
    spec_fails(cat, "components: [{name: prometheus, storage: {size: 1Gb}}]\n",
               "spec.components[0].storage.size: not a size like 512Mi");
    spec_fails(cat, "components: [{name: prometheus, storage: {size: 2Pi}}]\n",
               "spec.components[0].storage.size: not a size");
    spec_fails(cat, "components: [{name: prometheus, storage: {size: 1Gi, class: fast}}]\n",
               "spec.components[0].storage.class: unknown field");
    spec_fails(cat, "components: [{name: prometheus, replicas: 2}]\n",
               "spec.components[0].replicas: unknown field");
    spec_fails(cat, "components: [{name: prometheus}]\nreplicas: 2\n", "spec.replicas: unknown field");
    spec_fails(cat, "components: [{name: prometheus, config: [1]}]\n",
               "spec.components[0].config: not an object");
    spec_fails(cat, "components: [{name: prometheus, config: \"x\"}]\n",
               "spec.components[0].config: not an object");
    spec_fails(cat, "components: [{name: node-exporter, config: {a: 1}}]\n",
               "spec.components[0].config: node-exporter 1.5.0 has no configuration file");
    spec_fails(cat, "components: [{name: prometheus, version: 2.5}]\n",
               "spec.components[0].version: a number; quote it");
    spec_fails(cat, "components: []\n", "spec.components: required");
    spec_fails(cat, "runtime: k8s\ncomponents: [{name: prometheus}]\n", "spec.runtime: not local or exec");
    spec_fails(cat, "secrets: [Bad_Name]\ncomponents: [{name: prometheus}]\n", "spec.secrets[0]: not a name");
    spec_fails(cat, "retry: {maxRetries: 1000}\ncomponents: [{name: prometheus}]\n",
               "spec.retry.maxRetries: not an integer from 0 to 100");
    spec_fails(cat, "retry: {initialBackoff: 10m, maxBackoff: 1m}\ncomponents: [{name: prometheus}]\n",
               "spec.retry.maxBackoff: shorter than initialBackoff");
    spec_fails(cat, "retry: {backoffFactor: 0.5}\ncomponents: [{name: prometheus}]\n",
               "spec.retry.backoffFactor: not a number from 1 to 10");
    spec_fails(cat, "paused: yes please\ncomponents: [{name: prometheus}]\n", "spec.paused: not true or false");

    /* Without a catalog only the shape is checked. */
    obs_set_catalog(NULL, "no file");
    assert_string_equal(obs_catalog_error(), "no file");
    j = yaml("components: [{name: mimir, version: \"9.9\"}]\n");
    assert_int_equal(obs_validate(j, &e), 0);
    obs_set_catalog(cat, NULL);
    assert_ptr_equal(obs_get_catalog(), cat);
    assert_string_equal(obs_catalog_error(), "");
    assert_int_equal(obs_validate(j, &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "mimir is not a component"));
    json_decref(j);
    /* cat now belongs to the process-wide pointer (freed at teardown). */
}

/* The shipped platform.yaml is valid against the shipped catalog. */
static void test_shipped_platform(void **st) {
    char path[1100], *text;
    size_t len;
    serr e = {0};
    snprintf(path, sizeof(path), "%.1000s/platform.yaml", shipped);
    *strrchr(path, '/') = '\0';
    *strrchr(path, '/') = '\0';
    size_t n = strlen(path);
    snprintf(path + n, sizeof(path) - n, "/platform.yaml");
    assert_int_equal(read_file(path, 1 << 20, &text, &len, &e), 0);
    json_t *m = yaml(text);
    free(text);
    assert_string_equal(jstr(m, "kind", ""), OBS_KIND);
    assert_string_equal(jstr(m, "apiVersion", ""), OBS_API_VERSION);
    obs_spec *sp = malloc(sizeof(*sp));
    if (obs_spec_parse(json_object_get(m, "spec"), obs_get_catalog(), sp, &e) != 0)
        fail_msg("platform.yaml refused: %s", e.msg);
    assert_int_equal(sp->n, 7);
    assert_string_equal(sp->c[0].name, "node-exporter");
    assert_true(obs_spec_comp(sp, "prometheus")->enabled);
    assert_false(obs_spec_comp(sp, "loki")->enabled);
    free(sp);
    json_decref(m);
}

static void test_quantity(void **st) {
    int64_t b;
    assert_int_equal(obs_parse_quantity("512Mi", &b), 0);
    assert_int_equal(b, 512LL << 20);
    assert_int_equal(obs_parse_quantity("10G", &b), 0);
    assert_int_equal(b, 10000000000LL);
    assert_int_equal(obs_parse_quantity("4096", &b), 0);
    assert_int_equal(b, 4096);
    assert_int_equal(obs_parse_quantity("1Pi", &b), 0);
    assert_int_equal(obs_parse_quantity("1025Ti", &b), SE_INVAL);
    assert_int_equal(obs_parse_quantity("0", &b), SE_INVAL);
    assert_int_equal(obs_parse_quantity("1.5Gi", &b), SE_INVAL);
    assert_int_equal(obs_parse_quantity("Gi", &b), SE_INVAL);
    assert_int_equal(obs_parse_quantity("-1", &b), SE_INVAL);
    assert_int_equal(obs_parse_quantity("99999999999999999999", &b), SE_INVAL);
}

/* ---- rendering ---- */

/* The variables the controller sets for comp; peers enabled as given. */
static void vars_for(obs_vars *v, const obs_catalog *cat, const char *comp, const char *dir,
                     const char *const *enabled) {
    serr e = {0};
    memset(v, 0, sizeof(*v));
    v->cat = cat;
    static const struct {
        const char *c;
        const char *port;
    } ports[] = {{"prometheus", "19090"},
                 {"alertmanager", "19093"},
                 {"node-exporter", "19100"},
                 {"blackbox-exporter", "19115"},
                 {"pushgateway", "19091"}};
    char buf[512];
    for (int i = 0; enabled[i]; i++) {
        v->enabled[obs_catalog_order(cat, enabled[i])] = true;
        for (size_t k = 0; k < sizeof(ports) / sizeof(ports[0]); k++)
            if (strcmp(ports[k].c, enabled[i]) == 0) {
                snprintf(buf, sizeof(buf), "port:%s", enabled[i]);
                assert_int_equal(obs_vars_set(v, buf, ports[k].port, &e), 0);
                if (strcmp(ports[k].c, comp) == 0) assert_int_equal(obs_vars_set(v, "port", ports[k].port, &e), 0);
            }
    }
    const struct {
        const char *k, *sub;
    } paths[] = {{"data", "/data"},       {"configdir", ""},   {"log", "/log"},
                 {"targets", "/targets"}, {"secrets", "/sec"}, {"rules", "/stamp-alerts.yaml"},
                 {"stampd_token", "/tok"}};
    for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
        snprintf(buf, sizeof(buf), "%s%s", dir, paths[k].sub);
        assert_int_equal(obs_vars_set(v, paths[k].k, buf, &e), 0);
    }
    assert_int_equal(obs_vars_set(v, "stampd", "127.0.0.1:7480", &e), 0);
    assert_int_equal(obs_vars_set(v, "platform", "fleet-monitoring", &e), 0);
    assert_int_equal(obs_vars_set(v, "name", comp, &e), 0);
    assert_int_equal(obs_vars_set(v, "catalog", cat->dir, &e), 0);
}

static void test_expand(void **st) {
    const obs_catalog *cat = obs_get_catalog();
    obs_vars *v = malloc(sizeof(*v));
    static const char *const en[] = {"prometheus", "alertmanager", NULL};
    vars_for(v, cat, "prometheus", "/d", en);
    serr e = {0};
    char out[128];
    assert_int_equal(obs_expand(v, "127.0.0.1:{port}/{platform}", out, sizeof(out), &e), 0);
    assert_string_equal(out, "127.0.0.1:19090/fleet-monitoring");
    assert_int_equal(obs_expand(v, "to {port:alertmanager}", out, sizeof(out), &e), 0);
    assert_string_equal(out, "to 19093");
    /* Braces that are not placeholder-shaped stay. */
    assert_int_equal(obs_expand(v, "{{ $labels.x }} a{2} {} {A} {port:} {x", out, sizeof(out), &e), 0);
    assert_string_equal(out, "{{ $labels.x }} a{2} {} {A} {port:} {x");
    assert_int_equal(obs_expand(v, "{{name}}", out, sizeof(out), &e), 0);
    assert_string_equal(out, "{prometheus}");
    /* Unknown, and known but not set (a disabled peer). */
    assert_int_equal(obs_expand(v, "--x={prot}", out, sizeof(out), &e), SE_INVAL);
    assert_string_equal(e.msg, "unknown placeholder {prot}");
    assert_int_equal(obs_expand(v, "{port:node-exporter}", out, sizeof(out), &e), SE_INVAL);
    assert_non_null(strstr(e.msg, "{port:node-exporter} has no value"));
    /* Bounded. */
    char small[8];
    assert_int_equal(obs_expand(v, "{platform}", small, sizeof(small), &e), SE_TOOBIG);
    assert_int_equal(obs_vars_set(v, "platform", "other", &e), 0); /* replaced */
    assert_int_equal(obs_expand(v, "{platform}", small, sizeof(small), &e), 0);
    assert_string_equal(small, "other");

    /* argv */
    char **argv = NULL;
    const obs_cat_version *pv = obs_catalog_version(obs_catalog_comp(cat, "prometheus"), "2.42.0");
    assert_int_equal(obs_vars_set(v, "config", "/d/prometheus.yml", &e), 0);
    assert_int_equal(obs_vars_set(v, "retention", "360h", &e), 0);
    if (obs_render_argv(v, pv->binary, pv->args, &argv, &e) != 0) fail_msg("%s", e.msg);
    assert_string_equal(argv[0], "/usr/bin/prometheus");
    assert_string_equal(argv[1], "--config.file=/d/prometheus.yml");
    assert_string_equal(argv[2], "--storage.tsdb.path=/d/data");
    assert_string_equal(argv[3], "--storage.tsdb.retention.time=360h");
    assert_string_equal(argv[4], "--web.listen-address=127.0.0.1:19090");
    assert_null(argv[8]);
    obs_argv_free(argv);
    if (obs_render_argv(v, NULL, pv->check, &argv, &e) != 0) fail_msg("%s", e.msg);
    assert_string_equal(argv[0], "/usr/bin/promtool");
    assert_string_equal(argv[3], "/d/prometheus.yml");
    assert_null(argv[4]);
    obs_argv_free(argv);
    /* exec commands render too. */
    json_t *inst = json_object_get(pv->exec, "install");
    assert_int_equal(obs_vars_set(v, "version", "2.42.0", &e), 0);
    if (obs_render_argv(v, NULL, json_array_get(inst, 1), &argv, &e) != 0) fail_msg("%s", e.msg);
    assert_string_equal(argv[0], "helm");
    assert_string_equal(argv[3], "other-prometheus");
    obs_argv_free(argv);
    json_t *bad = json_pack("[s]", "{nope}");
    assert_int_equal(obs_render_argv(v, "/bin/x", bad, &argv, &e), SE_INVAL);
    assert_null(argv);
    assert_non_null(strstr(e.msg, "unknown placeholder {nope}"));
    json_decref(bad);
    free(v);
}

static json_t *render(const obs_vars *v, const char *comp, const char *user_yaml) {
    const obs_cat_comp *cc = obs_catalog_comp(v->cat, comp);
    json_t *user = user_yaml ? yaml(user_yaml) : NULL, *out = NULL;
    serr e = {0};
    if (obs_render_config(v, &cc->v[0], user, &out, &e) != 0) fail_msg("render %s: %s", comp, e.msg);
    json_decref(user);
    return out;
}

static bool has_job(const json_t *cfg, const char *job) {
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(cfg, "scrape_configs"), i, x) {
        if (strcmp(jstr(x, "job_name", ""), job) == 0) return true;
    }
    return false;
}

static void test_render_config(void **st) {
    const obs_catalog *cat = obs_get_catalog();
    obs_vars *v = malloc(sizeof(*v));
    static const char *const all[] = {"prometheus", "alertmanager", "node-exporter", "blackbox-exporter",
                                      NULL};
    static const char *const alone[] = {"prometheus", NULL};
    vars_for(v, cat, "prometheus", "/d", all);
    json_t *c = render(v, "prometheus", NULL);
    assert_true(has_job(c, "prometheus") && has_job(c, "stampd") && has_job(c, "stamps"));
    assert_true(has_job(c, "blackbox") && has_job(c, "node") && has_job(c, "alertmanager"));
    assert_false(has_job(c, "pushgateway"));
    char *s = json_dumps(c, JSON_COMPACT);
    assert_null(strstr(s, "$if"));
    assert_non_null(strstr(s, "\"targets\":[\"127.0.0.1:19093\"]"));
    assert_non_null(strstr(s, "\"replacement\":\"127.0.0.1:19115\""));
    assert_non_null(strstr(s, "\"files\":[\"/d/targets/stamps.json\"]"));
    assert_non_null(strstr(s, "\"platform\":\"fleet-monitoring\""));
    free(s);
    json_decref(c);

    /* Peers disabled: their objects go, in objects and in arrays. */
    vars_for(v, cat, "prometheus", "/d", alone);
    c = render(v, "prometheus", NULL);
    assert_null(json_object_get(c, "alerting"));
    assert_true(has_job(c, "stampd") && has_job(c, "stamps"));
    assert_false(has_job(c, "blackbox") || has_job(c, "node") || has_job(c, "alertmanager"));
    json_decref(c);

    /* Merge patch: objects merge, null deletes, arrays and scalars replace. */
    c = render(v, "prometheus",
               "global: {scrape_interval: 5s, external_labels: {site: lab}, evaluation_interval: null}\n"
               "rule_files: []\n"
               "remote_write: [{url: \"http://x/{port}\"}]\n");
    json_t *g = json_object_get(c, "global");
    assert_string_equal(jstr(g, "scrape_interval", ""), "5s");
    assert_null(json_object_get(g, "evaluation_interval"));
    assert_string_equal(jstr(json_object_get(g, "external_labels"), "platform", ""), "fleet-monitoring");
    assert_string_equal(jstr(json_object_get(g, "external_labels"), "site", ""), "lab");
    assert_int_equal(json_array_size(json_object_get(c, "rule_files")), 0);
    /* The user's config is not expanded. */
    assert_string_equal(jstr(json_array_get(json_object_get(c, "remote_write"), 0), "url", ""),
                        "http://x/{port}");
    json_decref(c);
    c = render(v, "prometheus", "scrape_configs: null\nglobal: 7\n");
    assert_null(json_object_get(c, "scrape_configs"));
    assert_int_equal(json_integer_value(json_object_get(c, "global")), 7);
    json_decref(c);

    /* A lone port placeholder becomes a number (Loki's integer port). */
    static const char *const lk[] = {"loki", NULL};
    vars_for(v, cat, "loki", "/d", lk);
    serr e = {0};
    assert_int_equal(obs_vars_set(v, "port", "3100", &e), 0);
    assert_int_equal(obs_vars_set(v, "retention", "168h", &e), 0);
    c = render(v, "loki", NULL);
    json_t *srv = json_object_get(c, "server");
    assert_true(json_is_integer(json_object_get(srv, "http_listen_port")));
    assert_int_equal(json_integer_value(json_object_get(srv, "http_listen_port")), 3100);
    assert_string_equal(jstr(json_object_get(c, "limits_config"), "retention_period", ""), "168h");
    json_decref(c);

    /* A component without a config: nothing, and a user config refused. */
    json_t *out = (json_t *)1, *u = yaml("a: 1\n");
    const obs_cat_version *ne = &obs_catalog_comp(cat, "node-exporter")->v[0];
    assert_int_equal(obs_render_config(v, ne, NULL, &out, &e), 0);
    assert_null(out);
    assert_int_equal(obs_render_config(v, ne, u, &out, &e), SE_INVAL);
    json_decref(u);
    /* A missing value is named. */
    static const char *const none[] = {NULL};
    vars_for(v, cat, "prometheus", "/d", none);
    assert_int_equal(obs_render_config(v, &obs_catalog_comp(cat, "prometheus")->v[0], NULL, &out, &e),
                     SE_INVAL);
    assert_non_null(strstr(e.msg, "{port} has no value"));
    free(v);
}

/* ---- the real checkers ---- */

/* Runs argv, its output to tmp/<log>; the exit status (-1: not run). */
static int run(char **argv, const char *log) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmp, log);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    char *out = NULL;
    size_t len;
    if (read_file(path, 1 << 16, &out, &len, NULL) == 0) {
        print_message("%s: %s", argv[0], out);
        free(out);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Renders comp's config (peers enabled as given) into dir, copies its
 * files, and runs its check command. */
static int check_rendered(const char *comp, const char *const *enabled, const char *sub) {
    const obs_catalog *cat = obs_get_catalog();
    const obs_cat_comp *cc = obs_catalog_comp(cat, comp);
    const obs_cat_version *cv = obs_catalog_version(cc, cc->default_version);
    char dir[512], cfg[600], buf[640];
    serr e = {0};
    snprintf(dir, sizeof(dir), "%s/%s", tmp, sub);
    snprintf(buf, sizeof(buf), "%s/targets", dir);
    if (mkdir_p(buf, 0755, &e) != 0) fail_msg("%s", e.msg);
    obs_vars *v = malloc(sizeof(*v));
    vars_for(v, cat, comp, dir, enabled);
    snprintf(cfg, sizeof(cfg), "%s/%s", dir, cv->config_file);
    assert_int_equal(obs_vars_set(v, "config", cfg, &e), 0);
    assert_int_equal(obs_vars_set(v, "retention", "360h", &e), 0);
    assert_int_equal(obs_vars_set(v, "version", cv->version, &e), 0);
    json_t *doc = NULL;
    if (obs_render_config(v, cv, NULL, &doc, &e) != 0) fail_msg("render %s: %s", comp, e.msg);
    if (json_dump_file(doc, cfg, JSON_INDENT(2)) != 0) fail_msg("write %s", cfg);
    json_decref(doc);
    /* The empty file_sd lists and the copied files. */
    snprintf(buf, sizeof(buf), "%s/targets/stamps.json", dir);
    assert_int_equal(write_file_atomic(buf, "[]", 2, 0644, &e), 0);
    snprintf(buf, sizeof(buf), "%s/targets/stamps-health.json", dir);
    assert_int_equal(write_file_atomic(buf, "[]", 2, 0644, &e), 0);
    size_t i;
    json_t *f;
    json_array_foreach(cv->files, i, f) {
        char *text;
        size_t len;
        assert_int_equal(read_file(jstr(f, "from", ""), 1 << 20, &text, &len, &e), 0);
        snprintf(buf, sizeof(buf), "%s/%s", dir, jstr(f, "to", ""));
        assert_int_equal(write_file_atomic(buf, text, len, 0644, &e), 0);
        free(text);
    }
    char **argv = NULL;
    if (obs_render_argv(v, NULL, cv->check, &argv, &e) != 0) fail_msg("check argv: %s", e.msg);
    free(v);
    snprintf(buf, sizeof(buf), "%s.check.log", sub);
    int rc = run(argv, buf);
    obs_argv_free(argv);
    return rc;
}

static void test_promtool_accepts(void **st) {
    if (!path_exists("/usr/bin/promtool")) fail_msg("/usr/bin/promtool missing (scripts/install-deps.sh)");
    static const char *const all[] = {"prometheus", "alertmanager", "node-exporter", "blackbox-exporter",
                                      "pushgateway", NULL};
    static const char *const alone[] = {"prometheus", NULL};
    assert_int_equal(check_rendered("prometheus", all, "prom-all"), 0);
    assert_int_equal(check_rendered("prometheus", alone, "prom-alone"), 0);
    /* The check can fail: a broken rendered config is refused. */
    char path[512];
    snprintf(path, sizeof(path), "%s/prom-all/prometheus.yml", tmp);
    serr e = {0};
    static const char bad[] = "{\"global\": {\"scrape_interval\": \"soon\"}}";
    assert_int_equal(write_file_atomic(path, bad, strlen(bad), 0644, &e), 0);
    char *argv[] = {"/usr/bin/promtool", "check", "config", path, NULL};
    assert_int_not_equal(run(argv, "prom-bad.log"), 0);
}

static void test_amtool_accepts(void **st) {
    if (!path_exists("/usr/bin/amtool")) fail_msg("/usr/bin/amtool missing (scripts/install-deps.sh)");
    static const char *const en[] = {"prometheus", "alertmanager", NULL};
    assert_int_equal(check_rendered("alertmanager", en, "am"), 0);
}

static void test_blackbox_accepts(void **st) {
    if (!path_exists("/usr/bin/prometheus-blackbox-exporter")) {
        print_message("SKIPPED: /usr/bin/prometheus-blackbox-exporter is not installed "
                      "(apt-get install prometheus-blackbox-exporter)\n");
        skip();
    }
    static const char *const en[] = {"prometheus", "blackbox-exporter", NULL};
    assert_int_equal(check_rendered("blackbox-exporter", en, "bb"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_catalog),
        cmocka_unit_test(test_later_file_adds_versions),
        cmocka_unit_test(test_catalog_rejections),
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_shipped_platform),
        cmocka_unit_test(test_quantity),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_render_config),
        cmocka_unit_test(test_promtool_accepts),
        cmocka_unit_test(test_amtool_accepts),
        cmocka_unit_test(test_blackbox_accepts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
