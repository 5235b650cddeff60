/*
 * faultproxy - an HTTP/1.1-aware TCP proxy in front of a real server (the
 * blob fault tests put it before Azurite), which answers chosen requests
 * itself with a fault and passes every other one through untouched.  Tests
 * only, never installed.
 *
 *   stamp-faultproxy --upstream HOST:PORT --plan FILE --log FILE
 *                    [--listen PORT] [--port-file FILE]
 *
 * It listens on 127.0.0.1 (PORT, or one the kernel picks; written to the
 * port file once it listens).  Requests are numbered from 1 in the order
 * their heads arrive, over all connections; each is logged with its method
 * and target, and how it ended:
 *
 *   T+1.234 req 3 c2 PUT /devstoreaccount1/diag/a/b.log -> pass
 *   T+1.240 end 3 201
 *
 * The plan is re-read at every request: one rule a line, '#' comments,
 * tokens separated by blanks:
 *
 *   [req=N] [method=M] [path=SUBSTRING] [nth=N] [count=K] ACTION
 *
 * A rule's filter is req (the global request number), method (exact) and
 * path (a substring of the target; up to 4, all required); each rule counts the requests its
 * filter matches (counts survive re-reads: they belong to the rule's text),
 * and applies to the nth .. nth+count-1 of them (nth absent: all of them;
 * count absent: 1 when nth is given).  The first rule in the file whose
 * filter matches inside its window decides; otherwise "pass".  Actions:
 *
 *   pass                      to the upstream and back, byte for byte
 *   status=CODE [code=NAME] [retry-after=S]
 *                             the proxy answers CODE with an Azure-style
 *                             XML error (code: its <Code>, a default per
 *                             status) and x-ms-error-code; the request
 *                             never reaches the upstream
 *   hang=S                    read the request, never answer; the
 *                             connection is closed after S seconds
 *   cut[=N]                   pass it, then close both connections in the
 *                             middle of the upstream's response: after N
 *                             bytes, or half its body, or (no body) inside
 *                             the status line, before the status code
 *   drop                      read the request, close without an answer
 *   slow=BYTES                pass it, the response sent at BYTES per second
 *
 * One thread, poll(); every buffer bounded (a head over HEAD_MAX is
 * refused with 431; data waits while a buffer is full).  Every passed
 * request gets a connection of its own to the upstream, so an idle
 * keep-alive connection the upstream closes is never mistaken for a fault.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define BUF_SZ 65536
#define HEAD_MAX 16384
#define MAX_RULES 64
#define MAX_COUNTERS 256
#define RULE_TEXT_MAX 512
#define TICK_MS 50

enum act { A_PASS, A_STATUS, A_HANG, A_CUT, A_DROP, A_SLOW };
static const char *const act_names[] = {"pass", "status", "hang", "cut", "drop", "slow"};

typedef struct rule {
    char text[RULE_TEXT_MAX];
    long req, nth, count;
    char method[16], path[4][256]; /* every path= must be in the target */
    int npath;
    enum act act;
    int status, retry_after;
    char code[64];
    double hang_s;
    long slow_bps, cut_at;
} rule;

/* A message body's extent, from the bytes as they pass. */
enum { F_NONE, F_LEN, F_CHUNKED, F_CLOSE };
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LINE, CH_END_LF };
typedef struct framer {
    int mode;
    uint64_t left; /* F_LEN: body left; chunked: left of this chunk */
    int cst;
} framer;

enum { S_HEAD, S_REQBODY, S_RESPHEAD, S_RESPBODY, S_CANNED, S_HANG, S_DEAD };

typedef struct conn {
    int cfd, ufd, id;
    int st;
    long seq;
    rule r; /* the action taken for the current request */
    char *in;   /* from the client; the first in_fwd bytes are cleared to go on */
    size_t inlen, in_fwd;
    bool req_done, req_close, req_head_method;
    char *up;   /* from the upstream; the first up_fwd bytes are cleared to go on */
    size_t uplen, up_fwd;
    bool resp_done, resp_close, up_eof;
    int resp_status;
    framer reqf, respf;
    char canned[1024];
    size_t canned_len, canned_off;
    int64_t t0, hang_until;
    bool cutting;
    size_t cut_left, sent;
    double credit;
    int64_t credit_ms;
} conn;

