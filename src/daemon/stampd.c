/*
 * stampd.c - the daemon: configuration, the store, the reconcile workers and
 * the API, and one loop that does the periodic jobs:
 *   - every 30 s: resync, i.e. enqueue every resource (level-triggered
 *     safety net; wake-ups are an optimisation, not a requirement).
 *   - every frontdoor-sync-interval: the front door, and the Prometheus
 *     file_sd files of the fleet (obs/targets.h).
 * Signal handlers only set flags.  SIGTERM stops stampd cleanly and leaves
 * every workload running; the next stampd adopts them.  `--shutdown-all`
 * stops a running stampd and then every process it owns (workloads,
 * namespace workers, HAProxy).
 *
 * Start-up takes what stampd must own before it starts anything that would
 * outlive a failure: the data dir lock, the API address and the front door
 * address (both checked free), then HAProxy, the API and the workers.  A
 * failure stops what was started, in reverse order.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "api/api.h"
#include "auth/jwt.h"
#include "blob/blob.h"
#include "autoscale/controller.h"
#include "rollout/rollout.h"
#include "ns/ns.h"
#include "cluster/cluster.h"
#include "obs/obs.h"
#include "obs/targets.h"
#include "core/config.h"
#include "reconcile/engine.h"
#include "reconcile/fleet.h"
#include "reconcile/jobs.h"
#include "stamp/stamp_ctl.h"
#include "runtime/runtime.h"
#include "traffic/traffic.h"
#include "util/httpc.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/reserve.h"
#include "util/util.h"
#include "util/version.h"

#define RESYNC_MS 30000

static volatile sig_atomic_t quit;

static void on_signal(int sig) { quit = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: stampd [-nv] [--data-dir DIR] [--listen ADDR:PORT] [--frontdoor-listen ADDR:PORT]\n"
            "              [--config FILE]\n"
            "              [--set KEY=VALUE ...]\n"
            "       stampd --shutdown-all [--data-dir DIR]\n"
            "       stampd --version\n"
            "  -n                 check the configuration, say so, and exit\n"
            "  -v                 verbose (LOG_LEVEL=DEBUG)\n"
            "  --version          print the version and exit\n"
            "  --shutdown-all     stop the stampd of DATA_DIR, then every workload, namespace\n"
            "                     worker and the HAProxy it started: the setup is down\n"
            "  --data-dir DIR     state, logs and workloads (default /var/lib/stamp)\n"
            "  --listen ADDR:PORT API address (default 127.0.0.1:7480)\n"
            "  --frontdoor-listen ADDR:PORT\n"
            "                     where the HAProxy stampd starts listens (default 127.0.0.1:7481)\n"
            "  --config FILE      `key value` lines (default DATA_DIR/stampd.conf if present)\n"
            "  --set KEY=VALUE    one configuration key; see --help-config\n"
            "  --help-config      list every configuration key with its default\n");
}

/* The verifier's warnings (skipped JWKS keys, failed refreshes). */
static void jwt_warn(void *arg, const char *msg) { log_warnx("%s", msg); }

static void enqueue_stamp(const char *name, void *arg) { ctl_wake(arg, "Stamp", name); }

static int hex_random(char *out, size_t nbytes) {
    unsigned char buf[64];
    if (nbytes > sizeof(buf) || RAND_bytes(buf, (int)nbytes) != 1) return -1;
    for (size_t i = 0; i < nbytes; i++) snprintf(out + 2 * i, 3, "%02x", buf[i]);
    return 0;
}

static int meta_or_random(store *st, const char *key, size_t nbytes, char *out, size_t len,
                          serr *e) {
    char *v = NULL;
    int rc = store_meta_get(st, key, &v, e);
    if (rc == 0) {
        str_copy(out, len, v);
        free(v);
        return 0;
    }
    if (rc != SE_NOTFOUND) return rc;
    serr_clear(e);
    if (2 * nbytes + 1 > len || hex_random(out, nbytes) != 0)
        return serr_set(e, SE_INTERNAL, "no randomness for %s", key);
    /* Replicas starting at once on one store keep the first one's. */
    if ((rc = store_meta_init(st, key, out, &v, e))) return rc;
    str_copy(out, len, v);
    free(v);
    return 0;
}

static int hex_decode(const char *hex, unsigned char *out, size_t max) {
    size_t n = strlen(hex) / 2;
    if (n > max) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) return -1;
        out[i] = (unsigned char)b;
    }
    return (int)n;
}

