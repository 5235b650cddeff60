/*
 * watch.c - the streams of GET /v1/watch (see watch.h for the model).
 *
 * Threading: a watch's reader runs on the MHD worker of its connection; the
 * notifier thread only resumes.  hub->mu guards the list, each watch's
 * `suspended` flag and `stopping`: a reader suspends under it and the
 * notifier resumes under it, so a connection is resumed only after it was
 * suspended, exactly once.  A watch leaves the list (under hub->mu) when
 * MHD destroys its response, after which nothing touches its connection.
 */
#include "api/watch.h"

#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/log.h"
#include "util/util.h"

struct api_watch {
    watch_hub *hub;
    api_watch *prev, *next;
    struct MHD_Connection *conn;
    int fd;              /* the connection's socket, to notice a gone client */
    char kind[RES_KIND_MAX];
    char name[RES_NAME_MAX];
    char tenant[RES_TENANT_MAX];
    bool has_kind, has_name, has_tenant;
    int64_t last_id;
    sbuf out;
    size_t off;
    bool suspended;      /* under hub->mu */
    bool gone;           /* under hub->mu: the client went; end the stream */
    bool listed;
    int64_t last_sent_ms; /* monotonic */
};

struct watch_hub {
    store *st;
    int max;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    api_watch *list;
    bool stopping;
    bool thread_on;
    pthread_t notifier;
};

/* ---- one event as a watch line ---- */

/* The row's from and to are the phase change's, as phase_change() wrote
 * them: nothing here reads the message. */
json_t *watch_line(json_t *ev) {
    if (ev == NULL) return NULL;
    const char *to = json_string_value(json_object_get(ev, "to"));
    json_int_t rv = json_integer_value(json_object_get(ev, "resourceVersion"));
    const char *type = "MODIFIED";
    if (rv == 1) type = "ADDED";
    /* A row gone (resourceVersion 0) or a phase that ends the object. */
    if (rv == 0 || (to && (strcmp(to, "Deleted") == 0 || strcmp(to, "reaped") == 0)))
        type = "DELETED";
    return json_pack("{s:s,s:{s:O,s:O},s:O}", "type", type, "object", "kind",
                     json_object_get(ev, "kind"), "name", json_object_get(ev, "name"), "event", ev);
}

/* ---- the reader ---- */

