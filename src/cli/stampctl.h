/*
 * stampctl.h - what stampctl's command files share: the parsed command
 * line, the API call helpers and the output helpers.  Every helper that
 * fails prints "stampctl: <reason>" and exits; commands stay straight-line.
 */
#ifndef STAMP_STAMPCTL_H
#define STAMP_STAMPCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/cli_output.h"
#include "util/util.h"
#include "util/yamljson.h"

#define MAX_ARGS 32

typedef struct opts {
    const char *server;
    const char *token;
    const char *config;
    const char *output; /* "", json, yaml, wide */
    const char *pos[MAX_ARGS];
    int npos;
    /* flags by name */
    const char *fname[MAX_ARGS];
    const char *fval[MAX_ARGS];
    int nflags;
} opts;

/* Per-request timeout; commands that wait on long server work raise it. */
extern long http_timeout_ms;

const char *flag(const opts *o, const char *name);
int nflag(const opts *o, const char *name, const char **vals, int max);
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

long http(const char *method, const char *path, const char *data, size_t len, const char *ctype,
          sbuf *resp);
json_t *call(const char *method, const char *path, json_t *body, long *status_out, bool allow_error);
json_t *call_raw(const char *method, const char *path, const char *data, size_t len,
                 const char *ctype, long *status_out, bool allow_error);
const char *error_message(json_t *j);

void print_json_or_yaml(json_t *v, const char *fmt);
bool structured(const opts *o);
bool printed_structured(const opts *o, json_t *r);
void render_table(table *t);
void age_since(const char *ts, char *buf, size_t len);

/* stampctl_ns.c: seed 004's platform commands */
int cmd_ns(opts *o);
int cmd_bundle(opts *o);
int cmd_runs(opts *o);
int cmd_mttc(opts *o);
int cmd_token(opts *o);

#endif