/* The kubeconfig of stamp: endpoint and an operator token, mode 0600. */
static int write_client_config(const stamp_config *cfg, const unsigned char *secret, size_t slen,
                               serr *e) {
    char path[PATH_MAX];
    const char *env = getenv("STAMP_CONFIG");
    if (env && *env) {
        str_copy(path, sizeof(path), env);
    } else {
        const char *home = getenv("HOME");
        if (home == NULL) return serr_set(e, SE_INVAL, "neither STAMP_CONFIG nor HOME is set");
        snprintf(path, sizeof(path), "%s/.config/stamp", home);
        int rc = mkdir_p(path, 0700, e);
        if (rc) return rc;
        snprintf(path, sizeof(path), "%s/.config/stamp/config", home);
    }
    int64_t now = now_ms() / 1000;
    const char *user = getenv("USER");
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "iss", cfg->jwt_issuer, "aud",
                               cfg->jwt_audience, "sub", user ? user : "operator", "user_id",
                               user ? user : "operator", "tenant_id", "system", "role", "operator",
                               "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + cfg->token_ttl_ms / 1000));
    char *token = NULL;
    int rc = jwt_sign_hs256(secret, slen, claims, &token, e);
    json_decref(claims);
    if (rc) return rc;
    char text[JWT_MAX_LEN + 512];
    int n = snprintf(text, sizeof(text),
                     "# written by stampd; read by stampctl\nendpoint: http://%s\ntoken: %s\n",
                     cfg->listen, token);
    free(token);
    rc = write_file_atomic(path, text, (size_t)n, 0600, e);
    if (rc == 0) log_info("client config written to %s", path);
    return rc;
}

/* One stampd per data dir: a POSIX lock on DATA_DIR/stampd.lock, which
 * also holds the pid for people.  F_GETLK names the holder, so a failure
 * says which of the usual causes it is. */
static int lock_data_dir(const char *dir, int *out, serr *e) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/stampd.lock", dir) >= (int)sizeof(path))
        return serr_set(e, SE_INVAL, "data dir %s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        if (err == EROFS)
            return serr_set(e, SE_IO, "data dir %s is on a read-only file system", dir);
        if (err == EACCES || err == EPERM)
            return serr_set(e, SE_FORBIDDEN, "data dir %s: permission denied creating %s (running as uid %d)",
                            dir, path, (int)geteuid());
        return serr_set(e, SE_IO, "data dir %s: cannot open %s: %s", dir, path, strerror(err));
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int err = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        long pid = 0;
        if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK) pid = (long)who.l_pid;
        if (pid <= 0) { /* another pid namespace: the pid it wrote */
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
            buf[n > 0 ? n : 0] = '\0';
            int64_t v;
            buf[strcspn(buf, "\n")] = '\0';
            if (parse_i64(buf, 1, INT32_MAX, &v) == 0) pid = (long)v;
        }
        close(fd);
        if (err != EAGAIN && err != EACCES)
            return serr_set(e, SE_IO, "data dir %s: cannot lock %s: %s", dir, path, strerror(err));
        if (pid > 0) return serr_set(e, SE_UNAVAIL, "another stampd is running on %s (pid %ld)", dir, pid);
        return serr_set(e, SE_UNAVAIL, "another stampd is running on %s (it holds %s)", dir, path);
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int err = errno;
        close(fd);
        if (err == ENOSPC) return serr_set(e, SE_IO, "data dir %s: no space left on the device", dir);
        return serr_set(e, SE_IO, "data dir %s: cannot write %s: %s", dir, path, strerror(err));
    }
    *out = fd;
    return 0;
}

/* api-max-connections is only a limit if the descriptors are there: the
 * soft RLIMIT_NOFILE (often 1024) is raised toward the hard one so that
 * the API's connections, the store and the workers' files all fit. */
static void fit_nofile(const stamp_config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)cfg->api_max_connections + 512;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("open files limit raised from %llu to %llu for api-max-connections",
                     (unsigned long long)old, (unsigned long long)rl.rlim_cur);
        if (rl.rlim_cur < want)
            log_warnx("open files limit %llu is below api-max-connections + 512: lower "
                      "api-max-connections or raise the limit (LimitNOFILE)",
                      (unsigned long long)rl.rlim_cur);
    }
}

