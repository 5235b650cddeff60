/*
 * blob.c - see blob.h.  Each backend is a table of operations (blob_ops:
 * put, get, delete, put a file verified, expire); the public functions
 * check names once and dispatch, so a new backend is one more table.  The
 * directory backend keeps CONTAINER/PATH under its root; the Azure backend
 * signs each request with SharedKey (HMAC-SHA256 over the canonical
 * request, key from the connection string) and sends it through httpc
 * (libcurl).
 */
#include "blob/blob.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/httpc.h"
#include "util/util.h"

#define MAX_CONTAINERS 16
#define AZ_VERSION "2021-12-02"

/* A backend is a table of operations; blob_put/get/delete/put_file/expire
 * check names and dispatch, so a backend never sees an invalid name. */
typedef struct blob_ops {
    const char *name;
    int (*put)(blob_store *b, const char *container, const char *path, const void *data,
               size_t len, serr *e);
    int (*get)(blob_store *b, const char *container, const char *path, size_t max, char **data,
               size_t *len, serr *e);
    int (*del)(blob_store *b, const char *container, const char *path, serr *e);
    /* Store the open upload `in` (file src, size bytes) and verify what
     * landed against sha (may be NULL). */
    int (*put_file_verified)(blob_store *b, const char *container, const char *path,
                             const char *src, int in, int64_t size, const char *sha, serr *e);
    /* Delete what is past its retention; backends with their own lifecycle
     * policy (Azure) have none. */
    int (*expire)(blob_store *b, const char *container, int64_t now, blob_retention_fn fn,
                  void *arg, serr *e);
} blob_ops;

static const blob_ops dir_ops, azure_ops;

struct blob_store {
    const blob_ops *ops;
    bool dir;
    char root[512];
    /* azure */
    char account[128];
    unsigned char key[128];
    int keylen;
    char endpoint[512];  /* no trailing slash */
    char url_path[256];  /* path part of endpoint, "" or "/devstoreaccount1" */
    int64_t timeout_ms;
    char desc[600];
    pthread_mutex_t mu;
    char made[MAX_CONTAINERS][64];
    int nmade;
};

