/*
 * version.h - the one definition of stamp's version, for stampd --version,
 * stampctl version and GET /version.
 */
#ifndef STAMP_VERSION_H
#define STAMP_VERSION_H

#define STAMP_VERSION "0.5.0"

#endif