static int find_libexec(stamp_config *cfg, serr *e) {
    if (cfg->libexec_dir[0]) return 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) return serr_set(e, SE_IO, "readlink /proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof(probe), "%s/stamp-run", exe);
    if (path_exists(probe)) {
        return str_fmt(cfg->libexec_dir, sizeof(cfg->libexec_dir), e, "libexec-dir", "%s", exe);
    }
    snprintf(probe, sizeof(probe), "%s/../libexec/stamp/stamp-run", exe);
    if (path_exists(probe)) {
        return str_fmt(cfg->libexec_dir, sizeof(cfg->libexec_dir), e, "libexec-dir", "%s/../libexec/stamp",
                       exe);
    }
    return serr_set(e, SE_NOTFOUND, "stamp-run not found next to stampd nor in ../libexec/stamp; set libexec-dir");
}

/* The sd_notify protocol (a datagram to $NOTIFY_SOCKET; '@' is the
 * abstract namespace), so that Type=notify works without libsystemd. */
static void notify_systemd(const char *msg) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (path == NULL || (path[0] != '/' && path[0] != '@')) return;
    size_t len = strlen(path);
    if (len >= sizeof(a.sun_path)) return;
    memcpy(a.sun_path, path, len);
    if (a.sun_path[0] == '@') a.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&a, alen) < 0)
        log_debug("sd_notify %s: %s", msg, strerror(errno));
    close(fd);
}

/* The pid written in DATA_DIR/stampd.lock, or 0. */
static pid_t lock_pid(const char *dir) {
    char path[PATH_MAX], *text = NULL;
    if (snprintf(path, sizeof(path), "%s/stampd.lock", dir) >= (int)sizeof(path)) return 0;
    if (read_file(path, 64, &text, NULL, NULL) != 0) return 0;
    text[strcspn(text, "\n")] = '\0';
    int64_t v = 0;
    if (parse_i64(text, 1, INT32_MAX, &v) != 0) v = 0;
    free(text);
    return (pid_t)v;
}

/* stampd --shutdown-all: SIGTERM to the running stampd (if any), wait for
 * its lock, then stop every process of this data dir's owner: workloads,
 * exec steps, namespace workers and HAProxy.  The store keeps every stamp;
 * the next stampd starts their workloads again. */
static int shutdown_all(const stamp_config *cfg, serr *e) {
    int lockfd = -1, rc;
    if (!path_exists(cfg->data_dir)) {
        printf("stampd: nothing to stop (no data dir %s)\n", cfg->data_dir);
        return 0;
    }
    bool signalled = false;
    int64_t until = mono_ms() + 60000;
    for (;;) {
        serr le = {0};
        rc = lock_data_dir(cfg->data_dir, &lockfd, &le);
        if (rc == 0) break;
        if (rc != SE_UNAVAIL) return serr_set(e, rc, "%s", le.msg);
        pid_t pid = lock_pid(cfg->data_dir);
        if (!signalled && pid > 0) {
            printf("stampd: stopping stampd pid %ld\n", (long)pid);
            if (kill(pid, SIGTERM) != 0 && errno != ESRCH)
                return serr_set(e, SE_FORBIDDEN, "cannot signal stampd pid %ld: %s", (long)pid,
                                strerror(errno));
            signalled = true;
        }
        if (mono_ms() >= until) return serr_set(e, SE_TIMEOUT, "stampd pid %ld did not stop in 60s", (long)pid);
        sleep_ms(100);
    }
    char path[PATH_MAX], *owner = NULL;
    store *st = NULL;
    runtime *rt = NULL;
    snprintf(path, sizeof(path), "%s/stamp.db", cfg->data_dir);
    if ((rc = store_open_sqlite(path, &st, e))) goto out;
    rc = store_meta_get(st, "owner_id", &owner, e);
    store_close(st);
    if (rc == SE_NOTFOUND) {
        serr_clear(e);
        rc = 0;
        printf("stampd: no process was ever started from %s\n", cfg->data_dir);
        goto out;
    }
    if (rc || (rc = runtime_open("local", owner, &rt, e))) goto out;
    rt_proc *p = calloc(RT_MAX_PROCS, sizeof(*p));
    if (p == NULL) {
        rc = serr_set(e, SE_NOMEM, "out of memory");
        goto out;
    }
    int n = rt_scan(rt, NULL, true, p, RT_MAX_PROCS, e);
    if (n < 0) {
        free(p);
        rc = n;
        goto out;
    }
    if (n > RT_MAX_PROCS) n = RT_MAX_PROCS;
    /* All asked at once, then each waited for (and killed past the grace). */
    for (int i = 0; i < n; i++) kill(-p[i].pid, SIGTERM);
    int haproxy = 0, steps = 0, others = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        serr se = {0};
        if (rt_stop(rt, p[i].pid, (int)cfg->stop_grace_ms, &se) != 0) {
            fprintf(stderr, "stampd: cannot stop %s (pid %d): %s\n", p[i].unit, (int)p[i].pid, se.msg);
            failed++;
        } else if (strncmp(p[i].unit, "frontdoor/", 10) == 0) {
            haproxy++;
        } else if (strstr(p[i].unit, "/x/") != NULL) {
            steps++;
        } else {
            others++;
        }
    }
    free(p);
    printf("stampd: stopped %s, %d workload and namespace process(es), %d step command(s); "
           "the stamps stay in the store and the next stampd starts them again\n",
           haproxy ? "the front door (HAProxy)" : "no front door", others, steps);
    if (failed) rc = serr_set(e, SE_IO, "%d process(es) did not stop", failed);