static conn *conns[MAX_CONNS];
static FILE *log_out;
static int64_t start_ms;
static long seq_no;
static const char *plan_path;
static struct {
    char text[RULE_TEXT_MAX];
    long n;
} counters[MAX_COUNTERS];
static int ncounters;
static volatile sig_atomic_t stop;

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logline(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logline(const char *fmt, ...) {
    int64_t t = mono_ms() - start_ms;
    fprintf(log_out, "T+%lld.%03lld ", (long long)(t / 1000), (long long)(t % 1000));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log_out, fmt, ap);
    va_end(ap);
    fputc('\n', log_out);
    fflush(log_out);
}

/* ---- the plan ---- */

static long *counter_of(const char *text) {
    for (int i = 0; i < ncounters; i++)
        if (strcmp(counters[i].text, text) == 0) return &counters[i].n;
    if (ncounters == MAX_COUNTERS) return NULL;
    snprintf(counters[ncounters].text, RULE_TEXT_MAX, "%s", text);
    counters[ncounters].n = 0;
    return &counters[ncounters++].n;
}

static bool parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

/* One line of the plan; false (and a log line) when it is not a rule. */
static bool parse_rule(const char *line, rule *r) {
    memset(r, 0, sizeof(*r));
    snprintf(r->text, sizeof(r->text), "%s", line);
    r->act = A_PASS;
    bool have_act = false, have_count = false;
    char tok[300];
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, " \t");
        if (n == 0) break;
        if (n >= sizeof(tok)) goto bad;
        memcpy(tok, p, n);
        tok[n] = '\0';
        p += n;
        char *eq = strchr(tok, '=');
        const char *v = eq ? eq + 1 : "";
        if (eq) *eq = '\0';
        long x = 0;
        if (strcmp(tok, "req") == 0 && parse_long(v, &x) && x > 0) r->req = x;
        else if (strcmp(tok, "nth") == 0 && parse_long(v, &x) && x > 0) r->nth = x;
        else if (strcmp(tok, "count") == 0 && parse_long(v, &x) && x > 0) r->count = x, have_count = true;
        else if (strcmp(tok, "method") == 0 && strlen(v) < sizeof(r->method)) snprintf(r->method, sizeof(r->method), "%s", v);
        else if (strcmp(tok, "path") == 0 && r->npath < 4 && strlen(v) < sizeof(r->path[0]))
            snprintf(r->path[r->npath++], sizeof(r->path[0]), "%s", v);
        else if (strcmp(tok, "pass") == 0 && !eq) r->act = A_PASS, have_act = true;
        else if (strcmp(tok, "cut") == 0 && !eq) r->act = A_CUT, have_act = true;
        else if (strcmp(tok, "cut") == 0 && parse_long(v, &x) && x > 0) r->act = A_CUT, r->cut_at = x, have_act = true;
        else if (strcmp(tok, "drop") == 0 && !eq) r->act = A_DROP, have_act = true;
        else if (strcmp(tok, "status") == 0 && parse_long(v, &x) && x >= 100 && x <= 599)
            r->act = A_STATUS, r->status = (int)x, have_act = true;
        else if (strcmp(tok, "code") == 0 && strlen(v) < sizeof(r->code)) snprintf(r->code, sizeof(r->code), "%s", v);
        else if (strcmp(tok, "retry-after") == 0 && parse_long(v, &x) && x >= 0 && x < 86400) r->retry_after = (int)x + 1;
        else if (strcmp(tok, "slow") == 0 && parse_long(v, &x) && x > 0) r->act = A_SLOW, r->slow_bps = x, have_act = true;
        else if (strcmp(tok, "hang") == 0) {
            char *end;
            double s = strtod(v, &end);
            if (end == v || *end || !(s > 0 && s < 86400)) goto bad;
            r->act = A_HANG, r->hang_s = s, have_act = true;
        } else
            goto bad;
    }
    if (!have_act) goto bad;
    if (r->nth > 0 && !have_count) r->count = 1;
    if (r->nth == 0 && have_count) r->nth = 1;
    return true;
