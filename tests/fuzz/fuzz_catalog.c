/*
 * fuzz_catalog.c - obs_catalog_load (obs/obs.h) of the bytes as the
 * ComponentCatalog file.  The loader reads a file (it resolves the file's
 * directory for {catalog} and checks that the files it copies are there),
 * so each input is written to observability/catalog.yaml in a private
 * temporary directory made once, laid out as deploy/ is (prometheus/
 * stamp-alerts.yaml links to the shipped rules); a loaded catalog is then
 * asked for each of its components and their default versions.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "obs/obs.h"

static char dir[64] = "/tmp/fuzz_catalog.XXXXXX";
static char sub[2][96], rules[128], path[128];

static void drop_dir(void) {
    unlink(path);
    unlink(rules);
    rmdir(sub[0]);
    rmdir(sub[1]);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (mkdtemp(dir) == NULL) {
        perror("fuzz_catalog: mkdtemp");
        abort();
    }
    snprintf(sub[0], sizeof(sub[0]), "%s/observability", dir);
    snprintf(sub[1], sizeof(sub[1]), "%s/prometheus", dir);
    snprintf(path, sizeof(path), "%s/catalog.yaml", sub[0]);
    snprintf(rules, sizeof(rules), "%s/stamp-alerts.yaml", sub[1]);
    atexit(drop_dir);
    if (mkdir(sub[0], 0700) != 0 || mkdir(sub[1], 0700) != 0 ||
        symlink(STAMP_SRC_DIR "/deploy/prometheus/stamp-alerts.yaml", rules) != 0) {
        perror("fuzz_catalog: setting up the directory");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) abort();
    if (fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    obs_catalog *cat = NULL;
    serr e = {0};
    if (obs_catalog_load(path, "/opt/stamp/observability", &cat, &e) == 0) {
        for (int i = 0; i < cat->n; i++) {
            const obs_cat_comp *cc = obs_catalog_comp(cat, cat->c[i].name);
            if (cc == NULL || obs_catalog_version(cc, cc->default_version) == NULL) abort();
            (void)obs_catalog_order(cat, cc->name);
        }
    }
    obs_catalog_free(cat);
    return 0;
}
