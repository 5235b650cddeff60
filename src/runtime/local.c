/*
 * local.c - the local runtime (local.h): detached processes found again
 * through /proc, as the "local" table of runtime_ops.  An instance holds the
 * owner marker and the scan cache; nothing here is file-static.
 *
 * Spawning is the classic daemon double fork, done from a multithreaded
 * process, so everything the children need (argv, envp, file descriptors)
 * is prepared before the first fork and the children call only
 * async-signal-safe functions.  A close-on-exec pipe reports back: the
 * intermediate child writes the grandchild's pid, and the grandchild writes
 * errno if execve fails; end of file without an errno means exec succeeded.
 *
 * Scanning trusts only what the kernel keeps: /proc/<pid>/environ of our
 * own uid's processes.  A pidfile could be missing (kill -9 between fork
 * and write) or stale (pid reuse); an environment marker can be neither.
 */
#include "runtime/local.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/mutex.h"
#include "util/util.h"

extern char **environ;

#define OWNER_VAR "STAMPD_OWNER="
#define UNIT_VAR "STAMP_UNIT="
#define ENV_MAX 512
#define ENVIRON_READ_MAX (128 * 1024)

typedef struct lrt {
    char owner_entry[160]; /* "STAMPD_OWNER=<id>"; immutable after open */
    smutex mu;             /* protects the cache */
    rt_proc *cache;        /* RT_MAX_PROCS entries */
    int cache_n;           /* -1: stale */
    int64_t cache_at;
} lrt;

static int lrt_open(const char *owner_id, void **impl, serr *e) {
    *impl = NULL;
    if (owner_id == NULL || !*owner_id || strlen(owner_id) > 128 || strpbrk(owner_id, " =\n"))
        return serr_set(e, SE_INVAL, "runtime: bad owner id");
    lrt *L = calloc(1, sizeof(*L));
    if (L == NULL || (L->cache = calloc(RT_MAX_PROCS, sizeof(*L->cache))) == NULL) {
        free(L);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    /* 128 bytes of id and the marker's name always fit. */
    int n = snprintf(L->owner_entry, sizeof(L->owner_entry), "%s%s", OWNER_VAR, owner_id);
    assert(n > 0 && n < (int)sizeof(L->owner_entry));
    (void)n;
    smutex_init(&L->mu);
    L->cache_n = -1;
    *impl = L;
    return 0;
}

static void lrt_close(void *impl) {
    lrt *L = impl;
    if (L == NULL) return;
    smutex_destroy(&L->mu);
    free(L->cache);
    free(L);
}

static void lrt_invalidate(void *impl) {
    lrt *L = impl;
    smutex_lock(&L->mu);
    L->cache_n = -1;
    smutex_unlock(&L->mu);
}

static bool unit_ok(const char *u) {
    size_t n = strlen(u);
    if (n == 0 || n >= RT_UNIT_MAX) return false;
    for (const char *c = u; *c; c++)
        if (*c <= ' ' || *c == 0x7f || *c == '=') return false;
    return true;
}

static bool is_marker(const char *kv) {
    return str_has_prefix(kv, OWNER_VAR) || str_has_prefix(kv, UNIT_VAR);
}

/* Async-signal-safe from here to the end of child_exec. */
static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static _Noreturn void child_exec(const rt_spawn_spec *sp, char *const *argv, char *const *envp,
                                 int nullfd, int logfd, int pipefd) {
    int err;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Its own process group, so a stop reaches whatever it forks. */
    setpgid(0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &sa, NULL);
    if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0) goto fail;
    if (sp->cwd && chdir(sp->cwd) != 0) goto fail;
    /* Keep only 0-2 and the report pipe (close-on-exec). */
    if (pipefd != 3) {
        if (dup2(pipefd, 3) < 0) goto fail;
        pipefd = 3;
    }
    if (fcntl(pipefd, F_SETFD, FD_CLOEXEC) < 0) goto fail;
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 4; fd < (max > 0 && max < 65536 ? max : 65536); fd++) close((int)fd);
    }
    execve(argv[0], argv, envp);
fail:
    err = errno;
    write_all(pipefd, &err, sizeof(err));
    _exit(127);
}

/* Long: the double fork with its error pipe must stay in one function to
 * be read as the protocol it is. */