bad:
    logline("plan: ignored \"%s\"", line);
    return false;
}

/* The plan as it is now; rules with a window count the request. */
static rule decide(long seq, const char *method, const char *target) {
    rule out = {.act = A_PASS};
    snprintf(out.text, sizeof(out.text), "(no rule)");
    FILE *f = fopen(plan_path, "r");
    if (f == NULL) return out;
    char line[RULE_TEXT_MAX];
    bool chosen = false;
    int nrules = 0;
    while (nrules < MAX_RULES && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\0' || *s == '#') continue;
        rule r;
        if (!parse_rule(s, &r)) continue;
        nrules++;
        if (r.req && r.req != seq) continue;
        if (r.method[0] && strcmp(r.method, "*") && strcmp(r.method, method)) continue;
        bool all = true;
        for (int i = 0; i < r.npath; i++) all = all && strstr(target, r.path[i]) != NULL;
        if (!all) continue;
        long *n = counter_of(r.text);
        long k = n ? ++*n : 0;
        bool in_window = r.nth == 0 || (k >= r.nth && k < r.nth + r.count);
        if (in_window && !chosen) {
            out = r;
            chosen = true;
        }
    }
    fclose(f);
    return out;
}

/* ---- HTTP framing ---- */

/* How many of the n bytes at p belong to the current body; *done when it
 * ends inside them. */
static size_t framer_take(framer *f, const char *p, size_t n, bool *done) {
    *done = false;
    if (f->mode == F_NONE) {
        *done = true;
        return 0;
    }
    if (f->mode == F_CLOSE) return n;
    if (f->mode == F_LEN) {
        size_t k = f->left < n ? (size_t)f->left : n;
        f->left -= k;
        *done = f->left == 0;
        return k;
    }
    size_t i = 0;
    while (i < n && !*done) {
        char ch = p[i];
        switch (f->cst) {
        case CH_SIZE:
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
                int d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
                if (f->left > (UINT64_MAX >> 8)) return i; /* absurd: stop (the peer is cut) */
                f->left = f->left * 16 + (uint64_t)d;
            } else if (ch == '\r') {
                f->cst = CH_SIZE_LF;
            } else if (ch == ';') {
                f->cst = CH_EXT;
            } else if (ch == '\n') {
                f->cst = f->left ? CH_DATA : CH_TRAILER;
            }
            i++;
            break;
        case CH_EXT:
            if (ch == '\n') f->cst = f->left ? CH_DATA : CH_TRAILER;
            i++;
            break;
        case CH_SIZE_LF:
            f->cst = f->left ? CH_DATA : CH_TRAILER;
            i++;
            break;
        case CH_DATA: {
            size_t k = f->left < n - i ? (size_t)f->left : n - i;
            f->left -= k;
            i += k;
            if (f->left == 0) f->cst = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            f->cst = ch == '\r' ? CH_DATA_LF : CH_SIZE; /* a bare LF ends it too */
            i++;
            break;
        case CH_DATA_LF:
            f->cst = CH_SIZE;
            i++;
            break;
        case CH_TRAILER:
            f->cst = ch == '\r' ? CH_END_LF : ch == '\n' ? CH_TRAILER : CH_TRAILER_LINE;
            if (ch == '\n') *done = true;
            i++;
            break;
        case CH_TRAILER_LINE:
            if (ch == '\n') f->cst = CH_TRAILER;
            i++;
            break;
        case CH_END_LF:
            *done = true;
            i++;
            break;
        }
    }
    return i;
}

/* The end of a head (just past its blank line) within buf, or 0. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') return i + 1;
    return 0;
}

/* A header's value in head (name case-insensitive), copied into out. */
static bool header(const char *head, size_t hlen, const char *name, char *out, size_t olen) {
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', hlen);
    const char *end = head + hlen;
    while (p && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
            size_t vl = (size_t)(ve - v) < olen - 1 ? (size_t)(ve - v) : olen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        p = eol;
    }
    return false;
}

