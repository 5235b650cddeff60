/*
 * watch.h - GET /v1/watch: a stream of newline-delimited JSON events, read
 * from the store's events table as they are written.
 *
 * A watch holds no API thread: its chunked response's reader hands out
 * what the store has after the watch's last event id and, when there is
 * nothing, suspends the connection (MHD_suspend_connection).  One notifier
 * thread looks at the newest event id a few times a second and resumes the
 * watches that are behind, and every watch at least every heartbeat (a
 * BOOKMARK line), which is also how a gone client is noticed.  Bounded: at
 * most api-max-watches at once (503 past it), and a watch buffers at most
 * one batch (WATCH_BATCH events, WATCH_BUF_MAX bytes): the store is the
 * backlog, so a slow client costs nothing more.
 */
#ifndef STAMP_API_WATCH_H
#define STAMP_API_WATCH_H

#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

#define WATCH_BATCH 64
#define WATCH_BUF_MAX (256 * 1024)
#define WATCH_HEARTBEAT_MS 10000
#define WATCH_POLL_MS 200

struct MHD_Connection;
struct MHD_Response;
typedef struct watch_hub watch_hub;
typedef struct api_watch api_watch;

int watch_hub_new(store *st, int max, watch_hub **out, serr *e);
/* Ends every watch (resuming the suspended ones) and stops the notifier:
 * call before MHD_stop_daemon.  Then watch_hub_free after it. */
void watch_hub_stop(watch_hub *h);
void watch_hub_free(watch_hub *h);

/* A watch of kind (NULL: all kinds), name (NULL: all), tenant (NULL: all),
 * from event id since (< 0: from now).  SE_LIMIT when api-max-watches are
 * open. */
int watch_open(watch_hub *h, const char *kind, const char *name, const char *tenant,
               int64_t since, api_watch **out, serr *e);
/* Drops a watch that was never given to a response. */
void watch_drop(api_watch *w);
/* The response that streams w (which it then owns), bound to conn. */
struct MHD_Response *watch_response(api_watch *w, struct MHD_Connection *conn);

/* The watch line of one event row (pure): {"type": ADDED|MODIFIED|DELETED,
 * "object": {kind, name}, "event": {..., from, to}}. */
json_t *watch_line(json_t *ev);

#endif