static int lrt_spawn(void *impl, const rt_spawn_spec *sp, pid_t *pid_out, serr *e) {
    lrt *L = impl;
    if (sp->unit == NULL || !unit_ok(sp->unit))
        return serr_set(e, SE_INVAL, "runtime: bad unit name");
    if (sp->argv == NULL || sp->argv[0] == NULL || sp->argv[0][0] != '/')
        return serr_set(e, SE_INVAL, "runtime: %s: program must be an absolute path", sp->unit);
    if (access(sp->argv[0], X_OK) != 0)
        return serr_set(e, SE_INVAL, "runtime: %s: %s: %s", sp->unit, sp->argv[0],
                        strerror(errno));

    /* The environment: ours without old markers (unless env_clear: a
     * tenant's pod must not see stampd's secrets), the spec's, the markers. */
    char unit_entry[RT_UNIT_MAX + 16];
    /* unit_ok bounds the unit below RT_UNIT_MAX: it always fits. */
    int un = snprintf(unit_entry, sizeof(unit_entry), "%s%s", UNIT_VAR, sp->unit);
    assert(un > 0 && un < (int)sizeof(unit_entry));
    (void)un;
    char *envp[ENV_MAX + 1];
    int ne = 0;
    for (char **ev = environ; ev && *ev && ne < ENV_MAX - 64; ev++) {
        if (is_marker(*ev)) continue;
        /* Even then a sanitizer build's options, so that it reports alike. */
        if (!sp->env_clear || str_has_prefix(*ev, "ASAN_OPTIONS=") ||
            str_has_prefix(*ev, "UBSAN_OPTIONS=") || str_has_prefix(*ev, "LSAN_OPTIONS="))
            envp[ne++] = *ev;
    }
    for (const char *const *ev = sp->env; ev && *ev; ev++) {
        if (ne >= ENV_MAX - 2) return serr_set(e, SE_LIMIT, "runtime: too many variables");
        if (!is_marker(*ev)) envp[ne++] = (char *)*ev;
    }
    envp[ne++] = L->owner_entry;
    envp[ne++] = unit_entry;
    envp[ne] = NULL;

    int logfd = open(sp->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (logfd < 0)
        return serr_set(e, SE_IO, "runtime: open log %s: %s", sp->log_path, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int pfd[2];
    if (nullfd < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
        int err = errno;
        close(logfd);
        if (nullfd >= 0) close(nullfd);
        return serr_set(e, SE_IO, "runtime: %s", strerror(err));
    }
    pid_t mid = fork();
    if (mid < 0) {
        int err = errno;
        close(logfd);
        close(nullfd);
        close(pfd[0]);
        close(pfd[1]);
        return serr_set(e, SE_IO, "runtime: fork: %s", strerror(err));
    }
    if (mid == 0) {
        close(pfd[0]);
        setsid();
        pid_t g = fork();
        if (g == 0) child_exec(sp, (char *const *)sp->argv, envp, nullfd, logfd, pfd[1]);
        write_all(pfd[1], &g, sizeof(g));
        _exit(g < 0 ? 1 : 0);
    }
    close(pfd[1]);
    close(logfd);
    close(nullfd);
    int st;
    while (waitpid(mid, &st, 0) < 0 && errno == EINTR) {
    }
    unsigned char buf[sizeof(pid_t) + sizeof(int)];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t r = read(pfd[0], buf + got, sizeof(buf) - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(pfd[0]);
    lrt_invalidate(L);
    pid_t g = -1;
    if (got >= sizeof(pid_t)) memcpy(&g, buf, sizeof(g));
    if (g <= 0) return serr_set(e, SE_IO, "runtime: %s: fork failed", sp->unit);
    if (got == sizeof(buf)) {
        int err;
        memcpy(&err, buf + sizeof(pid_t), sizeof(err));
        return serr_set(e, SE_IO, "runtime: %s: exec %s: %s", sp->unit, sp->argv[0],
                        strerror(err));
    }
    *pid_out = g;
    return 0;
}

/* State letter and start time from /proc/<pid>/stat. */
static int read_stat(pid_t pid, char *state, pid_t *pgrp, int64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces and parens */
    if (p == NULL || p[1] != ' ') return -1;
    p += 2;
    *state = *p;
    /* Field 3 is the state, 5 the process group, 22 the start time. */
    int field = 3;
    char *end;
    while (*p && field < 22) {
        if (*p++ != ' ') continue;
        field++;
        if (field == 5 && pgrp) *pgrp = (pid_t)strtoll(p, &end, 10);
    }
    if (field != 22) return -1;
    long long v = strtoll(p, &end, 10);
    if (end == p) return -1;
    *start = v;
    return 0;
}

static bool proc_alive(pid_t pid) {
    char state;
    int64_t start;
    if (pid <= 0 || read_stat(pid, &state, NULL, &start) != 0) return false;
    return state != 'Z' && state != 'X' && state != 'x';
}

/* If pid carries our owner marker, copy its unit and return 1. */
static size_t read_environ(pid_t pid, char *buf, bool *opened) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *opened = fd >= 0;
    if (fd < 0) return 0;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, ENVIRON_READ_MAX - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (got >= ENVIRON_READ_MAX - 1) break;
    }
    close(fd);
    return got;
}

/* A user process (not a kernel thread, not a zombie): its environment can
 * only read empty while it is in the middle of an execve. */
static bool user_process(pid_t pid) {
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_file(path, 4096, &text, NULL, NULL) != 0) return false;
    const char *p = strrchr(text, ')');
    char state = 'Z';
    int ppid = 0;
    bool user = p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && state != 'Z' && state != 'X' &&
                ppid != 0 && ppid != 2;
    free(text);
    return user;
}