/* The body framing a head announces (a request: no length means none). */
static void framing(const char *head, size_t hlen, bool response, framer *f) {
    char v[64];
    memset(f, 0, sizeof(*f));
    f->mode = response ? F_CLOSE : F_NONE;
    if (header(head, hlen, "Transfer-Encoding", v, sizeof(v)) && strcasestr(v, "chunked")) {
        f->mode = F_CHUNKED;
        f->cst = CH_SIZE;
    } else if (header(head, hlen, "Content-Length", v, sizeof(v))) {
        long n;
        f->mode = parse_long(v, &n) && n > 0 ? F_LEN : F_NONE;
        f->left = f->mode == F_LEN ? (uint64_t)n : 0;
    }
}

/* ---- connections ---- */

static void conn_close(conn *c, const char *why) {
    if (why) logline("close c%d: %s", c->id, why);
    if (c->cfd >= 0) close(c->cfd);
    if (c->ufd >= 0) close(c->ufd);
    c->cfd = c->ufd = -1;
    c->st = S_DEAD;
}

static int upstream_connect(const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static const char *default_code(int status, const char *target) {
    switch (status) {
    case 403: return "AuthenticationFailed";
    case 404: return strstr(target, "restype=container") ? "ContainerNotFound" : "BlobNotFound";
    case 409: return strstr(target, "restype=container") ? "ContainerAlreadyExists" : "BlobAlreadyExists";
    case 412: return "ConditionNotMet";
    case 500: return "InternalError";
    case 503: return "ServerBusy";
    default: return "InjectedFault";
    }
}

static const char *reason(int status) {
    switch (status) {
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Injected";
    }
}

static void make_canned(conn *c, const char *target) {
    const char *code = c->r.code[0] ? c->r.code : default_code(c->r.status, target);
    char body[512], ra[64] = "";
    int bl = snprintf(body, sizeof(body),
                      "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code>"
                      "<Message>faultproxy: injected %d on request %ld</Message></Error>",
                      code, c->r.status, c->seq);
    if (bl < 0 || (size_t)bl >= sizeof(body)) bl = 0;
    if (c->r.retry_after) snprintf(ra, sizeof(ra), "Retry-After: %d\r\n", c->r.retry_after - 1);
    int n = snprintf(c->canned, sizeof(c->canned),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                     "x-ms-error-code: %s\r\nx-ms-request-id: faultproxy-%ld\r\n%s%s\r\n%.*s",
                     c->r.status, reason(c->r.status), bl, code, c->seq, ra,
                     c->req_close ? "Connection: close\r\n" : "", bl, body);
    c->canned_len = n > 0 && (size_t)n < sizeof(c->canned) ? (size_t)n : 0;
    c->canned_off = 0;
}

/* A whole request head is in c->in: number it, log it, decide. */
static void on_request_head(conn *c, size_t hlen, const struct sockaddr_in *up) {
    char method[16] = "?", target[1024] = "?", v[64];
    const char *sp = memchr(c->in, ' ', hlen);
    if (sp && (size_t)(sp - c->in) < sizeof(method)) {
        memcpy(method, c->in, (size_t)(sp - c->in));
        method[sp - c->in] = '\0';
        const char *sp2 = memchr(sp + 1, ' ', hlen - (size_t)(sp + 1 - c->in));
        if (sp2 && (size_t)(sp2 - sp - 1) < sizeof(target)) {
            memcpy(target, sp + 1, (size_t)(sp2 - sp - 1));
            target[sp2 - sp - 1] = '\0';
        }
    }
    c->seq = ++seq_no;
    c->t0 = mono_ms();
    c->req_close = header(c->in, hlen, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0;
    c->req_head_method = strcmp(method, "HEAD") == 0;
    framing(c->in, hlen, false, &c->reqf);
    c->r = decide(c->seq, method, target);
    char act[96];
    switch (c->r.act) {
    case A_STATUS: snprintf(act, sizeof(act), "status=%d", c->r.status); break;
    case A_HANG: snprintf(act, sizeof(act), "hang=%gs", c->r.hang_s); break;
    case A_SLOW: snprintf(act, sizeof(act), "slow=%ld", c->r.slow_bps); break;
    default: snprintf(act, sizeof(act), "%s", act_names[c->r.act]); break;
    }
    logline("req %ld c%d %s %s -> %s", c->seq, c->id, method, target, act);
    c->in_fwd = hlen;
    c->req_done = c->reqf.mode == F_NONE;
    c->st = S_REQBODY;
    c->uplen = c->up_fwd = 0;
    c->resp_done = c->up_eof = c->cutting = false;
    c->sent = 0;
    c->credit = 0;
    c->credit_ms = mono_ms();
    if (c->r.act == A_PASS || c->r.act == A_CUT || c->r.act == A_SLOW) {
        c->ufd = upstream_connect(up);
        if (c->ufd < 0) {
            logline("end %ld upstream connect: %s", c->seq, strerror(errno));
            conn_close(c, NULL);
        }
    } else if (c->r.act == A_STATUS) {
        make_canned(c, target);
    }
}

/* Clears what of c->in past in_fwd belongs to the request. */
static void take_request_body(conn *c) {
    if (c->req_done || c->in_fwd >= c->inlen) return;
    bool done;
    c->in_fwd += framer_take(&c->reqf, c->in + c->in_fwd, c->inlen - c->in_fwd, &done);
    if (done) c->req_done = true;
}

static void consume_in(conn *c, size_t n) {
    memmove(c->in, c->in + n, c->inlen - n);
    c->inlen -= n;
    c->in_fwd -= n;
}

static void consume_up(conn *c, size_t n) {
    memmove(c->up, c->up + n, c->uplen - n);
    c->uplen -= n;
    c->up_fwd -= n;
}

/* The request is all read (and passed on): what comes next. */
static void request_read(conn *c) {
    switch (c->r.act) {
    case A_PASS:
    case A_CUT:
    case A_SLOW: c->st = S_RESPHEAD; break;
    case A_STATUS: c->st = S_CANNED; break;
    case A_HANG:
        c->st = S_HANG;
        c->hang_until = mono_ms() + (int64_t)(c->r.hang_s * 1000);
        break;
    case A_DROP:
        logline("end %ld dropped: closed without an answer", c->seq);
        conn_close(c, NULL);
        break;
    }
}

/* A response head is in c->up. */
static void on_response_head(conn *c, size_t hlen) {
    int status = 0;
    if (hlen > 12 && strncmp(c->up, "HTTP/1.", 7) == 0) status = (int)strtol(c->up + 9, NULL, 10);
    c->resp_status = status;
    char v[64];
    c->resp_close = header(c->up, hlen, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0;
    framing(c->up, hlen, true, &c->respf);
    if (c->req_head_method || status == 204 || status == 304 || (status >= 100 && status < 200))
        c->respf.mode = F_NONE;
    c->up_fwd = hlen;
    c->resp_done = c->respf.mode == F_NONE;
    if (c->r.act == A_CUT) {
        /* Half the body; a bodiless answer inside its status line, so the
         * client never learns what happened to its request. */
        c->cutting = true;
        c->cut_left = c->r.cut_at > 0 ? (size_t)c->r.cut_at
                      : c->respf.mode == F_LEN && c->respf.left >= 2 ? hlen + (size_t)(c->respf.left / 2)
                                                                      : 9; /* "HTTP/1.1 " */
    }
    c->st = S_RESPBODY;
}

static void take_response_body(conn *c) {
    if (c->resp_done || c->up_fwd >= c->uplen) return;
    bool done;
    c->up_fwd += framer_take(&c->respf, c->up + c->up_fwd, c->uplen - c->up_fwd, &done);
    if (done) c->resp_done = true;
}

/* The response went out whole: the connection waits for the next request. */
static void response_sent(conn *c) {
    if (c->resp_status >= 100 && c->resp_status < 200) { /* an interim answer: the real one follows */
        c->st = S_RESPHEAD;
        c->resp_done = false;
        return;
    }
    logline("end %ld %d%s", c->seq, c->resp_status, c->r.act == A_SLOW ? " (slow)" : "");
    close(c->ufd);
    c->ufd = -1;
    if (c->req_close || c->resp_close || c->respf.mode == F_CLOSE) {
        conn_close(c, NULL);
        return;
    }
    c->st = S_HEAD;
}

/* Moves the connection on as far as its buffers allow. */
static void advance(conn *c, const struct sockaddr_in *up) {
    for (int guard = 0; guard < 8 && c->st != S_DEAD; guard++) {
        int before = c->st;
        if (c->st == S_HEAD) {
            size_t h = head_end(c->in, c->inlen);
            if (h == 0 && c->inlen >= HEAD_MAX) {
                memset(&c->r, 0, sizeof(c->r));
                c->r.act = A_STATUS;
                c->r.status = 431;
                c->seq = ++seq_no;
                logline("req %ld c%d head over %d bytes -> status=431", c->seq, c->id, HEAD_MAX);
                make_canned(c, "");
                c->req_close = true;
                c->inlen = c->in_fwd = 0;
                c->st = S_CANNED;
            } else if (h) {
                on_request_head(c, h, up);
            }
        }
        if (c->st == S_REQBODY) {
            take_request_body(c);
            if (c->r.act != A_PASS && c->r.act != A_CUT && c->r.act != A_SLOW) consume_in(c, c->in_fwd);
            if (c->req_done && c->in_fwd == 0) request_read(c);
        }
        if (c->st == S_RESPHEAD) {
            size_t h = head_end(c->up, c->uplen);
            if (h) on_response_head(c, h);
            else if (c->uplen >= HEAD_MAX || c->up_eof) {
                logline("end %ld upstream %s before a whole response head", c->seq,
                        c->up_eof ? "closed" : "sent too much");
                conn_close(c, NULL);
            }
        }
        if (c->st == S_RESPBODY) {
            take_response_body(c);
            if (c->up_eof && c->respf.mode == F_CLOSE) c->resp_done = true;
            if (c->up_eof && !c->resp_done && c->up_fwd == 0) {
                logline("end %ld upstream closed mid-response", c->seq);
                conn_close(c, NULL);
            } else if (c->resp_done && c->up_fwd == 0 && c->cutting) {
                logline("end %ld cut: closed after the whole %d response (%zu bytes)", c->seq,
                        c->resp_status, c->sent);
                conn_close(c, NULL);
            } else if (c->resp_done && c->up_fwd == 0) {
                response_sent(c);
            }
        }
        if (c->st == S_CANNED && c->canned_off == c->canned_len) {
            logline("end %ld %d injected", c->seq, c->r.status);
            if (c->req_close) conn_close(c, NULL);
            else c->st = S_HEAD;
        }
        if (c->st == before) break;
    }
}

/* ---- I/O ---- */

static void do_read(conn *c, bool from_client, short revents) {
    char *buf = from_client ? c->in : c->up;
    size_t *len = from_client ? &c->inlen : &c->uplen;
    int fd = from_client ? c->cfd : c->ufd;
    ssize_t n = 0;
    if (*len < BUF_SZ) {
        n = read(fd, buf + *len, BUF_SZ - *len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    } else if (!(revents & (POLLHUP | POLLERR))) {
        return; /* full: read once there is room */
    }
    if (n > 0) {
        *len += (size_t)n;
        return;
    }
    if (!from_client) {
        c->up_eof = true;
        return;
    }
    /* The client is gone. */
    if (c->st == S_HANG)
        logline("end %ld hang: the client gave up after %lld ms", c->seq, (long long)(mono_ms() - c->t0));
    else if (c->st != S_HEAD || c->inlen)
        logline("end %ld the client closed in the middle (state %d)", c->seq, c->st);
    conn_close(c, NULL);
}

static void do_write_client(conn *c) {
    const char *p;
    size_t n;
    if (c->st == S_CANNED) {
        p = c->canned + c->canned_off;
        n = c->canned_len - c->canned_off;
    } else {
        p = c->up;
        n = c->up_fwd;
        if (c->cutting && n > c->cut_left) n = c->cut_left;
        if (c->r.act == A_SLOW) {
            int64_t now = mono_ms();
            c->credit += (double)(now - c->credit_ms) * (double)c->r.slow_bps / 1000.0;
            c->credit_ms = now;
            double cap = c->r.slow_bps / 4.0 > 1024 ? c->r.slow_bps / 4.0 : 1024;
            if (c->credit > cap) c->credit = cap;
            if ((double)n > c->credit) n = (size_t)c->credit;
        }
    }
    if (n == 0) return;
    ssize_t w = write(c->cfd, p, n);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (w <= 0) {
        logline("end %ld the client closed while its answer was sent", c->seq);
        conn_close(c, NULL);
        return;
    }
    c->sent += (size_t)w;
    if (c->st == S_CANNED) {
        c->canned_off += (size_t)w;
        return;
    }
    if (c->r.act == A_SLOW) c->credit -= (double)w;
    consume_up(c, (size_t)w);
    if (c->cutting) {
        c->cut_left -= (size_t)w;
        if (c->cut_left == 0) {
            logline("end %ld cut: closed after %zu bytes of a %d response", c->seq, c->sent, c->resp_status);
            conn_close(c, NULL);
        }
    }
}

static void do_write_upstream(conn *c) {
    if (c->in_fwd == 0) return;
    ssize_t w = write(c->ufd, c->in, c->in_fwd);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (w <= 0) {
        logline("end %ld upstream closed while the request was sent", c->seq);
        conn_close(c, NULL);
        return;
    }
    consume_in(c, (size_t)w);
}

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static int usage(void) {
    fputs("usage: stamp-faultproxy --upstream HOST:PORT --plan FILE --log FILE [--listen PORT] "
          "[--port-file FILE]\n",
          stderr);
    return 2;
}

static int listen_on(long port, int *out_port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *out_port = ntohs(sa.sin_port);
    return fd;
}

static void accept_one(int lfd) {
    static int next_id;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (conns[i]) continue;
        conn *c = calloc(1, sizeof(*c));
        char *in = malloc(BUF_SZ), *up = malloc(BUF_SZ);
        if (c == NULL || in == NULL || up == NULL) {
            free(c), free(in), free(up);
            break;
        }
        c->in = in;
        c->up = up;
        c->cfd = fd;
        c->ufd = -1;
        c->id = ++next_id;
        c->st = S_HEAD;
        conns[i] = c;
        return;
    }
    logline("refused a connection: %d open already", MAX_CONNS);
    close(fd);
}

static void conn_free(int i) {
    free(conns[i]->in);
    free(conns[i]->up);
    free(conns[i]);
    conns[i] = NULL;
}

/* What the connection waits for (its poll events). */
static void events_of(const conn *c, short *ce, short *ue) {
    *ce = 0;
    *ue = 0;
    if (c->inlen < BUF_SZ) *ce |= POLLIN | POLLRDHUP;
    if (c->st == S_CANNED && c->canned_off < c->canned_len) *ce |= POLLOUT;
    /* A paced answer is written on the tick: POLLOUT would spin. */
    if (c->st == S_RESPBODY && c->up_fwd > 0 && c->r.act != A_SLOW) *ce |= POLLOUT;
    if (c->ufd >= 0) {
        if (c->in_fwd > 0 && c->st == S_REQBODY) *ue |= POLLOUT;
        if ((c->st == S_RESPHEAD || c->st == S_RESPBODY) && c->uplen < BUF_SZ && !c->up_eof) *ue |= POLLIN;
    }
}

int main(int argc, char **argv) {
    const char *upstream = NULL, *log_path = NULL, *port_file = NULL;
    long listen_port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--upstream") == 0) upstream = argv[i + 1];
        else if (strcmp(argv[i], "--plan") == 0) plan_path = argv[i + 1];
        else if (strcmp(argv[i], "--log") == 0) log_path = argv[i + 1];
        else if (strcmp(argv[i], "--port-file") == 0) port_file = argv[i + 1];
        else if (strcmp(argv[i], "--listen") == 0) {
            if (!parse_long(argv[i + 1], &listen_port) || listen_port < 0 || listen_port > 65535) return usage();
        } else return usage();
    }
    if (argc % 2 == 0 || upstream == NULL || plan_path == NULL || log_path == NULL) return usage();
    struct sockaddr_in up = {.sin_family = AF_INET};
    const char *colon = strrchr(upstream, ':');
    long uport = 0;
    char host[64];
    if (colon == NULL || (size_t)(colon - upstream) >= sizeof(host) || !parse_long(colon + 1, &uport) ||
        uport <= 0 || uport > 65535)
        return usage();
    memcpy(host, upstream, (size_t)(colon - upstream));
    host[colon - upstream] = '\0';
    if (inet_pton(AF_INET, host, &up.sin_addr) != 1) return usage();
    up.sin_port = htons((uint16_t)uport);

    log_out = fopen(log_path, "a");
    if (log_out == NULL) {
        fprintf(stderr, "stamp-faultproxy: %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    start_ms = mono_ms();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int port = 0;
    int lfd = listen_on(listen_port, &port);
    if (lfd < 0) {
        fprintf(stderr, "stamp-faultproxy: listen on 127.0.0.1:%ld: %s\n", listen_port, strerror(errno));
        return 1;
    }
    logline("listening on 127.0.0.1:%d, upstream %s, plan %s", port, upstream, plan_path);
    if (port_file) {
        char tmp[4096];
        int n = snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *pf = n > 0 && (size_t)n < sizeof(tmp) ? fopen(tmp, "w") : NULL;
        if (pf == NULL || fprintf(pf, "%d\n", port) < 0 || fclose(pf) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "stamp-faultproxy: %s: %s\n", port_file, strerror(errno));
            return 1;
        }
    }

    struct pollfd pfd[1 + 2 * MAX_CONNS];
    int owner[1 + 2 * MAX_CONNS];
    while (!stop) {
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (c == NULL) continue;
            short ce, ue;
            events_of(c, &ce, &ue);
            owner[n] = i;
            pfd[n++] = (struct pollfd){.fd = c->cfd, .events = ce};
            if (c->ufd >= 0 && ue) {
                owner[n] = -1 - i;
                pfd[n++] = (struct pollfd){.fd = c->ufd, .events = ue};
            }
        }
        if (poll(pfd, (nfds_t)n, TICK_MS) < 0 && errno != EINTR) break;
        if (pfd[0].revents & POLLIN) accept_one(lfd);
        for (int k = 1; k < n; k++) {
            int i = owner[k] >= 0 ? owner[k] : -1 - owner[k];
            conn *c = conns[i];
            if (c == NULL || c->st == S_DEAD || pfd[k].revents == 0) continue;
            bool client = owner[k] >= 0;
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) do_read(c, client, pfd[k].revents);
            if (c->st != S_DEAD && (pfd[k].revents & POLLOUT)) {
                if (client) do_write_client(c);
                else do_write_upstream(c);
            }
        }
        int64_t now = mono_ms();
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (c == NULL) continue;
            if (c->st == S_HANG && now >= c->hang_until) {
                logline("end %ld hang: closed after %.1fs without an answer", c->seq, c->r.hang_s);
                conn_close(c, NULL);
            }
            /* A paced answer is written on the tick, not on POLLOUT. */
            if (c->st == S_RESPBODY && c->r.act == A_SLOW && c->up_fwd > 0) do_write_client(c);
            if (c->st != S_DEAD) advance(c, &up);
            if (c->st == S_DEAD) conn_free(i);
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i]) {
            conn_close(conns[i], NULL);
            conn_free(i);
        }
    close(lfd);
    logline("stopped");
    fclose(log_out);
    return 0;
}
