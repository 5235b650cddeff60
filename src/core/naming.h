/*
 * naming.h - stamp names: {prefix}-{region code}-{stamp id}, with the Azure
 * region codes of seed 001 (westeurope -> weu, eastus -> eus,
 * southeastasia -> sea, and the other common regions).  Pure.
 */
#ifndef STAMP_NAMING_H
#define STAMP_NAMING_H

#include <stddef.h>

#include "util/err.h"

#define STAMP_NAME_MAX 63
#define STAMP_PREFIX_DEFAULT "synaxis"

/* Code for a region name ("westeurope"); NULL when unknown. */
const char *region_code(const char *region);
/* Region for a code ("weu"); NULL when unknown. */
const char *region_from_code(const char *code);
/* "westeurope, northeurope, ..." for error messages. */
void region_list(char *buf, size_t len);

/* Normalises a stamp id: digits are zero-padded to 3 ("3" -> "003"); other
 * ids must be lowercase alphanumerics, 1..16 characters. */
int stamp_id_normalize(const char *id, char *out, size_t len, serr *e);

/* Builds the full name; checks every part. */
int stamp_name_build(const char *prefix, const char *region, const char *id, char *out,
                     size_t len, serr *e);

#endif
