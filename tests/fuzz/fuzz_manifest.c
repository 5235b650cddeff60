/*
 * fuzz_manifest.c - what POST /v1/apply and stampctl apply -f do with a
 * manifest: yaml_to_json of the bytes (several documents allowed), the
 * manifest's keys checked, then every kind's validation the API's apply
 * uses (api/routes_stamps.c h_apply's kinds[]) run on each document's spec,
 * whatever its kind: StampTemplate (tpl_parse), StampHealthCheck
 * (hc_parse), StampAutoscaler (as_spec_parse) and ObservabilityPlatform
 * (obs_validate, with the shipped catalog loaded once).  Also emitted back
 * as YAML (-o yaml).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/spec.h"
#include "core/template.h"
#include "health/health.h"
#include "obs/obs.h"
#include "util/yamljson.h"

static void drop_catalog(void) { obs_set_catalog(NULL, "exiting"); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    serr e = {0};
    obs_catalog *cat = NULL;
    if (obs_catalog_load(STAMP_SRC_DIR "/deploy/observability/catalog.yaml", "/opt/stamp/observability",
                         &cat, &e) != 0) {
        fprintf(stderr, "fuzz_manifest: the shipped catalog: %s\n", e.msg);
        abort();
    }
    obs_set_catalog(cat, NULL);
    atexit(drop_catalog);
    return 0;
}

static void validate_all(json_t *spec) {
    serr e = {0};
    tpl *t = malloc(sizeof(*t));
    if (t != NULL) (void)tpl_parse(spec, t, &e);
    free(t);
    hc_set *set = malloc(sizeof(*set));
    if (set != NULL) (void)hc_parse(spec, set, &e);
    free(set);
    as_spec *sp = malloc(sizeof(*sp));
    if (sp != NULL) (void)as_spec_parse(spec, sp, &e);
    free(sp);
    (void)obs_validate(spec, &e);
}

static void one(json_t *m) {
    static const char *const keys[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const mkeys[] = {"name", "labels", "annotations", "namespace", NULL};
    serr e = {0};
    if (!json_is_object(m)) return;
    (void)json_check_keys(m, "manifest", keys, &e);
    json_t *md = json_object_get(m, "metadata");
    if (json_is_object(md)) (void)json_check_keys(md, "metadata", mkeys, &e);
    json_t *spec = json_object_get(m, "spec");
    if (spec != NULL) validate_all(spec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = NULL;
    int multi = 0;
    serr e = {0};
    if (yaml_to_json((const char *)data, size, &doc, &multi, &e) != 0) return 0;
    if (multi) {
        size_t i;
        json_t *m;
        json_array_foreach(doc, i, m) one(m);
    } else {
        one(doc);
    }
    /* stampctl get -o yaml, applied back: the same document. */
    char *y = NULL;
    if (json_to_yaml(doc, &y, &e) == 0) {
        json_t *back = NULL;
        serr e2 = {0};
        if (yaml_to_json(y, strlen(y), &back, NULL, &e2) != 0) {
            fprintf(stderr, "fuzz_manifest: json_to_yaml's output is refused: %s\n%s\n", e2.msg, y);
            abort();
        }
        if (!json_equal(doc, back)) {
            char *a = json_dumps(doc, JSON_ENCODE_ANY), *b = json_dumps(back, JSON_ENCODE_ANY);
            fprintf(stderr, "fuzz_manifest: YAML round trip differs\nin:   %s\nyaml: %s\nback: %s\n", a, y, b);
            abort();
        }
        json_decref(back);
        free(y);
    }
    json_decref(doc);
    return 0;
}