static int owned_unit(const lrt *L, pid_t pid, char *unit, size_t len, char *buf) {
    bool opened;
    size_t got = read_environ(pid, buf, &opened);
    /* A unit that re-execs itself (sh -c '... exec prog') shows an empty
     * environment for a moment; missing it would let the reconciler start
     * a duplicate, so look again for up to 20 ms. */
    for (int i = 0; opened && got == 0 && i < 20 && user_process(pid); i++) {
        sleep_ms(1);
        got = read_environ(pid, buf, &opened);
    }
    if (!opened) return 0;
    buf[got] = '\0';
    bool mine = false;
    const char *u = NULL;
    for (size_t off = 0; off < got;) {
        const char *kv = buf + off;
        size_t n = strnlen(kv, got - off);
        if (strcmp(kv, L->owner_entry) == 0) mine = true;
        else if (str_has_prefix(kv, UNIT_VAR)) u = kv + strlen(UNIT_VAR);
        off += n + 1;
    }
    if (!mine || u == NULL) return 0;
    return str_copy(unit, len, u) ? 1 : 0;
}

/* The real uid of pid, or -1. */
static long proc_uid(pid_t pid) {
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (read_file(path, 8192, &text, NULL, NULL) != 0) return -1;
    const char *u = strstr(text, "\nUid:");
    long uid = -1;
    if (u) uid = strtol(u + 5, NULL, 10);
    free(text);
    return uid;
}

/* Fills the cache; the caller holds L->mu. */
static int rescan(lrt *L, serr *e) {
    assert(smutex_held(&L->mu));
    DIR *d = opendir("/proc");
    if (d == NULL) return serr_set(e, SE_IO, "runtime: opendir /proc: %s", strerror(errno));
    char *buf = malloc(ENVIRON_READ_MAX);
    if (buf == NULL) {
        closedir(d);
        return serr_set(e, SE_NOMEM, "out of memory");
    }
    int n = 0;
    pid_t self = getpid();
    uid_t euid = geteuid();
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < RT_MAX_PROCS) {
        int64_t v;
        if (parse_i64(de->d_name, 1, 1 << 30, &v) != 0) continue;
        pid_t pid = (pid_t)v;
        if (pid == self) continue;
        rt_proc *p = &L->cache[n];
        if (!owned_unit(L, pid, p->unit, sizeof(p->unit), buf)) continue;
        /* Only our own uid's processes are units: a pod running as the pod
         * user could otherwise forge the markers of any unit. */
        if (proc_uid(pid) != (long)euid) continue;
        char state;
        pid_t pgrp = 0;
        if (read_stat(pid, &state, &pgrp, &p->start_ticks) != 0) continue;
        if (state == 'Z' || state == 'X' || state == 'x') continue;
        /* Children of a unit's process inherit its markers; only the
         * group leader we started is the unit. */
        if (pgrp != pid) continue;
        p->pid = pid;
        n++;
    }
    closedir(d);
    free(buf);
    L->cache_n = n;
    L->cache_at = mono_ms();
    return 0;
}

static int lrt_scan(void *impl, const char *prefix, bool fresh, rt_proc *out, int max, serr *e) {
    lrt *L = impl;
    smutex_lock(&L->mu);
    int rc = 0;
    if (fresh || L->cache_n < 0 || mono_ms() - L->cache_at > LRT_SCAN_TTL_MS) rc = rescan(L, e);
    int count = 0;
    if (rc == 0) {
        assert(L->cache_n >= 0 && L->cache_n <= RT_MAX_PROCS);
        for (int i = 0; i < L->cache_n; i++) {
            if (prefix && *prefix && !str_has_prefix(L->cache[i].unit, prefix)) continue;
            if (count < max) out[count] = L->cache[i];
            count++;
        }
    }
    smutex_unlock(&L->mu);
    return rc ? rc : count;
}

static bool lrt_alive(void *impl, pid_t pid) {
    (void)impl;
    return proc_alive(pid);
}

static int lrt_stop(void *impl, pid_t pid, int grace_ms, serr *e) {
    lrt *L = impl;
    if (pid <= 1) return serr_set(e, SE_INVAL, "runtime: bad pid %d", (int)pid);
    if (!proc_alive(pid)) return 0;
    /* Every process we start leads its own group (setsid). */
    pid_t pgid = getpgid(pid);
    bool group = pgid == pid;
    if ((group ? kill(-pid, SIGTERM) : kill(pid, SIGTERM)) != 0 && errno == ESRCH) return 0;
    int64_t until = mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    while (mono_ms() < until) {
        if (!proc_alive(pid)) {
            if (group) kill(-pid, SIGKILL); /* stragglers left in its group */
            lrt_invalidate(L);
            return 0;
        }
        sleep_ms(20);
    }
    if (group) kill(-pid, SIGKILL);
    else kill(pid, SIGKILL);
    for (int i = 0; i < 10 && proc_alive(pid); i++) sleep_ms(20);
    lrt_invalidate(L);
    if (proc_alive(pid)) return serr_set(e, SE_TIMEOUT, "runtime: pid %d survived SIGKILL", (int)pid);
    return 0;
}

const runtime_ops rt_local_ops = {
    .name = "local",
    .open = lrt_open,
    .close = lrt_close,
    .spawn = lrt_spawn,
    .scan = lrt_scan,
    .stop = lrt_stop,
    .alive = lrt_alive,
    .invalidate = lrt_invalidate,
};
