/*
 * test_obs_targets.c - the file side of the Prometheus file_sd files
 * (obs/targets.h) in a temporary dir: where the dir is, the canonical
 * text and its limit, a write only when the content changed (also across
 * a restart, from the file on disk, and again when the file was removed),
 * and where the ObservabilityPlatform catalog is found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "obs/targets.h"
#include "util/util.h"

static void sd_dir(void **state) {
    (void)state;
    stamp_config cfg;
    config_defaults(&cfg);
    char buf[600];
    str_copy(cfg.data_dir, sizeof(cfg.data_dir), "/var/lib/stamp");
    assert_int_equal(obs_sd_dir(&cfg, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/var/lib/stamp/prometheus-sd");
    str_copy(cfg.prometheus_sd_dir, sizeof(cfg.prometheus_sd_dir), "/srv/sd");
    assert_int_equal(obs_sd_dir(&cfg, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/srv/sd");
    char small[4];
    assert_int_equal(obs_sd_dir(&cfg, small, sizeof(small)), SE_TOOBIG);
    assert_string_equal(small, "");
}

static void render(void **state) {
    (void)state;
    json_t *a = json_loads("[{\"targets\":[\"127.0.0.1:1\"],\"labels\":{\"stamp\":\"s\",\"region\":\"r\"}}]",
                           0, NULL);
    json_t *b = json_loads("[{\"labels\":{\"region\":\"r\",\"stamp\":\"s\"},\"targets\":[\"127.0.0.1:1\"]}]",
                           0, NULL);
    char *ta, *tb;
    size_t la, lb;
    serr e = {0};
    assert_int_equal(obs_sd_render(a, OBS_SD_MAX, &ta, &la, &e), 0);
    assert_int_equal(obs_sd_render(b, OBS_SD_MAX, &tb, &lb, &e), 0);
    /* The same targets in another key order: the same bytes. */
    assert_int_equal(la, lb);
    assert_memory_equal(ta, tb, la);
    assert_int_equal(ta[la - 1], '\n');
    assert_int_equal(strlen(ta), la);
    json_t *back = json_loads(ta, 0, NULL);
    assert_true(json_equal(back, a));
    json_decref(back);
    free(tb);
    /* Past the limit: refused, nothing returned. */
    assert_int_equal(obs_sd_render(a, la - 1, &tb, &lb, &e), SE_TOOBIG);
    assert_null(tb);
    assert_int_equal(obs_sd_render(json_object_get(json_array_get(a, 0), "labels"), OBS_SD_MAX, &tb, &lb, &e),
                     SE_INVAL);
    free(ta);
    json_decref(a);
    json_decref(b);
}

static ino_t inode_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void write_when_changed(void **state) {
    (void)state;
    char dir[] = "/tmp/stamp-obs-sd-XXXXXX", path[128], hash[65] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, OBS_SD_STAMPS);
    serr e = {0};
    bool w;
    const char *one = "[]\n", *two = "[{\"labels\":{},\"targets\":[\"127.0.0.1:2\"]}]\n";

    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, one, strlen(one), hash, &w, &e), 0);
    assert_true(w);
    assert_int_equal(strlen(hash), 64);
    ino_t i1 = inode_of(path);
    /* Unchanged: not replaced (the rename would give another inode). */
    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, one, strlen(one), hash, &w, &e), 0);
    assert_false(w);
    assert_true(inode_of(path) == i1);
    /* Changed: replaced whole. */
    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, two, strlen(two), hash, &w, &e), 0);
    assert_true(w);
    char *text;
    size_t len;
    assert_int_equal(read_file(path, 4096, &text, &len, &e), 0);
    assert_string_equal(text, two);
    free(text);
    ino_t i2 = inode_of(path);
    /* A restart (nothing known): the file on disk is compared first. */
    char fresh[65] = "";
    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, two, strlen(two), fresh, &w, &e), 0);
    assert_false(w);
    assert_string_equal(fresh, hash);
    assert_true(inode_of(path) == i2);
    fresh[0] = '\0';
    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, one, strlen(one), fresh, &w, &e), 0);
    assert_true(w);
    /* Removed behind our back: written again though the hash is known. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(obs_sd_write(dir, OBS_SD_STAMPS, one, strlen(one), fresh, &w, &e), 0);
    assert_true(w);
    assert_true(path_exists(path));
    /* A dir that cannot be written: an error, and the hash forgotten. */
    char nodir[160];
    snprintf(nodir, sizeof(nodir), "%s/missing", dir);
    assert_int_equal(obs_sd_write(nodir, OBS_SD_STAMPS, one, strlen(one), fresh, &w, &e), SE_IO);
    assert_false(w);
    assert_string_equal(fresh, "");
    assert_int_equal(remove_tree(dir, &e), 0);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("order: []\n", f);
    fclose(f);
}

static void catalog_path(void **state) {
    (void)state;
    char root[] = "/tmp/stamp-obs-cat-XXXXXX", p[256], buf[512], want[512];
    assert_non_null(mkdtemp(root));
    serr e = {0};
    stamp_config cfg;
    config_defaults(&cfg);
    snprintf(p, sizeof(p), "%s/build", root);
    assert_int_equal(mkdir_p(p, 0755, &e), 0);

    /* Nothing anywhere: NotFound naming the key. */
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), SE_NOTFOUND);
    assert_non_null(strstr(e.msg, "observability-catalog"));

    /* A build dir in the source tree: <src>/deploy/observability. */
    snprintf(p, sizeof(p), "%s/deploy/observability", root);
    assert_int_equal(mkdir_p(p, 0755, &e), 0);
    snprintf(want, sizeof(want), "%s/deploy/observability/catalog.yaml", root);
    touch(want);
    snprintf(p, sizeof(p), "%s/build", root);
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), 0);
    assert_string_equal(buf, want); /* absolute, no ".." left */

    /* Installed: share/stamp/observability wins. */
    snprintf(p, sizeof(p), "%s/share/stamp/observability", root);
    assert_int_equal(mkdir_p(p, 0755, &e), 0);
    snprintf(want, sizeof(want), "%s/share/stamp/observability/catalog.yaml", root);
    touch(want);
    snprintf(p, sizeof(p), "%s/build", root);
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), 0);
    assert_string_equal(buf, want);

    /* The key wins when set, and must exist. */
    snprintf(cfg.obs_catalog, sizeof(cfg.obs_catalog), "%s/deploy/observability/catalog.yaml", root);
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), 0);
    assert_string_equal(buf, cfg.obs_catalog);
    snprintf(cfg.obs_catalog, sizeof(cfg.obs_catalog), "%s/nope.yaml", root);
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), SE_NOTFOUND);
    assert_non_null(strstr(e.msg, "observability-catalog"));
    /* A dir is not a catalog. */
    snprintf(cfg.obs_catalog, sizeof(cfg.obs_catalog), "%s/deploy", root);
    assert_int_equal(obs_catalog_path(&cfg, p, buf, sizeof(buf), &e), SE_NOTFOUND);
    assert_int_equal(remove_tree(root, &e), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sd_dir),
        cmocka_unit_test(render),
        cmocka_unit_test(write_when_changed),
        cmocka_unit_test(catalog_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
