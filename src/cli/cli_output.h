/*
 * cli_output.h - how stampctl shows things: kubectl-like aligned tables,
 * -o json and -o yaml.  Pure formatting into a bounded sbuf; no I/O.
 */
#ifndef STAMP_CLI_OUTPUT_H
#define STAMP_CLI_OUTPUT_H

#include <jansson.h>

#include "util/util.h"

#define TABLE_MAX_COLS 16
#define TABLE_MAX_ROWS 100000

typedef struct table table;

table *table_new(int ncols, const char *const *headers);
void table_free(table *t);
/* Adds a row of ncols cells (NULL prints as "<none>").  Copies the text. */
int table_add(table *t, const char *const *cells);
/* Columns padded to the widest cell plus 3 spaces, headers upper case,
 * the last column not padded. */
int table_render(const table *t, sbuf *out);

/* Human ages like kubectl: 45s, 5m, 3h, 2d. */
char *fmt_age(int64_t ms, char *buf, size_t len);

#endif
