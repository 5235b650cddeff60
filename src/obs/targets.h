/*
 * targets.h - the fleet as the installed Prometheus finds it: stampd
 * writes Prometheus file_sd files that follow the stamps' phases, and
 * tells where the ObservabilityPlatform catalog is.
 *
 * Files in the prometheus-sd dir (obs_sd_dir):
 *   stamps.json         the body of GET /v1/prometheus/targets: the
 *                       metrics ports of every serving stamp's replicas
 *   stamps-health.json  the same stamps' health URLs
 *                       (http://127.0.0.1:PORT/health), for the blackbox
 *                       exporter (the config relabels __address__ to
 *                       __param_target)
 * Each is a JSON array of {targets, labels}; a file is replaced whole
 * (temporary file in the same dir, fsync, rename, fsync of the dir) and
 * only when its content changed, so Prometheus never reads half a file and
 * is not woken for nothing.  Temporary names (stamps.json.tmp.XXXXXX) do
 * not match a *.json glob.
 *
 * Threading: obs_targets_sync keeps what it last wrote in process memory
 * and is called from stampd's run loop only.
 */
#ifndef STAMP_OBS_TARGETS_H
#define STAMP_OBS_TARGETS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "reconcile/ctl.h"
#include "util/err.h"

#define OBS_SD_STAMPS "stamps.json"
#define OBS_SD_HEALTH "stamps-health.json"
#define OBS_SD_STAMPD "stampd.json" /* every replica of stampd (one without replicas) */
#define OBS_SD_MAX (8u << 20) /* bytes of one file */

/* The prometheus-sd-dir key, or <data-dir>/prometheus-sd when it is "".
 * 0, or SE_TOOBIG when the path does not fit (buf is then ""). */
int obs_sd_dir(const stamp_config *cfg, char *buf, size_t len);

/* The file's text for groups (a JSON array): keys sorted, so that the same
 * targets give the same bytes, and a final newline.  SE_TOOBIG past max
 * bytes.  *out is malloc'd. */
int obs_sd_render(const json_t *groups, size_t max, char **out, size_t *len, serr *e);

/* Writes text to dir/file when it differs from what is there.  hash holds
 * the sha256 of what was last written ("" : not known; the file on disk is
 * read then); it is updated on a write and cleared on a failure.  A file
 * that was removed is written again.  *written (may be NULL) tells whether
 * the file was replaced. */
int obs_sd_write(const char *dir, const char *file, const char *text, size_t len, char hash[65],
                 bool *written, serr *e);

/* Both files from the store, now.  Creates the dir (0755) when missing and
 * removes temporary files a crash left there (once).  Never blocks on
 * anything but the store and the local disk. */
int obs_targets_sync(ctl_ctx *c, serr *e);

/* The catalog's path: the observability-catalog key when set (which must
 * exist), else the first that exists of
 *   <exe_dir>/../share/stamp/observability/catalog.yaml   (installed)
 *   <exe_dir>/../deploy/observability/catalog.yaml        (a build dir in
 *                                                           the source tree)
 * exe_dir NULL: the directory of the running program (/proc/self/exe).
 * A found path is made absolute (realpath).  SE_NOTFOUND naming the key
 * observability-catalog when there is none. */
int obs_catalog_path(const stamp_config *cfg, const char *exe_dir, char *buf, size_t len, serr *e);

#endif
