/*
 * stampctl.h - what stampctl's command files share: the parsed command
 * line (cli_args.h), the API call helpers and the output helpers.  Every
 * helper that fails prints "stampctl: <reason>" and exits: 1 when a request
 * failed, 2 for a usage error (then nothing that changes anything was sent).
 */
#ifndef STAMP_STAMPCTL_H
#define STAMP_STAMPCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/cli_args.h"
#include "cli/cli_output.h"
#include "util/util.h"
#include "util/version.h"
#include "util/yamljson.h"

#define MAX_ARGS CA_MAX_POS

typedef ca_parsed opts;

/* Per-request timeout; commands that wait on long server work raise it. */
extern long http_timeout_ms;

const char *flag(const opts *o, const char *name);
int nflag(const opts *o, const char *name, const char **vals, int max);
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error found after parsing: exit 2, nothing changed. */
_Noreturn void usage_die(const opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* buf = the formatted text, or exit 2 with "<what> too long": a request
 * path, URL or header that does not fit is refused before it is sent,
 * never cut into one that names something else. */
void fmt_or_die(char *buf, size_t len, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

long http(const char *method, const char *path, const char *data, size_t len, const char *ctype,
          sbuf *resp);
json_t *call(const char *method, const char *path, json_t *body, long *status_out, bool allow_error);
json_t *call_raw(const char *method, const char *path, const char *data, size_t len,
                 const char *ctype, long *status_out, bool allow_error);
const char *error_message(json_t *j);
char *url_escape(const char *s);
/* Writes data to stdout, only its last N lines when tail is "N". */
void write_tail(const char *data, size_t len, const char *tail);
/* --dry-run: exits 2 unless the server says it does dry runs; what names
 * the command for the message. */
void dry_run_gate(const char *what);
#define DRY_RUN_QUERY "dryRun=All"

void print_json_or_yaml(json_t *v, const char *fmt);
bool structured(const opts *o);
bool wide(const opts *o);
bool printed_structured(const opts *o, json_t *r);
void render_table(table *t);
void age_since(const char *ts, char *buf, size_t len);
/* -l: the parsed selector, or NULL when none was given (exit 2 if bad). */
const ca_selector *selector_of(const opts *o, ca_selector *buf);
/* Keeps the elements of arr whose labels (at labels_key of each, or of
 * its metadata when meta) match; returns how many are left. */
size_t filter_by_labels(json_t *arr, const ca_selector *sel, bool meta);

/* stampctl_ops.c: in-place operations on an Active stamp. */
int cmd_scale(opts *o);
int cmd_update(opts *o);

/* stampctl_ns.c: the platform commands (transient namespaces, pods,
 * volumes, runs, the reaper, model bundles, MTTC verification, tokens). */
int cmd_ns_create(opts *o);
int cmd_ns_list(opts *o);
int cmd_ns_get(opts *o);
int cmd_ns_activity(opts *o);
int cmd_ns_finalize(opts *o);
int cmd_ns_reap(opts *o);
int cmd_ns_pods(opts *o);
int cmd_ns_run_pod(opts *o);
int cmd_ns_logs(opts *o);
int cmd_ns_annotate(opts *o);
int cmd_ns_volume(opts *o);
int cmd_ns_run(opts *o);
int cmd_ns_sweep(opts *o);
int cmd_bundle_push(opts *o);
int cmd_bundle_list(opts *o);
int cmd_runs(opts *o);
int cmd_mttc_verify(opts *o);
int cmd_token_create(opts *o);
/* Rows and describe pages of the platform kinds, for get and describe. */
table *ns_table(bool wide);
void ns_row(table *t, json_t *n, bool wide);
void ns_describe(json_t *n);
table *bundle_table(bool wide);
void bundle_row(table *t, json_t *b, bool wide);
table *run_table(bool wide);
void run_row(table *t, json_t *x, bool wide);

/* stampctl_autoscale.c: the StampAutoscaler's rows for get, and the
 * offline what-if replay. */
extern const ca_flag f_as_simulate[];
int cmd_autoscaler_simulate(opts *o);
table *as_table(bool wide);
void describe_autoscaler(json_t *it);
void as_row(table *t, json_t *a, bool wide);

/* stampctl_revisions.c: template revisions (get templates NAME
 * --revisions | --revision N, deploy --revision N). */
int check_revision(const char *v, char *why, size_t len);
json_t *get_template_revision(const char *name, const char *rev);
int cmd_template_revisions(opts *o, const char *name);

/* stampctl_rollout.c: blue-green rotation (rollout, rollout status,
 * pause, resume, abort). */
extern const ca_flag f_rollout[];
extern const ca_flag f_rollout_status[];
int cmd_rollout(opts *o);
int cmd_rollout_status(opts *o);
int cmd_rollout_pause(opts *o);
int cmd_rollout_resume(opts *o);
int cmd_rollout_abort(opts *o);

/* stampctl_obs.c: ObservabilityPlatforms (get and describe rows, platform
 * pause|resume, delete platform NAME [--wait]). */
table *plat_table(bool wide);
void plat_row(table *t, json_t *p, bool wide);
void describe_platform(json_t *p);
int cmd_platform_pause(opts *o);
int cmd_platform_resume(opts *o);
int platform_delete(opts *o, const char *name);

#endif
