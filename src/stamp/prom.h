/*
 * prom.h - the stamps as Prometheus reads them: the series the alert rules
 * (deploy/prometheus/stamp-alerts.yaml) need, and the list of the serving
 * stamps' replicas for Prometheus's HTTP service discovery.
 *
 * Both are computed from the store (and the health results table) when
 * they are asked for: nothing is kept between scrapes, so what they say
 * survives a restart of stampd and cannot drift from the records.
 *
 * Threading: any thread (the API's); reads only.
 */
#ifndef STAMP_STAMP_PROM_H
#define STAMP_STAMP_PROM_H

#include <jansson.h>

#include "reconcile/ctl.h"
#include "util/util.h"

/* Appends, in Prometheus text format with HELP and TYPE:
 *   active_stamps, ready_stamps, creating_stamps, draining_stamps,
 *   failed_stamps, deleting_stamps        stamps per phase (seed 000)
 *   stamp_phase_seconds{stamp,region,template,phase}
 *                                         time in the current phase
 *   stamp_phase_timeout_seconds{phase}    the configured timeout of a phase
 *   stamp_failed_info{stamp,region,template,from,reason} 1
 *                                         a Failed stamp: what it failed from, and why
 *   stamp_attempt{stamp,region,template,operation}
 *                                         the creation or activation attempt under way
 *   stamp_health_check_failing{stamp,region,template,check}
 *                                         1 when the check is Failing (its
 *                                         unhealthy threshold reached), for
 *                                         stamps whose checks run
 *   stamp_health_recovering{stamp,region,template}
 *                                         1 while an Active stamp's recovery runs
 * Deleted stamps have no per-stamp series.  SE_TOOBIG when out is full. */
int stamp_prom_render(ctl_ctx *c, sbuf *out, serr *e);

/* Prometheus HTTP service discovery (http_sd_config): a JSON array with
 * one target group per process step of every Active or Draining stamp
 * whose step says `metrics` (what stampd scrapes itself while draining):
 *   [{"targets": ["127.0.0.1:PORT", ...],
 *     "labels": {"stamp", "region", "template", "pool", "step",
 *                "__metrics_path__"}}]
 * Only ports already leased are listed; a GET never leases one. */
int stamp_prom_targets(ctl_ctx *c, json_t **out, serr *e);

/* The same stamps for a blackbox exporter: one group per process step
 * that the health gate probes (`health`), whose targets are the full URLs
 * of the replicas' health endpoints, at the path stampd's own HTTP check
 * asks (the stamp's StampHealthCheck or the default; else the template's
 * health path):
 *   [{"targets": ["http://127.0.0.1:PORT/health", ...],
 *     "labels": {"stamp", "region", "template", "pool", "step"}}]
 * Only ports already leased are listed. */
int stamp_prom_health_targets(ctl_ctx *c, json_t **out, serr *e);

#endif
