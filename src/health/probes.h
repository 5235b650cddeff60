/*
 * probes.h - the probes a health check runs, each against an address or a
 * command, knowing nothing of stamps (so a test can point them at a
 * listener it starts).  Each answers 0 when the probe passes, else -1 with
 * the reason in err.  Every probe is bounded by its timeout.
 */
#ifndef STAMP_HEALTH_PROBES_H
#define STAMP_HEALTH_PROBES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health/health.h"

/* A TCP connect to 127.0.0.1:port. */
int probe_tcp(int port, int64_t timeout_ms, char *err, size_t errlen);
/* An HTTP GET of url answering expect_status (body read up to 64 KiB). */
int probe_http(const char *url, int expect_status, int64_t timeout_ms, char *err, size_t errlen);
/* /bin/sh -c command, in its own process group, with exactly env (NULL
 * terminated), in cwd, stdout and stderr appended to log_path; killed at
 * the timeout. */
int probe_exec(const char *command, const char *const *env, const char *cwd, const char *log_path,
               int64_t timeout_ms, char *err, size_t errlen);
/* The same for a program and its arguments (argv[0] an absolute path; no
 * shell). */
int probe_exec_argv(const char *const *argv, const char *const *env, const char *cwd, const char *log_path,
                    int64_t timeout_ms, char *err, size_t errlen);
/* Scrape url (Prometheus text) and fold each of c's expressions into
 * worst[k]/seen[k]: the value that breaks the rule, if any replica's does.
 * -1 when the scrape fails. */
int probe_scrape(const char *url, int64_t timeout_ms, const hc_check *c, double *worst, bool *seen,
                 char *err, size_t errlen);
/* After folding every replica: 0 when every expression holds. */
int probe_threshold_verdict(const hc_check *c, const double *worst, const bool *seen, char *err,
                            size_t errlen);

#endif
