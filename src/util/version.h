/*
 * version.h - the one definition of stamp's version: stampd --version,
 * stampctl version, GET /version and the OpenAPI document read it here.
 */
#ifndef STAMP_VERSION_H
#define STAMP_VERSION_H

#define STAMP_VERSION "0.5.0"

#endif
