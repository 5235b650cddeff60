/*
 * blob.h - blob storage behind one interface, for diagnostics archives and
 * model bundles.  Two backends:
 *
 *   dir    DIR/{container}/{path}: files written atomically (tmp, fsync,
 *          rename).  The default; stampd enforces retention on it.
 *   azure  Azure Blob over REST with SharedKey auth, from an
 *          AZURE_BLOB_CONNECTION_STRING ("AccountName=..;AccountKey=..;
 *          BlobEndpoint=.." or "UseDevelopmentStorage=true").  Containers
 *          are created when missing.  Tested against Azurite.
 *
 * Names are checked before any I/O: a container is 3..63 of [a-z0-9-]; a
 * path is 1..1024 characters of [A-Za-z0-9._-] in segments separated by
 * single slashes, with no empty, "." or ".." segment.  So nothing a tenant
 * sends can leave the container, and no URL needs escaping.
 *
 * blob_put_verified is the only way diagnostics are stored: it writes, reads
 * the blob back, and succeeds only when the size and SHA-256 match what was
 * sent.
 *
 * Threading: a blob_store is immutable after blob_open; calls may run on any
 * thread at once.
 */
#ifndef STAMP_BLOB_H
#define STAMP_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define BLOB_PATH_MAX 1024
#define BLOB_MAX_SIZE (256u << 20) /* one blob read back at most */

typedef struct blob_store blob_store;

/* backend "dir" uses root; "azure" uses conn (a connection string).
 * timeout_ms (azure): a request with nothing moving (under 1 KiB/s) for
 * this long is abandoned, whatever its size; one that keeps moving may
 * take twice this long plus its bytes at 64 KiB/s. */
int blob_open(const char *backend, const char *root, const char *conn, int64_t timeout_ms,
              blob_store **out, serr *e);
void blob_close(blob_store *b);
/* "dir /var/lib/stamp/blobs" or "azure http://127.0.0.1:10000/devstoreaccount1". */
const char *blob_describe(const blob_store *b);
bool blob_is_dir(const blob_store *b);

bool blob_container_valid(const char *c);
bool blob_path_valid(const char *p);

int blob_put(blob_store *b, const char *container, const char *path, const void *data,
             size_t len, serr *e);
/* Reads the whole blob (at most max bytes; larger is SE_TOOBIG); missing is
 * SE_NOTFOUND.  *data is NUL terminated; free it. */
int blob_get(blob_store *b, const char *container, const char *path, size_t max, char **data,
             size_t *len, serr *e);
int blob_delete(blob_store *b, const char *container, const char *path, serr *e);
/* put, read back, compare size and SHA-256; sha_out (65 bytes) may be NULL. */
int blob_put_verified(blob_store *b, const char *container, const char *path, const void *data,
                      size_t len, char *sha_out, serr *e);

/* The same from the file src, whose SHA-256 the caller knows (sha, may be
 * NULL): the directory backend copies it in chunks, never holding it whole
 * in memory; azure maps it for its one PUT. */
int blob_put_file_verified(blob_store *b, const char *container, const char *path, const char *src,
                           const char *sha, serr *e);

/* Directory backend only: delete blobs of container older than the
 * retention fn gives for their first path segment (the tenant).  Returns the
 * number deleted; empty directories are removed too. */
typedef int64_t (*blob_retention_fn)(const char *tenant, void *arg);
int blob_expire(blob_store *b, const char *container, int64_t now_ms, blob_retention_fn fn,
                void *arg, serr *e);

/* The error an Azure reply with this status and XML body (NUL-terminated,
 * may be NULL) means: the <Code> element's text in the message, the status
 * mapped to SE_NOTFOUND / SE_UNAVAIL / SE_IO.  Exposed for the fuzz harness. */
int blob_az_error(long status, const char *body, const char *what, serr *e);

#endif
