/*
 * yamljson.h - manifests as JSON values.  stampctl apply -f and the API take
 * YAML or JSON; both become the same json_t and are validated by the same
 * code.  YAML is read with libyaml's event parser: mappings become objects,
 * sequences arrays, plain scalars are typed (int, real, true/false, null,
 * else string), quoted scalars stay strings.  Anchors/aliases and tags other
 * than the core schema are refused; duplicate keys are refused; depth and
 * size are bounded.
 */
#ifndef STAMP_YAMLJSON_H
#define STAMP_YAMLJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define MANIFEST_MAX_BYTES (1024 * 1024)
#define MANIFEST_MAX_DEPTH 32

/* Parse a YAML (or JSON, which is YAML) document.  A stream with several
 * documents ("---") yields an array of documents in *out when multi is
 * non-NULL (*multi set to 1), else SE_INVAL.  Errors name line and column. */
int yaml_to_json(const char *text, size_t len, json_t **out, int *multi, serr *e);

/* json_loadb for text from outside: 0 and *out, or SE_NOMEM when any of
 * jansson's allocations failed during the parse (jansson may then answer
 * with a wrong syntax error or with values that lost a byte: see
 * yamljson.c), or SE_INVAL with line, column and jansson's words. */
int json_load_text(const char *text, size_t len, size_t flags, json_t **out, serr *e);
/* json_dumps, but NULL (as for no memory at all) when one of jansson's
 * allocations failed on the way: jansson then leaves a key out of the text
 * and returns the rest as if whole. */
char *json_text(const json_t *v, size_t flags);
/* How many of this thread's jansson allocations have failed so far: a
 * caller compares before and after a jansson call whose result cannot
 * show the failure (json_deep_copy, json_pack). */
unsigned long json_alloc_failures(void);

/* Parse JSON text from a user with duplicates rejected and depth bounded. */
int json_parse_user(const char *text, size_t len, json_t **out, serr *e);

/* Depth of a JSON value (scalars are 1). */
int json_depth(const json_t *v);

/* Member k of object o as a string or an integer, d when absent or of
 * another type. */
const char *jstr(const json_t *o, const char *k, const char *d);
int64_t jint(const json_t *o, const char *k, int64_t d);
/* Member k of object o, made an empty object first if absent or not one. */
json_t *jchild(json_t *o, const char *k);

/* Emit a JSON value as block YAML (for -o yaml). Caller frees *out. */
int json_to_yaml(const json_t *v, char **out, serr *e);

#endif