/* Fills w->out with the next batch; 0 or an error code. */
static int fill(api_watch *w) {
    json_t *rows = NULL;
    int64_t upto = w->last_id;
    serr e = {0};
    int rc = store_events_after(w->hub->st, w->has_kind ? w->kind : NULL,
                                w->has_name ? w->name : NULL, w->has_tenant ? w->tenant : NULL,
                                w->last_id, WATCH_BATCH, &rows, &upto, &e);
    if (rc) {
        log_warnx("watch: %s", e.msg);
        return rc;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(rows, i, ev) {
        json_t *line = watch_line(ev);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(line);
        if (text == NULL) continue;
        /* The batch is bounded in count; this bounds it in bytes too: what
         * does not fit comes with the next batch. */
        if (w->out.len > 0 && w->out.len + strlen(text) + 1 > WATCH_BUF_MAX) {
            free(text);
            upto = json_integer_value(json_object_get(ev, "id")) - 1;
            break;
        }
        sbuf_adds(&w->out, text);
        sbuf_add(&w->out, "\n", 1);
        free(text);
    }
    json_decref(rows);
    if (upto > w->last_id) w->last_id = upto;
    return 0;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    api_watch *w = cls;
    watch_hub *h = w->hub;
    if (w->off >= w->out.len) {
        sbuf_reset(&w->out);
        w->off = 0;
        pthread_mutex_lock(&h->mu);
        bool stopping = h->stopping, gone = w->gone;
        pthread_mutex_unlock(&h->mu);
        if (gone) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (stopping) return MHD_CONTENT_READER_END_OF_STREAM;
        if (fill(w) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (w->out.len == 0 && mono_ms() - w->last_sent_ms >= WATCH_HEARTBEAT_MS)
            sbuf_addf(&w->out, "{\"type\":\"BOOKMARK\",\"event\":{\"id\":%lld}}\n",
                      (long long)w->last_id);
        if (w->out.len == 0) {
            pthread_mutex_lock(&h->mu);
            if (h->stopping) {
                pthread_mutex_unlock(&h->mu);
                return MHD_CONTENT_READER_END_OF_STREAM;
            }
            w->suspended = true;
            MHD_suspend_connection(w->conn);
            pthread_mutex_unlock(&h->mu);
            return 0;
        }
    }
    assert(w->off <= w->out.len);
    size_t n = w->out.len - w->off;
    if (n > max) n = max;
    memcpy(buf, w->out.data + w->off, n);
    w->off += n;
    w->last_sent_ms = mono_ms();
    return (ssize_t)n;
}

static void unlist(api_watch *w) {
    watch_hub *h = w->hub;
    pthread_mutex_lock(&h->mu);
    if (w->listed) {
        if (w->prev) w->prev->next = w->next;
        else h->list = w->next;
        if (w->next) w->next->prev = w->prev;
        w->listed = false;
        assert(h->n > 0); /* h->n counts the listed watches */
        h->n--;
    }
    pthread_mutex_unlock(&h->mu);
}

static void reader_free(void *cls) { watch_drop(cls); }

void watch_drop(api_watch *w) {
    if (w == NULL) return;
    unlist(w);
    sbuf_free(&w->out);
    free(w);
}

struct MHD_Response *watch_response(api_watch *w, struct MHD_Connection *conn) {
    w->conn = conn;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    w->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, w, reader_free);
    if (r == NULL) watch_drop(w);
    return r;
}

int watch_open(watch_hub *h, const char *kind, const char *name, const char *tenant,
               int64_t since, api_watch **out, serr *e) {
    *out = NULL;
    api_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    w->hub = h;
    w->fd = -1;
    /* A filter is kept whole or the watch refused: one that did not fit
     * must not turn into no filter (a tenant's watch would stream every
     * tenant's events) nor into a cut one. */
    w->has_kind = kind != NULL;
    w->has_name = name != NULL;
    w->has_tenant = tenant != NULL;
    const char *too_long = NULL;
    if (kind && !str_copy(w->kind, sizeof(w->kind), kind)) too_long = "kind";
    else if (name && !str_copy(w->name, sizeof(w->name), name)) too_long = "name";
    else if (tenant && !str_copy(w->tenant, sizeof(w->tenant), tenant)) too_long = "tenant";
    if (too_long) {
        free(w);
        return serr_set(e, SE_INVAL, "watch: %s too long", too_long);
    }
    sbuf_init(&w->out, WATCH_BUF_MAX + 64 * 1024);
    w->last_sent_ms = mono_ms();
    if (since < 0 && store_events_last_id(h->st, &since, e) != 0) {
        watch_drop(w);
        return e->code;
    }
    w->last_id = since;
    pthread_mutex_lock(&h->mu);
    if (h->stopping || h->n >= h->max) {
        int max = h->max;
        bool stopping = h->stopping;
        pthread_mutex_unlock(&h->mu);
        watch_drop(w);
        if (stopping) return serr_set(e, SE_UNAVAIL, "stampd is stopping");
        return serr_set(e, SE_LIMIT, "%d watches are open (api-max-watches); try again later", max);
    }
    w->next = h->list;
    if (h->list) h->list->prev = w;
    h->list = w;
    w->listed = true;
    h->n++;
    assert(h->n <= h->max);
    pthread_mutex_unlock(&h->mu);
    *out = w;
    return 0;
}

/* ---- the notifier ---- */

/* A suspended connection does not see its client go (MHD reads nothing
 * from it): sock_peer_gone says it went, and resuming lets MHD close it and
 * free the slot at once rather than at the next heartbeat.  The fd stays
 * open while suspended. */
static void *notifier_main(void *arg) {
    watch_hub *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)WATCH_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        if (h->stopping || h->list == NULL) continue;
        pthread_mutex_unlock(&h->mu);
        int64_t last = 0;
        int rc = store_events_last_id(h->st, &last, NULL);
        int64_t now = mono_ms();
        pthread_mutex_lock(&h->mu);
        for (api_watch *w = h->list; w; w = w->next) {
            if (!w->suspended) continue;
            if (sock_peer_gone(w->fd)) w->gone = true;
            if ((rc == 0 && last > w->last_id) || now - w->last_sent_ms >= WATCH_HEARTBEAT_MS ||
                w->gone) {
                w->suspended = false;
                MHD_resume_connection(w->conn);
            }
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int watch_hub_new(store *st, int max, watch_hub **out, serr *e) {
    watch_hub *h = calloc(1, sizeof(*h));
    if (h == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    h->st = st;
    h->max = max;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&h->notifier, NULL, notifier_main, h) != 0) {
        watch_hub_free(h);
        return serr_set(e, SE_INTERNAL, "cannot start the watch notifier thread");
    }
    h->thread_on = true;
    *out = h;
    return 0;
}

void watch_hub_stop(watch_hub *h) {
    if (h == NULL) return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    for (api_watch *w = h->list; w; w = w->next) {
        if (!w->suspended) continue;
        w->suspended = false;
        MHD_resume_connection(w->conn);
    }
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->thread_on) pthread_join(h->notifier, NULL);
    h->thread_on = false;
}

void watch_hub_free(watch_hub *h) {
    if (h == NULL) return;
    watch_hub_stop(h);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