out:
    runtime_close(rt);
    free(owner);
    if (lockfd >= 0) close(lockfd);
    return rc;
}

/* ---- main, in the order stampd starts ---- */

typedef struct daemon_opts {
    bool check_only, verbose, stop_all;
    const char *config_file, *data_dir, *listen, *fd_listen;
    const char *sets[128];
    int nsets;
} daemon_opts;

/* Everything stampd starts, stopped in reverse by daemon_stop. */
typedef struct stampd_state {
    stamp_config cfg;
    ctl_ctx ctx;
    blob_store *blobs;
    store *st;
    jwt_verifier *jv;
    api *ap;
    engine *en;
    int lockfd;
    char owner[64];
    unsigned char secret[64];
    int slen;
} stampd_state;

/* The command line.  -1: go on; otherwise the exit code. */
static int parse_args(int argc, char **argv, stampd_state *d, daemon_opts *o, serr *e) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-n") == 0) o->check_only = true;
        else if (strcmp(a, "-v") == 0) o->verbose = true;
        else if (strcmp(a, "-nv") == 0 || strcmp(a, "-vn") == 0) o->check_only = o->verbose = true;
        else if (strcmp(a, "--shutdown-all") == 0) o->stop_all = true;
        else if (strcmp(a, "--version") == 0) {
            printf("stampd %s\n", STAMP_VERSION);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--help-config") == 0) {
            config_help(stdout);
            return 0;
        } else if ((strcmp(a, "--data-dir") == 0 || strcmp(a, "--listen") == 0 ||
                    strcmp(a, "--frontdoor-listen") == 0 ||
                    strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0) && next == NULL) {
            fprintf(stderr, "stampd: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--data-dir") == 0) {
            o->data_dir = argv[++i];
            if (config_set(&d->cfg, "data-dir", o->data_dir, e)) return 1;
        } else if (strcmp(a, "--listen") == 0) {
            o->listen = argv[++i];
        } else if (strcmp(a, "--frontdoor-listen") == 0) {
            o->fd_listen = argv[++i];
        } else if (strcmp(a, "--config") == 0) {
            o->config_file = argv[++i];
        } else if (strcmp(a, "--set") == 0) {
            if (o->nsets < 128) o->sets[o->nsets++] = argv[++i];
        } else {
            fprintf(stderr, "stampd: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* The file first, then the command line, which wins. */
static int load_config(stampd_state *d, const daemon_opts *o, serr *e) {
    stamp_config *cfg = &d->cfg;
    char defconf[PATH_MAX];
    const char *config_file = o->config_file;
    if (str_fmt(defconf, sizeof(defconf), e, "data-dir", "%s/stampd.conf", cfg->data_dir)) return e->code;
    if (config_file == NULL && path_exists(defconf)) config_file = defconf;
    if (config_file && config_load_file(cfg, config_file, e)) return e->code;
    if ((o->data_dir && config_set(cfg, "data-dir", o->data_dir, e)) ||
        (o->listen && config_set(cfg, "listen", o->listen, e)) ||
        (o->fd_listen && config_set(cfg, "frontdoor-listen", o->fd_listen, e)))
        return e->code;
    for (int i = 0; i < o->nsets; i++) {
        char key[128];
        const char *eq = strchr(o->sets[i], '=');
        if (eq == NULL || (size_t)(eq - o->sets[i]) >= sizeof(key))
            return serr_set(e, SE_INVAL, "--set %s: expected KEY=VALUE", o->sets[i]);
        memcpy(key, o->sets[i], (size_t)(eq - o->sets[i]));
        key[eq - o->sets[i]] = '\0';
        if (config_set(cfg, key, eq + 1, e)) return e->code;
    }
    if (o->verbose) str_copy(cfg->log_level, sizeof(cfg->log_level), "DEBUG");
    if (config_validate(cfg, e) || find_libexec(cfg, e)) return e->code;
    if (cfg->state_dir[0] == '\0') str_copy(cfg->state_dir, sizeof(cfg->state_dir), cfg->data_dir);
    return 0;
}

/* The data dir, locked; the store; the owner id and the token key. */
static int open_store(stampd_state *d, serr *e) {
    stamp_config *cfg = &d->cfg;
    char path[PATH_MAX];
    if (mkdir_p(cfg->data_dir, 0700, e)) return serr_wrap(e, "data dir");
    if (lock_data_dir(cfg->data_dir, &d->lockfd, e) ||
        str_fmt(path, sizeof(path), e, "data-dir", "%s/stamp.db", cfg->data_dir) ||
        (cfg->store_url[0] ? store_open(cfg->store_url, &d->st, e) : store_open_sqlite(path, &d->st, e)) ||
        str_fmt(path, sizeof(path), e, "data-dir", "%s/reserve", cfg->data_dir))
        return e->code;
    /* Replicas: nothing leads, reconciles or runs a job of the leader's
     * until the election says this one leads (cluster.h). */
    if (strcmp(store_backend_name(d->st), "postgres") == 0) cluster_prepare();
    if (reserve_init(path, cfg->disk_reserve, e)) {
        log_warnx("%s; retried while stampd runs", e->msg);
        serr_clear(e);
    }
    char secret_hex[129];
    if (meta_or_random(d->st, "owner_id", 12, d->owner, sizeof(d->owner), e) ||
        meta_or_random(d->st, "jwt_secret", 32, secret_hex, sizeof(secret_hex), e))
        return e->code;
    d->slen = hex_decode(secret_hex, d->secret, sizeof(d->secret));
    if (d->slen < 16) return serr_set(e, SE_INTERNAL, "stored jwt secret is malformed");
    memcpy(d->ctx.token_secret, d->secret, (size_t)d->slen);
    d->ctx.token_secret_len = (size_t)d->slen;
    d->ctx.st = d->st;
    return runtime_open("local", d->owner, &d->ctx.rt, e);
}

static int open_auth(stampd_state *d, serr *e) {
    stamp_config *cfg = &d->cfg;
    char *jwks = NULL;
    if (cfg->jwt_jwks[0] && read_file(cfg->jwt_jwks, 1 << 20, &jwks, NULL, e))
        return serr_wrap(e, "jwt-jwks");
    jwt_config jc = {.alg = cfg->jwt_algorithms,
                     .secret = d->secret,
                     .secret_len = (size_t)d->slen,
                     .issuer = cfg->jwt_issuer,
                     .audience = cfg->jwt_audience,
                     .jwks = jwks,
                     .jwks_url = cfg->jwt_jwks_url,
                     .jwks_ca_file = cfg->jwt_jwks_ca_file,
                     .jwks_refresh_ms = cfg->jwt_jwks_refresh_ms,
                     .jwks_min_refresh_ms = cfg->jwt_jwks_min_refresh_ms,
                     .jwks_issuers = cfg->jwt_issuers,
                     .operator_issuers = cfg->jwt_operator_issuers,
                     .operator_kids = cfg->jwt_operator_kids,
                     .role_claim = cfg->jwt_role_claim,
                     .leeway_s = cfg->jwt_leeway_ms / 1000,
                     .warn = jwt_warn};
    int rc = jwt_verifier_new(&jc, &d->jv, e);
    free(jwks);
    if (rc) return rc;
    if (cfg->jwt_jwks[0] || cfg->jwt_jwks_url[0])
        log_info("jwt: accepting %s; %d JWKS key(s) from %s; operator issuers: %s", cfg->jwt_algorithms,
                 jwt_verifier_nkeys(d->jv), cfg->jwt_jwks[0] ? cfg->jwt_jwks : cfg->jwt_jwks_url,
                 cfg->jwt_operator_issuers[0] ? cfg->jwt_operator_issuers : "(none)");
    if ((cfg->jwt_jwks[0] || cfg->jwt_jwks_url[0]) && strstr(cfg->jwt_algorithms, "RS256") == NULL &&
        strstr(cfg->jwt_algorithms, "ES256") == NULL)
        log_warnx("jwt: JWKS keys are configured but jwt-algorithms (%s) accepts neither RS256 nor ES256",
                  cfg->jwt_algorithms);
    return 0;
}

static int open_blobs(stampd_state *d, serr *e) {
    stamp_config *cfg = &d->cfg;
    char blobdir[PATH_MAX];
    if (cfg->blob_dir[0]) str_copy(blobdir, sizeof(blobdir), cfg->blob_dir);
    else if (str_fmt(blobdir, sizeof(blobdir), e, "state-dir", "%s/blobs", cfg->state_dir)) return e->code;
    const char *backend = cfg->blob_backend;
    if (strcmp(backend, "auto") == 0) backend = cfg->azure_connection[0] ? "azure" : "dir";
    if (blob_open(backend, blobdir, cfg->azure_connection, cfg->probe_timeout_ms * 5, &d->blobs, e))
        return serr_wrap(e, "blob storage");
    d->ctx.blobs = d->blobs;
    log_info("blob storage: %s (containers %s, %s)", blob_describe(d->blobs),
             cfg->diagnostic_container, cfg->bundle_container);
    return 0;
}

/* The work queue, the front door, the job pool, the API, the controllers. */
/* Several replicas on PostgreSQL: the election and the wake-ups
 * (cluster.h).  One stampd on SQLite leads alone. */
static int start_cluster(stampd_state *d, serr *e) {
    stamp_config *cfg = &d->cfg;
    if (strcmp(store_backend_name(d->st), "postgres") != 0) return 0;
    char id[128];
    if (cfg->replica_id[0]) {
        str_copy(id, sizeof(id), cfg->replica_id);
    } else {
        char host[64] = "stampd", rnd[8];
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        const char *port = strrchr(cfg->listen, ':');
        if (hex_random(rnd, 3) != 0) str_copy(rnd, sizeof(rnd), "0");
        snprintf(id, sizeof(id), "%.60s-%.8s-%s", host, port ? port + 1 : "", rnd);
    }
    cluster_config cc = {.url = cfg->store_url,
                         .id = id,
                         .address = cfg->listen,
                         .lease_ms = cfg->leader_lease_ms,
                         .renew_deadline_ms = cfg->leader_renew_deadline_ms,
                         .retry_ms = cfg->leader_retry_ms};
    return cluster_start(&cc, &d->ctx, e);
}

/* The ObservabilityPlatform component catalog.  Not fatal: without one,
 * platforms stay Pending and say why (obs_catalog_error). */
static void load_obs_catalog(const stamp_config *cfg) {
    char path[1024];
    serr ce = {0};
    obs_catalog *cat = NULL;
    if (obs_catalog_path(cfg, NULL, path, sizeof(path), &ce) || obs_catalog_load(path, cfg->obs_root, &cat, &ce)) {
        log_warnx("observability catalog: %s; ObservabilityPlatforms stay Pending", ce.msg);
        obs_set_catalog(NULL, ce.msg);
        return;
    }
    log_info("observability catalog: %s (%d components)", path, cat->n);
    obs_set_catalog(cat, NULL);
}

static int start_parts(stampd_state *d, serr *e) {
    stamp_config *cfg = &d->cfg;
    ctl_ctx *ctx = &d->ctx;
    wq_backoff bo = {.initial_ms = cfg->backoff_initial_ms,
                     .max_ms = cfg->backoff_max_ms,
                     .factor = cfg->backoff_factor,
                     .jitter = 0.1};
    ctx->cfg = cfg;
    ctx->q = wq_new(100000, &bo);
    str_copy(ctx->data_dir, sizeof(ctx->data_dir), cfg->state_dir);
    if (mkdir_p(cfg->state_dir, 0700, e)) return serr_wrap(e, "state dir");
    str_copy(ctx->libexec, sizeof(ctx->libexec), cfg->libexec_dir);
    if (ctx->q == NULL) return serr_set(e, SE_NOMEM, "cannot create the work queue");
    stamp_metrics_register();
    ns_metrics_register();
    mttc_metrics_register();
    engine_metrics_register();
    as_metrics_register();
    obs_metrics_register();
    load_obs_catalog(cfg);
    /* Replicas: the leader does it when its term starts (run_loop). */
    if (!cluster_enabled() && ns_rebase_due(ctx, e)) return e->code;
    if (!cluster_enabled() && ns_finalize_orphan_verifications(ctx, e)) return e->code;
    /* The API address is bound only after HAProxy is up (requests may use
     * the front door), so it is checked first: a port in use must stop
     * stampd before it starts anything. */
    if (tcp_addr_free(cfg->listen, "API", e) == SE_UNAVAIL) {
        char m[SERR_MSG_MAX];
        str_copy(m, sizeof(m), e->msg);
        return serr_set(e, SE_UNAVAIL, "%.400s; choose another with --listen ADDR:PORT (the listen key)", m);
    }
    serr_clear(e);
    if (fleet_health_new(cfg->all_unhealthy_policy, &ctx->fleet, e) ||
        traffic_open(cfg, cfg->data_dir, ctx->rt, &ctx->tr, e))
        return e->code;
    char cmsg[512];
    int cl = nsrt_confine_init(ctx, cmsg, sizeof(cmsg));
    if (cl < 0) log_error("%s", cmsg);
    else if (cl > 0) log_warnx("%s", cmsg);
    else log_info("%s", cmsg);
    if (jobs_start((int)cfg->job_threads, (int)cfg->job_queue_max, &ctx->jobs, e) ||
        api_start(ctx, d->jv, cfg->listen, &d->ap, e))
        return e->code;
    if (write_client_config(cfg, d->secret, (size_t)d->slen, e)) {
        log_warnx("client config not written: %s", e->msg);
        serr_clear(e);
    }
    /* Namespaces are not resynced: there may be 100k of them, and the
     * reaper's sweep reads only those that are due. */
    if (engine_register("Stamp", stamp_reconcile, true) ||
        engine_register("StampAutoscaler", as_reconcile, true) ||
        engine_register(RO_KIND, ro_reconcile, true) ||
        engine_register(OBS_KIND, obs_reconcile, true) ||
        engine_register("Namespace", ns_reconcile, false))
        return serr_set(e, SE_INTERNAL, "cannot register the controllers");
    if (engine_start(ctx, (int)cfg->workers, &d->en, e)) return e->code;
    return start_cluster(d, e);
}

/* The periodic work, until a signal. */
static void run_loop(stampd_state *d) {
    stamp_config *cfg = &d->cfg;
    ctl_ctx *ctx = &d->ctx;
    int64_t next_resync = mono_ms() + RESYNC_MS, next_fd = 0, next_reap = 0, next_retention = 0;
    int64_t next_reserve = 0, next_sd_log = 0;
    log_info("reaper: every %lldms, inactivity threshold %lldms", (long long)cfg->reap_interval_ms,
             (long long)cfg->inactivity_threshold_ms);
    uint64_t term = 0;
    while (!quit) {
        sleep_ms(50);
        serr se = {0};
        /* Replicas: only the leader sweeps, syncs the front door and writes
         * the targets; a new term (or a LISTEN session that reconnected)
         * starts with a resync of everything (cluster.h). */
        int64_t epoch = cluster_epoch();
        if (!cluster_leading() || (cluster_enabled() && epoch == 0)) continue;
        /* The sweeps below write for the leader: with its epoch. */
        store_fence_set(epoch);
        if (cluster_terms() != term || cluster_take_resync()) {
            if (cluster_terms() != term) next_reap = next_retention = next_fd = 0;
            term = cluster_terms();
            if (cluster_enabled()) {
                engine_resync(d->en);
                /* Done by the leader only, fenced (see start_parts). */
                if (ns_rebase_due(ctx, &se)) log_warnx("rebase of the reaper's due times: %s", se.msg);
                if (ns_finalize_orphan_verifications(ctx, &se))
                    log_warnx("interrupted verifications: %s", se.msg);
            }
        }
        if (mono_ms() >= next_reap) {
            /* At start too: reaps that a crash interrupted are due now. */
            if (ns_sweep(ctx, false, 0, NULL, &se) < 0) log_warnx("reaper sweep: %s", se.msg);
            next_reap = mono_ms() + cfg->reap_interval_ms;
        }
        if (mono_ms() >= next_retention) {
            if (ns_retention_sweep(ctx, &se)) log_warnx("retention sweep: %s", se.msg);
            next_retention = mono_ms() + cfg->retention_sweep_ms;
        }
        if (mono_ms() >= next_fd) {
            traffic_sync(ctx->tr, enqueue_stamp, ctx);
            /* Prometheus's file_sd targets follow the same tick (at start too). */
            if (obs_targets_sync(ctx, &se) && mono_ms() >= next_sd_log) {
                log_warnx("%s", se.msg);
                next_sd_log = mono_ms() + 10000;
            }
            next_fd = mono_ms() + cfg->frontdoor_sync_ms;
        }
        if (mono_ms() >= next_reserve) {
            /* The store's disk reserve: say loudly when it was used, and
             * take the space back once the disk has room again. */
            int n = reserve_take_releases();
            if (n > 0)
                log_error("the data filesystem is full: the store's reserve of %lld bytes "
                          "was released so that stampd can commit", (long long)cfg->disk_reserve);
            if (reserve_refill(cfg->disk_reserve, &se) == 1) log_info("the store's disk reserve is restored");
            next_reserve = mono_ms() + 1000;
        }
        if (mono_ms() >= next_resync) {
            engine_resync(d->en);
            next_resync = mono_ms() + RESYNC_MS;
        }
    }
}

/* What was started, stopped in reverse order.  Jobs first: their ends
 * resume the API connections that wait on them, which must happen while
 * the API still runs.  failed: HAProxy is not left behind either. */
static void daemon_stop(stampd_state *d, bool failed) {
    cluster_stop();
    jobs_stop(d->ctx.jobs);
    if (d->ap) api_stop(d->ap);
    if (d->en) engine_stop(d->en);
    jobs_free(d->ctx.jobs);
    if (failed) traffic_abort(d->ctx.tr);
    traffic_close(d->ctx.tr);
    fleet_health_free(d->ctx.fleet);
    runtime_close(d->ctx.rt);
    if (d->ctx.q) wq_free(d->ctx.q);
    jwt_verifier_free(d->jv);
    blob_close(d->blobs);
    if (d->st) store_close(d->st);
    if (d->lockfd >= 0) close(d->lockfd);
}

int main(int argc, char **argv) {
    static stampd_state D = {.lockfd = -1};
    static daemon_opts O;
    stampd_state *d = &D;
    serr e = {0};
    config_defaults(&d->cfg);
    if (config_from_env(&d->cfg, &e)) goto bad;
    char *lv = getenv("LOG_LEVEL");
    if (lv && log_level_parse(lv) >= 0) str_copy(d->cfg.log_level, sizeof(d->cfg.log_level), lv);
    int rc = parse_args(argc, argv, d, &O, &e);
    if (rc == 1) goto bad;
    if (rc >= 0) return rc;
    if (load_config(d, &O, &e)) goto bad;
    log_init(log_level_parse(d->cfg.log_level));
    log_set_json(strcmp(d->cfg.log_format, "json") == 0);
    if (O.stop_all) {
        if (shutdown_all(&d->cfg, &e)) goto bad;
        return 0;
    }
    if (O.check_only) {
        if (O.verbose) config_print(&d->cfg, stdout);
        printf("configuration OK\n");
        return 0;
    }
    fit_nofile(&d->cfg);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    httpc_global_init();
    if (open_store(d, &e) || open_auth(d, &e) || open_blobs(d, &e) || start_parts(d, &e)) goto bad;
    log_info("stampd %s listening on %s, data dir %s, owner %s", STAMP_VERSION, d->cfg.listen,
             d->cfg.data_dir, d->owner);
    notify_systemd("READY=1");
    run_loop(d);
    log_info("signal %d: stopping; workloads keep running", (int)quit);
    notify_systemd("STOPPING=1");
    daemon_stop(d, false);
    log_info("stopped");
    return 0;
bad:
    /* With log-format json the reason is a JSON line too, so that a log
     * reader can parse it. */
    if (strcmp(d->cfg.log_format, "json") == 0) log_error("stampd: %s", e.msg);
    else fprintf(stderr, "stampd: %s\n", e.msg);
    daemon_stop(d, true);
    return 1;
}