bool blob_container_valid(const char *c) {
    size_t n = strlen(c);
    if (n < 3 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') || c[i] == '-'))
            return false;
    return c[0] != '-' && c[n - 1] != '-';
}

bool blob_path_valid(const char *p) {
    size_t n = strnlen(p, BLOB_PATH_MAX + 1);
    if (n == 0 || n > BLOB_PATH_MAX) return false;
    const char *seg = p;
    for (size_t i = 0; i <= n; i++) {
        char ch = p[i];
        if (ch == '/' || ch == '\0') {
            size_t sl = (size_t)(p + i - seg);
            if (sl == 0) return false;
            if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            seg = p + i + 1;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int check_names(const char *container, const char *path, serr *e) {
    if (!blob_container_valid(container))
        return serr_set(e, SE_INVAL, "blob container \"%s\" is not 3-63 of [a-z0-9-]", container);
    if (!blob_path_valid(path))
        return serr_set(e, SE_INVAL, "blob path \"%.200s\" is not valid", path);
    return 0;
}

/* "k=v;k=v" -> value of key (case-insensitive key), copied into out: 1
 * when found, 0 when absent (out untouched), SE_TOOBIG naming the key when
 * the value does not fit: a cut account, key or endpoint is another one. */
static int conn_get(const char *conn, const char *key, char *out, size_t len, serr *e) {
    size_t kl = strlen(key);
    for (const char *p = conn; p && *p;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > kl && p[kl] == '=' && strncasecmp(p, key, kl) == 0) {
            size_t vl = n - kl - 1;
            if (vl + 1 > len)
                return serr_set(e, SE_TOOBIG,
                                "azure connection string: %s too long (at most %zu bytes)", key,
                                len - 1);
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static const char devstore_key[] =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

static int azure_parse(blob_store *b, const char *conn, serr *e) {
    char key64[256] = "", v[16];
    int rc, found;
    if ((found = conn_get(conn, "UseDevelopmentStorage", v, sizeof(v), e)) < 0) return found;
    if (found && strcasecmp(v, "true") == 0) {
        str_copy(b->account, sizeof(b->account), "devstoreaccount1");
        str_copy(key64, sizeof(key64), devstore_key);
        str_copy(b->endpoint, sizeof(b->endpoint), "http://127.0.0.1:10000/devstoreaccount1");
    }
    if ((rc = conn_get(conn, "AccountName", b->account, sizeof(b->account), e)) < 0 ||
        (rc = conn_get(conn, "AccountKey", key64, sizeof(key64), e)) < 0 ||
        (found = rc = conn_get(conn, "BlobEndpoint", b->endpoint, sizeof(b->endpoint), e)) < 0)
        return rc;
    if (!found && !b->endpoint[0] && b->account[0]) {
        char proto[16] = "https", suffix[128] = "core.windows.net";
        if ((rc = conn_get(conn, "DefaultEndpointsProtocol", proto, sizeof(proto), e)) < 0 ||
            (rc = conn_get(conn, "EndpointSuffix", suffix, sizeof(suffix), e)) < 0 ||
            (rc = str_fmt(b->endpoint, sizeof(b->endpoint), e, "azure blob endpoint",
                          "%s://%s.blob.%s", proto, b->account, suffix)) != 0)
            return rc;
    }
    if (!b->account[0] || !key64[0] || !b->endpoint[0])
        return serr_set(e, SE_INVAL,
                        "azure connection string needs AccountName, AccountKey and an endpoint");
    size_t el = strlen(b->endpoint);
    while (el > 0 && b->endpoint[el - 1] == '/') b->endpoint[--el] = '\0';
    const char *scheme = strstr(b->endpoint, "://");
    if (scheme == NULL || (strncmp(b->endpoint, "http://", 7) && strncmp(b->endpoint, "https://", 8)))
        return serr_set(e, SE_INVAL, "azure BlobEndpoint \"%s\" is not an http(s) URL", b->endpoint);
    const char *slash = strchr(scheme + 3, '/');
    str_copy(b->url_path, sizeof(b->url_path), slash ? slash : "");
    size_t kl = strlen(key64);
    unsigned char raw[256];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)key64, (int)kl);
    if (n <= 0 || kl % 4 != 0) return serr_set(e, SE_INVAL, "azure AccountKey is not base64");
    if (kl >= 2 && key64[kl - 1] == '=') n--;
    if (kl >= 2 && key64[kl - 2] == '=') n--;
    if (n > (int)sizeof(b->key)) return serr_set(e, SE_INVAL, "azure AccountKey too long");
    memcpy(b->key, raw, (size_t)n);
    b->keylen = n;
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

int blob_open(const char *backend, const char *root, const char *conn, int64_t timeout_ms,
              blob_store **out, serr *e) {
    blob_store *b = calloc(1, sizeof(*b));
    if (b == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    pthread_mutex_init(&b->mu, NULL);
    b->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    int rc = 0;
    if (strcmp(backend, "dir") == 0) {
        b->dir = true;
        b->ops = &dir_ops;
        if (!str_copy(b->root, sizeof(b->root), root))
            rc = serr_set(e, SE_INVAL, "blob directory path too long");
        else
            rc = mkdir_p(root, 0700, e);
        /* For logs; fits whole (root is under 512 bytes). */
        str_fmt_cut(b->desc, sizeof(b->desc), "dir %s", root);
    } else if (strcmp(backend, "azure") == 0) {
        b->ops = &azure_ops;
        if (conn == NULL || !*conn)
            rc = serr_set(e, SE_INVAL, "blob-backend azure needs AZURE_BLOB_CONNECTION_STRING");
        else
            rc = azure_parse(b, conn, e);
        str_fmt_cut(b->desc, sizeof(b->desc), "azure %s", b->endpoint);
    } else {
        rc = serr_set(e, SE_INVAL, "blob-backend \"%s\": expected dir or azure", backend);
    }
    if (rc) {
        blob_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

void blob_close(blob_store *b) {
    if (b == NULL) return;
    OPENSSL_cleanse(b->key, sizeof(b->key));
    pthread_mutex_destroy(&b->mu);
    free(b);
}

const char *blob_describe(const blob_store *b) { return b->desc; }
bool blob_is_dir(const blob_store *b) { return b->dir; }

/* ---- directory backend ---- */

static int dir_path(blob_store *b, const char *container, const char *path, char *out,
                    size_t len, serr *e) {
    return str_fmt(out, len, e, "blob file path", "%s/%s/%s", b->root, container, path);
}

static int dir_put(blob_store *b, const char *container, const char *path, const void *data,
                   size_t len, serr *e) {
    char full[2048], parent[2048];
    int rc = dir_path(b, container, path, full, sizeof(full), e);
    if (rc) return rc;
    str_copy(parent, sizeof(parent), full);
    char *slash = strrchr(parent, '/');
    *slash = '\0';
    if ((rc = mkdir_p(parent, 0700, e))) return rc;
    return write_file_atomic(full, data, len, 0600, e);
}

/* ---- Azure backend ---- */

static void rfc1123(char *buf, size_t len) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* How long a request may take in all: twice the blob timeout, plus the
 * time its bytes take at AZ_MIN_RATE bytes per second.  What stops a
 * request that hangs is the stall limit (nothing moving for the blob
 * timeout; libcurl sees it a second or so late, hence twice); this bound
 * only ends one that trickles, so a large blob on a slow link is not cut
 * off while it still moves. */
#define AZ_MIN_RATE (64 * 1024)
static int64_t az_total_ms(int64_t timeout_ms, size_t bytes) {
    return 2 * timeout_ms + (int64_t)(bytes / AZ_MIN_RATE) * 1000 + (int64_t)(bytes % AZ_MIN_RATE) * 1000 / AZ_MIN_RATE;
}

/* A request that got no answer (refused, cut, timed out): what it was
 * for (the operation, the blob: not a URL) and what went wrong.  httpc's
 * message is "URL: libcurl's reason". */
static int az_failed(int rc, const char *what, const char *path, const char *url, const serr *he,
                     int64_t took_ms, int64_t stall_ms, int64_t total_ms, serr *e) {
    size_t ul = strlen(url);
    const char *why = strncmp(he->msg, url, ul) == 0 && he->msg[ul] == ':' ? he->msg + ul + 2 : he->msg;
    if (rc == SE_TIMEOUT && took_ms + 250 < total_ms)
        return serr_set(e, rc, "azure %s %s: timed out: stalled (under 1 KiB/s for %llds, the blob timeout)",
                        what, path + 1, (long long)((stall_ms + 999) / 1000));
    if (rc == SE_TIMEOUT)
        return serr_set(e, rc, "azure %s %s: timed out: not done after %lld.%llds (the limit for its size)",
                        what, path + 1, (long long)(took_ms / 1000), (long long)(took_ms % 1000 / 100));
    if (rc == SE_TOOBIG) return serr_set(e, rc, "azure %s %s: answer too large", what, path + 1);
    return serr_set(e, rc, "azure %s %s: connection failed or cut: %s", what, path + 1, why);
}

/* One signed request for what ("put blob": for messages).  path is
 * "/container[/blob]"; query is "" or "restype=container"; body NULL for
 * none.  meta may hold extra x-ms-meta-* and x-ms-blob-type headers
 * (already "name:value", lowercase names, sorted together with the date
 * and version below).  A request without an answer is an error naming
 * what and the blob; an answer of any status is 0. */
static int az_request(blob_store *b, const char *what, const char *verb, const char *path,
                      const char *query, const void *body, size_t body_len,
                      const char *const *xms, long *status, sbuf *resp, size_t max_resp, serr *e) {
    char date[64];
    rfc1123(date, sizeof(date));
    /* x-ms-* headers sorted by name: callers pass them sorted and all sort
     * before x-ms-date except x-ms-meta-* and x-ms-version, so build the
     * list in order here. */
    const char *hdrs[8];
    int nh = 0, rc;
    char hdate[96], hver[64];
    if ((rc = str_fmt(hdate, sizeof(hdate), e, "azure date header", "x-ms-date:%s", date)) ||
        (rc = str_fmt(hver, sizeof(hver), e, "azure version header", "x-ms-version:%s", AZ_VERSION)))
        return rc;
    for (int i = 0; xms && xms[i]; i++)
        if (strcmp(xms[i], "x-ms-date") < 0 && nh < 6) hdrs[nh++] = xms[i];
    hdrs[nh++] = hdate;
    for (int i = 0; xms && xms[i]; i++)
        if (strcmp(xms[i], "x-ms-date") > 0 && nh < 7) hdrs[nh++] = xms[i];
    hdrs[nh++] = hver;

    const char *ctype = body ? "application/octet-stream" : "";
    char clen[32] = ""; /* any %zu fits */
    if (body && body_len > 0) snprintf(clen, sizeof(clen), "%zu", body_len);
    sbuf sts;
    sbuf_init(&sts, 8192);
    sbuf_addf(&sts, "%s\n\n\n%s\n\n%s\n\n\n\n\n\n\n", verb, clen, ctype);
    for (int i = 0; i < nh; i++) sbuf_addf(&sts, "%s\n", hdrs[i]);
    sbuf_addf(&sts, "/%s%s%s", b->account, b->url_path, path);
    if (query[0]) {
        const char *eq = strchr(query, '=');
        sbuf_addf(&sts, "\n%.*s:%s", (int)(eq - query), query, eq + 1);
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), b->key, b->keylen, (const unsigned char *)sts.data, sts.len, mac, &maclen);
    sbuf_free(&sts);
    char sig[128];
    EVP_EncodeBlock((unsigned char *)sig, mac, (int)maclen);

    /* A cut signature, URL or header would be a request for something else. */
    char auth[300], url[2048];
    if ((rc = str_fmt(auth, sizeof(auth), e, "azure authorization header",
                      "Authorization: SharedKey %s:%s", b->account, sig)) ||
        (rc = str_fmt(url, sizeof(url), e, "azure blob URL", "%s%s%s%s", b->endpoint, path,
                      query[0] ? "?" : "", query)))
        return rc;
    /* The same headers as sent: "name: value". */
    char sent[8][600];
    const char *hv[10];
    int k = 0;
    assert(nh <= 8);
    for (int i = 0; i < nh; i++) {
        const char *colon = strchr(hdrs[i], ':');
        if ((rc = str_fmt(sent[i], sizeof(sent[i]), e, "azure request header", "%.*s: %s",
                          (int)(colon - hdrs[i]), hdrs[i], colon + 1)))
            return rc;
        hv[k++] = sent[i];
    }
    hv[k++] = auth;
    hv[k] = NULL;
    httpc_req rq = {.method = verb,
                    .url = url,
                    .body = body,
                    .body_len = body_len,
                    .headers = hv,
                    .timeout_ms = az_total_ms(b->timeout_ms, body_len + max_resp),
                    .stall_ms = b->timeout_ms,
                    .max_response = max_resp,
                    .content_type = body ? "application/octet-stream" : NULL};
    serr he = {0};
    int64_t t0 = mono_ms();
    rc = httpc_do(&rq, status, resp, &he);
    if (rc) return az_failed(rc, what, path, url, &he, mono_ms() - t0, rq.stall_ms, rq.timeout_ms, e);
    return 0;
}

int blob_az_error(long status, const char *body, const char *what, serr *e) {
    const char *code = NULL;
    char text[160] = "";
    if (body) {
        code = strstr(body, "<Code>");
        if (code) {
            code += 6;
            const char *end = strstr(code, "</Code>");
            if (end && end - code < (long)sizeof(text)) {
                memcpy(text, code, (size_t)(end - code));
                text[end - code] = '\0';
            }
        }
    }
    int c = status == 404 ? SE_NOTFOUND : status >= 500 ? SE_UNAVAIL : SE_IO;
    return serr_set(e, c, "azure %s: HTTP %ld %s", what, status, text);
}

/* An answer that is an error: the operation, the blob, the status and
 * Azure's code. */
static int az_error(long status, sbuf *resp, const char *what, const char *path, serr *e) {
    char w[SERR_MSG_MAX];
    str_fmt_cut(w, sizeof(w), "%s %s", what, path + 1);
    return blob_az_error(status, resp->data, w, e);
}

static int az_container(blob_store *b, const char *container, serr *e) {
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->nmade; i++) {
        if (strcmp(b->made[i], container) == 0) {
            pthread_mutex_unlock(&b->mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&b->mu);
    char path[80];
    int rc = str_fmt(path, sizeof(path), e, "azure container path", "/%s", container);
    if (rc) return rc;
    long status = 0;
    sbuf resp;
    rc = az_request(b, "create container", "PUT", path, "restype=container", "", 0, NULL, &status,
                    &resp, 65536, e);
    if (rc) return rc;
    if (status != 201 && status != 409) rc = az_error(status, &resp, "create container", path, e);
    sbuf_free(&resp);
    if (rc == 0) {
        pthread_mutex_lock(&b->mu);
        assert(b->nmade >= 0 && b->nmade <= MAX_CONTAINERS);
        if (b->nmade < MAX_CONTAINERS) str_copy(b->made[b->nmade++], sizeof(b->made[0]), container);
        pthread_mutex_unlock(&b->mu);
    }
    return rc;
}

static void az_forget_container(blob_store *b, const char *container) {
    pthread_mutex_lock(&b->mu);
    assert(b->nmade >= 0 && b->nmade <= MAX_CONTAINERS);
    for (int i = 0; i < b->nmade; i++) {
        if (strcmp(b->made[i], container) == 0) {
            memmove(b->made[i], b->made[b->nmade - 1], sizeof(b->made[0]));
            b->nmade--;
            break;
        }
    }
    pthread_mutex_unlock(&b->mu);
}

static int az_put(blob_store *b, const char *container, const char *path, const void *data,
                  size_t len, serr *e) {
    char p[BLOB_PATH_MAX + 80];
    int prc = str_fmt(p, sizeof(p), e, "azure blob path", "/%s/%s", container, path);
    if (prc) return prc;
    static const char *const xms[] = {"x-ms-blob-type:BlockBlob", NULL};
    /* The container we made may be gone since (deleted by someone, or a
     * service that lost its state): make it again, once. */
    for (int attempt = 0;; attempt++) {
        int rc = az_container(b, container, e);
        if (rc) return rc;
        long status = 0;
        sbuf resp;
        rc = az_request(b, "put blob", "PUT", p, "", data ? data : "", len, xms, &status, &resp,
                        65536, e);
        if (rc) return rc;
        bool gone = status == 404 && resp.data && strstr(resp.data, "ContainerNotFound");
        if (status != 201) rc = az_error(status, &resp, "put blob", p, e);
        sbuf_free(&resp);
        if (!gone || attempt > 0) return rc;
        az_forget_container(b, container);
    }
}

/* ---- the interface ---- */

int blob_put(blob_store *b, const char *container, const char *path, const void *data,
             size_t len, serr *e) {
    int rc = check_names(container, path, e);
    if (rc) return rc;
    return b->ops->put(b, container, path, data, len, e);
}

static int dir_get(blob_store *b, const char *container, const char *path, size_t max,
                   char **data, size_t *len, serr *e) {
    char full[2048];
    int rc = dir_path(b, container, path, full, sizeof(full), e);
    if (rc) return rc;
    rc = read_file(full, max, data, len, e);
    if (rc == SE_NOTFOUND || (rc == SE_IO && !path_exists(full)))
        return serr_set(e, SE_NOTFOUND, "blob %s/%s not found", container, path);
    return rc;
}

static int az_get(blob_store *b, const char *container, const char *path, size_t max,
                  char **data, size_t *len, serr *e) {
    char p[BLOB_PATH_MAX + 80];
    int rc = str_fmt(p, sizeof(p), e, "azure blob path", "/%s/%s", container, path);
    if (rc) return rc;
    long status = 0;
    sbuf resp;
    /* Room for an error document even when the caller wants a few bytes:
     * a 404's XML must not read as "too large". */
    size_t room = max + 1 > 65536 ? max + 1 : 65536;
    rc = az_request(b, "get blob", "GET", p, "", NULL, 0, NULL, &status, &resp, room, e);
    if (rc == SE_TOOBIG) return serr_set(e, SE_TOOBIG, "blob %s/%s is larger than %zu bytes", container, path, max);
    if (rc) return rc;
    if (status != 200) { /* 404 is SE_NOTFOUND */
        rc = az_error(status, &resp, "get blob", p, e);
        sbuf_free(&resp);
        return rc;
    }
    if (resp.len > max) {
        sbuf_free(&resp);
        return serr_set(e, SE_TOOBIG, "blob %s/%s is larger than %zu bytes", container, path, max);
    }
    if (sbuf_add(&resp, "", 1) != 0) { /* NUL terminate */
        sbuf_free(&resp);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    *len = resp.len - 1;
    *data = resp.data;
    if (*data == NULL) *data = calloc(1, 1);
    return 0;
}

int blob_get(blob_store *b, const char *container, const char *path, size_t max, char **data,
             size_t *len, serr *e) {
    *data = NULL;
    *len = 0;
    int rc = check_names(container, path, e);
    if (rc) return rc;
    return b->ops->get(b, container, path, max, data, len, e);
}

static int dir_delete(blob_store *b, const char *container, const char *path, serr *e) {
    char full[2048];
    int rc = dir_path(b, container, path, full, sizeof(full), e);
    if (rc) return rc;
    if (unlink(full) != 0 && errno != ENOENT)
        return serr_set(e, SE_IO, "deleting %s/%s: %s", container, path, strerror(errno));
    return 0;
}

static int az_delete(blob_store *b, const char *container, const char *path, serr *e) {
    char p[BLOB_PATH_MAX + 80];
    int rc = str_fmt(p, sizeof(p), e, "azure blob path", "/%s/%s", container, path);
    if (rc) return rc;
    long status = 0;
    sbuf resp;
    rc = az_request(b, "delete blob", "DELETE", p, "", NULL, 0, NULL, &status, &resp, 65536, e);
    if (rc) return rc;
    if (status != 202 && status != 404) rc = az_error(status, &resp, "delete blob", p, e);
    sbuf_free(&resp);
    return rc;
}

int blob_delete(blob_store *b, const char *container, const char *path, serr *e) {
    int rc = check_names(container, path, e);
    if (rc) return rc;
    return b->ops->del(b, container, path, e);
}

int blob_put_verified(blob_store *b, const char *container, const char *path, const void *data,
                      size_t len, char *sha_out, serr *e) {
    char want[65], got[65];
    sha256_hex(data, len, want);
    int rc = blob_put(b, container, path, data, len, e);
    if (rc) return rc;
    char *back = NULL;
    size_t blen = 0;
    rc = blob_get(b, container, path, len + 1, &back, &blen, e);
    if (rc) return serr_wrap(e, "stored, but reading it back to verify failed");
    sha256_hex(back, blen, got);
    free(back);
    if (blen != len || strcmp(want, got) != 0)
        return serr_set(e, SE_IO, "verifying %s/%s: stored %zu bytes sha256 %.12s, sent %zu bytes sha256 %.12s",
                        container, path, blen, got, len, want);
    if (sha_out) memcpy(sha_out, want, 65);
    return 0;
}

/* ---- retention on the directory backend ---- */

static int expire_walk(const char *dir, int64_t cutoff_ms, int *count, int depth) {
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    struct dirent *de;
    int left = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char p[4096];
        /* A name too long to reach is left alone (and keeps its directory). */
        if (str_fmt(p, sizeof(p), NULL, "path", "%s/%s", dir, de->d_name) != 0) {
            left++;
            continue;
        }
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth < 64) {
            if (expire_walk(p, cutoff_ms, count, depth + 1) == 0 && rmdir(p) == 0) continue;
            left++;
        } else if (S_ISREG(st.st_mode) && (int64_t)st.st_mtime * 1000 < cutoff_ms &&
                   unlink(p) == 0) {
            (*count)++;
        } else {
            left++;
        }
    }
    closedir(d);
    return left;
}

int blob_expire(blob_store *b, const char *container, int64_t now, blob_retention_fn fn,
                void *arg, serr *e) {
    if (!blob_container_valid(container))
        return serr_set(e, SE_INVAL, "blob container \"%s\" is not valid", container);
    return b->ops->expire ? b->ops->expire(b, container, now, fn, arg, e) : 0;
}

static int dir_expire(blob_store *b, const char *container, int64_t now, blob_retention_fn fn,
                      void *arg, serr *e) {
    char top[1024];
    int rc = str_fmt(top, sizeof(top), e, "blob container directory", "%s/%s", b->root, container);
    if (rc) return rc;
    DIR *d = opendir(top);
    if (d == NULL) return 0;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char p[2048];
        if (str_fmt(p, sizeof(p), NULL, "path", "%s/%s", top, de->d_name) != 0) continue;
        int64_t keep = fn(de->d_name, arg);
        if (expire_walk(p, now - keep, &count, 0) == 0) rmdir(p);
    }
    closedir(d);
    return count;
}

/* ---- a blob from a file (model bundle uploads) ---- */

/* The upload and the blob on one file system (DATA_DIR/uploads and
 * DATA_DIR/blobs, the usual case): a hard link to a unique name, then a
 * rename into place.  1 when done, 0 to copy instead, <0 on error. */
static int dir_link_file(const char *container, const char *path, const char *src, int in,
                         const char *full, serr *e) {
    static atomic_uint seq;
    char tmp[2100];
    for (int attempt = 0; attempt < 4; attempt++) {
        int rc = str_fmt(tmp, sizeof(tmp), e, "blob temporary file path", "%s.ln.%d.%u", full,
                         (int)getpid(), atomic_fetch_add(&seq, 1));
        if (rc) return rc;
        if (link(src, tmp) == 0) break;
        if (errno != EEXIST) return 0; /* EXDEV, EPERM, ...: copy */
        if (attempt == 3) return 0;
    }
    if (fsync(in) != 0 || rename(tmp, full) != 0) {
        int err = errno;
        unlink(tmp);
        return serr_set(e, SE_IO, "storing %s/%s: %s", container, path, strerror(err));
    }
    return 1;
}

/* Otherwise a copy in chunks to a unique name, then a rename into place. */
static int dir_copy_file(const char *container, const char *path, int in, const char *full,
                         serr *e) {
    char tmp[2100];
    int rc = str_fmt(tmp, sizeof(tmp), e, "blob temporary file path", "%s.up.XXXXXX", full);
    if (rc) return rc;
    int out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0) return serr_set(e, SE_IO, "storing %s/%s: %s", container, path, strerror(errno));
    enum { CHUNK = 1 << 16 };
    char *buf = malloc(CHUNK);
    rc = buf ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    while (rc == 0) {
        ssize_t n = read(in, buf, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = serr_set(e, SE_IO, "storing %s/%s: read: %s", container, path, strerror(errno));
        if (n <= 0) break;
        for (ssize_t off = 0; rc == 0 && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) rc = serr_set(e, SE_IO, "storing %s/%s: %s", container, path, strerror(errno));
            else off += w;
        }
    }
    free(buf);
    if (rc == 0 && (fchmod(out, 0600) != 0 || fsync(out) != 0))
        rc = serr_set(e, SE_IO, "storing %s/%s: %s", container, path, strerror(errno));
    close(out);
    if (rc == 0 && rename(tmp, full) != 0)
        rc = serr_set(e, SE_IO, "storing %s/%s: %s", container, path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

static int dir_put_file(blob_store *b, const char *container, const char *path, const char *src,
                        int in, serr *e) {
    char full[2048], parent[2048];
    int rc = dir_path(b, container, path, full, sizeof(full), e);
    if (rc) return rc;
    str_copy(parent, sizeof(parent), full);
    *strrchr(parent, '/') = '\0';
    serr me = {0};
    if ((rc = mkdir_p(parent, 0700, &me))) { /* its message names the server path */
        const char *why = strrchr(me.msg, ':');
        return serr_set(e, rc, "storing %s/%s: cannot make its directory%s", container, path,
                        why ? why : "");
    }
    rc = dir_link_file(container, path, src, in, full, e);
    if (rc == 0) rc = dir_copy_file(container, path, in, full, e);
    if (rc < 0) return rc;
    int dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Azure takes one PUT of the whole blob: the file is mapped, not copied,
 * and blob_put_verified reads it back whole. */
static int az_put_file_verified(blob_store *b, const char *container, const char *path,
                                const char *src, int in, int64_t size, const char *sha, serr *e) {
    (void)src;
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, in, 0);
    if (map == MAP_FAILED) return serr_set(e, SE_NOMEM, "storing %s/%s: %s", container, path, strerror(errno));
    char got[65];
    int rc = blob_put_verified(b, container, path, map, (size_t)size, got, e);
    munmap(map, (size_t)size);
    if (rc == 0 && sha && strcmp(got, sha) != 0) {
        blob_delete(b, container, path, NULL);
        rc = serr_set(e, SE_IO, "storing %s/%s: the upload changed while it was stored", container, path);
    }
    return rc;
}

static int dir_put_file_verified(blob_store *b, const char *container, const char *path,
                                 const char *src, int in, int64_t size, const char *sha, serr *e) {
    int rc = dir_put_file(b, container, path, src, in, e);
    if (rc) return rc;
    /* Read back, as blob_put_verified does: size and SHA-256 of what landed. */
    char full[2048], got[65];
    int64_t stored = 0;
    serr ve = {0};
    if ((rc = dir_path(b, container, path, full, sizeof(full), e))) return rc;
    if (sha256_file_hex(full, got, &stored, &ve) != 0)
        return serr_set(e, ve.code, "verifying %s/%s: cannot read it back", container, path);
    if (stored != size || (sha && strcmp(got, sha) != 0)) {
        blob_delete(b, container, path, NULL); /* not left to pass for the real thing */
        return serr_set(e, SE_IO, "verifying %s/%s: stored %lld bytes sha256 %.12s, sent %lld bytes sha256 %.12s",
                        container, path, (long long)stored, got, (long long)size, sha ? sha : "?");
    }
    return 0;
}

int blob_put_file_verified(blob_store *b, const char *container, const char *path, const char *src,
                           const char *sha, serr *e) {
    int rc = check_names(container, path, e);
    if (rc) return rc;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return serr_set(e, SE_IO, "storing %s/%s: the upload is gone: %s", container, path, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || st.st_size <= 0) {
        close(in);
        return serr_set(e, SE_IO, "storing %s/%s: the upload is empty or unreadable", container, path);
    }
    rc = b->ops->put_file_verified(b, container, path, src, in, (int64_t)st.st_size, sha, e);
    close(in);
    return rc;
}

/* ---- the backends ---- */

static const blob_ops dir_ops = {
    .name = "dir",
    .put = dir_put,
    .get = dir_get,
    .del = dir_delete,
    .put_file_verified = dir_put_file_verified,
    .expire = dir_expire,
};

static const blob_ops azure_ops = {
    .name = "azure",
    .put = az_put,
    .get = az_get,
    .del = az_delete,
    .put_file_verified = az_put_file_verified,
    .expire = NULL,
};
