/*
 * stamp-run - run one command for stampd, optionally confined, and leave its
 * result in a file, atomically, before exiting.
 *
 *   stamp-run --rc FILE [--timeout-ms N] [confinement...] -- PROG [ARGS...]
 *
 * stampd starts this detached (its own session, output already sent to the
 * step's log) and may die and restart while the command runs.  The result
 * file is how a later stampd learns that the run ended and how: it is
 * written to FILE.tmp, fsynced, and renamed, so it is either absent or
 * complete.  The command runs in its own process group, so a timeout (or a
 * SIGTERM to stamp-run) reaches everything it started.
 *
 * Confinement (a tenant's pod; stampd passes all of these, exec steps none):
 *   --log FILE --log-max N   the command's stdout+stderr go through a pipe
 *                            into FILE, capped at N bytes (+ a marker line):
 *                            head, "[stamp: D bytes of output cut here]",
 *                            tail; D is in the result as logBytesDropped and
 *                            in FILE.dropped while it runs
 *   --env-file FILE          the command's environment is exactly FILE's
 *                            NUL-separated K=V entries ...
 *   --env-keep NAME          ... plus these variables of stamp-run's own
 *   --cwd DIR                working directory
 *   --user NAME              run as NAME (stamp-run must be root): groups
 *                            dropped, gid then uid set, all verified
 *   --rlimit NAME=N          as, nproc, nofile, cpu (seconds), fsize, core
 *   --allow-rx|--allow-ro|--allow-rw PATH
 *                            Landlock: the command sees only these paths
 *                            (rx: read+execute, ro: read, rw: read, write,
 *                            create and remove, but never symlinks, devices
 *                            or moves across directories)
 *   --landlock-optional      run without Landlock if the kernel has none
 *                            (stampd passes it only with --user)
 *   --no-unix-sockets        socket(AF_UNIX) fails (seccomp): Landlock does
 *                            not cover connecting to a socket by its path,
 *                            and a pod running as stampd's user could
 *                            otherwise drive e.g. HAProxy's admin socket
 *   --reap-all               stamp-run is the subreaper of everything the
 *                            command starts: a process that left its group
 *                            (setsid, double fork) still ends with it
 *   --disk-free DIR=N        every 200 ms: stop the command when DIR's
 *                            filesystem has less than N bytes free
 *   --disk-usage DIR --disk-max N
 *                            every second: stop it when the space used
 *                            under the DIRs passes N
 * A stop for disk is SIGKILL to the group, a line in the log, and
 * "stoppedBy" in the result.
 *
 * stamp-run is single-threaded, so its child may do anything before exec.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/confine.h"

#define KILL_AFTER_MS 2000
#define DRAIN_AFTER_EXIT_MS 1000
#define MAX_PATHS 64
#define MAX_ENV 256
#define ENV_FILE_MAX (256 * 1024)
#define READ_CHUNK (64 * 1024)
#define DU_ENTRIES_MAX 200000L

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define LANDLOCK_NET_BIND_TCP (1ULL << 0) /* LANDLOCK_ACCESS_NET_BIND_TCP, ABI 4 */
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

#define FS_RO (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_RX (FS_RO | LANDLOCK_ACCESS_FS_EXECUTE)
#define FS_RW                                                                            \
    (FS_RO | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |              \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR |                          \
     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR)
#define FS_FILE_ONLY                                                                     \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |                         \
     LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)

static volatile sig_atomic_t got_term;

static void on_term(int sig) {
    (void)sig;
    got_term = 1;
}

static int64_t clock_ms(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static _Noreturn void usage(void) {
    fprintf(stderr, "usage: stamp-run --rc FILE [--timeout-ms N] [--log FILE --log-max N]\n"
                    "  [--env-file FILE] [--env-keep NAME] [--cwd DIR] [--user NAME]\n"
                    "  [--rlimit NAME=N] [--allow-rx|--allow-ro|--allow-rw PATH]\n"
                    "  [--landlock-optional] [--reap-all] [--no-unix-sockets] [--disk-free DIR=N]\n"
                    "  [--disk-usage DIR --disk-max N]\n"
                    "  -- PROG [ARGS...]\n");
    exit(2);
}

static long long num_arg(const char *opt, const char *s, long long min) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "stamp-run: bad %s %s\n", opt, s);
        usage();
    }
    return v;
}

/* FILE.tmp, opened by open_slot: the result's blocks are allocated when the
 * command starts, so that a command that fills the disk cannot keep its
 * result from being written. */
static int slot_fd = -1;

static int open_slot(const char *path, int *fd) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return -1;
    /* The directory may be writable by the command (a pod's is not, but an
     * exec step's may be): never follow or reuse what is at FILE.tmp. */
    unlink(tmp);
    *fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    return *fd < 0 ? -1 : 0;
}

/* Paths are used whole or not at all: a cut one names another file. */
static int write_result_fd(const char *path, int fd, const char *text) {
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
        snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = pwrite(fd, text + off, n - off, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (ftruncate(fd, (off_t)n) != 0 || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else memcpy(dir, ".", 2);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int write_result(const char *path, const char *text) {
    int fd;
    if (open_slot(path, &fd) != 0) return -1;
    return write_result_fd(path, fd, text);
}

/* ---- options ---- */
typedef struct lrule {
    const char *path;
    uint64_t access;
} lrule;

typedef struct rlim_opt {
    int resource;
    rlim_t value;
} rlim_opt;

static struct opts {
    const char *rc_path, *log_path, *env_file, *cwd, *user;
    long long timeout_ms, log_max, disk_max;
    const char *env_keep[16];
    int n_keep;
    rlim_opt rlims[8];
    int n_rlims;
    lrule rules[MAX_PATHS];
    int n_rules;
    bool landlock_optional, reap_all, no_unix;
    const char *free_dir;
    long long free_min;
    const char *usage_dirs[MAX_PATHS];
    int n_usage;
} o;

static void parse_rlimit(const char *s) {
    static const struct {
        const char *name;
        int res;
    } names[] = {{"as", RLIMIT_AS},     {"nproc", RLIMIT_NPROC}, {"nofile", RLIMIT_NOFILE},
                 {"cpu", RLIMIT_CPU},   {"fsize", RLIMIT_FSIZE}, {"core", RLIMIT_CORE}};
    const char *eq = strchr(s, '=');
    if (eq == NULL || o.n_rlims >= 8) usage();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == (size_t)(eq - s) && strncmp(s, names[i].name, (size_t)(eq - s)) == 0) {
            o.rlims[o.n_rlims].resource = names[i].res;
            o.rlims[o.n_rlims].value = (rlim_t)num_arg("--rlimit", eq + 1, 0);
            o.n_rlims++;
            return;
        }
    }
    fprintf(stderr, "stamp-run: unknown rlimit %s\n", s);
    usage();
}

static void add_rule(const char *path, uint64_t access) {
    if (o.n_rules >= MAX_PATHS) usage();
    o.rules[o.n_rules].path = path;
    o.rules[o.n_rules].access = access;
    o.n_rules++;
}

/* Returns the index of the command (after "--"). */
static int parse_args(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--") == 0) return i + 1 < argc ? i + 1 : (usage(), 0);
        if (strcmp(a, "--landlock-optional") == 0) {
            o.landlock_optional = true;
            continue;
        }
        if (strcmp(a, "--reap-all") == 0) {
            o.reap_all = true;
            continue;
        }
        if (strcmp(a, "--no-unix-sockets") == 0) {
            o.no_unix = true;
            continue;
        }
        if (!has) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--rc") == 0) o.rc_path = v;
        else if (strcmp(a, "--timeout-ms") == 0) o.timeout_ms = num_arg(a, v, 0);
        else if (strcmp(a, "--log") == 0) o.log_path = v;
        else if (strcmp(a, "--log-max") == 0) o.log_max = num_arg(a, v, 2);
        else if (strcmp(a, "--env-file") == 0) o.env_file = v;
        else if (strcmp(a, "--env-keep") == 0) {
            if (o.n_keep >= 16) usage();
            o.env_keep[o.n_keep++] = v;
        } else if (strcmp(a, "--cwd") == 0) o.cwd = v;
        else if (strcmp(a, "--user") == 0) o.user = v;
        else if (strcmp(a, "--rlimit") == 0) parse_rlimit(v);
        else if (strcmp(a, "--allow-rx") == 0) add_rule(v, FS_RX);
        else if (strcmp(a, "--allow-ro") == 0) add_rule(v, FS_RO);
        else if (strcmp(a, "--allow-rw") == 0) add_rule(v, FS_RW);
        else if (strcmp(a, "--disk-free") == 0) {
            const char *eq = strrchr(v, '=');
            if (eq == NULL) usage();
            static char dir[PATH_MAX];
            if ((size_t)(eq - v) >= sizeof(dir)) usage();
            memcpy(dir, v, (size_t)(eq - v));
            dir[eq - v] = '\0';
            o.free_dir = dir;
            o.free_min = num_arg(a, eq + 1, 0);
        } else if (strcmp(a, "--disk-usage") == 0) {
            if (o.n_usage >= MAX_PATHS) usage();
            o.usage_dirs[o.n_usage++] = v;
        } else if (strcmp(a, "--disk-max") == 0) o.disk_max = num_arg(a, v, 1);
        else {
            fprintf(stderr, "stamp-run: unknown argument %s\n", a);
            usage();
        }
    }
    usage();
}

/* ---- the command's environment ---- */
static char *env_buf; /* the env file's text; entries point into it */
static int env_own_from; /* entries from here on were malloc'd */

static void free_env(char **env) {
    if (env == NULL) return;
    for (int k = env_own_from; env[k]; k++) free(env[k]);
    free(env);
    free(env_buf);
}

static char **build_env(void) {
    char **env = calloc(MAX_ENV + 1, sizeof(char *));
    if (env == NULL) return NULL;
    int n = 0;
    if (o.env_file) {
        int fd = open(o.env_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "stamp-run: open %s: %s\n", o.env_file, strerror(errno));
            free(env);
            return NULL;
        }
        char *buf = malloc(ENV_FILE_MAX + 1);
        size_t got = 0;
        while (buf && got < ENV_FILE_MAX) {
            ssize_t r = read(fd, buf + got, ENV_FILE_MAX - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fd);
        if (buf == NULL) {
            free(env);
            return NULL;
        }
        buf[got] = '\0';
        env_buf = buf;
        for (size_t off = 0; off < got && n < MAX_ENV - 16;) {
            size_t len = strnlen(buf + off, got - off);
            if (len > 0 && strchr(buf + off, '=')) env[n++] = buf + off;
            off += len + 1;
        }
    }
    env_own_from = n;
    for (int k = 0; k < o.n_keep; k++) {
        const char *v = getenv(o.env_keep[k]);
        if (v == NULL) continue;
        size_t len = strlen(o.env_keep[k]) + strlen(v) + 2;
        char *kv = malloc(len);
        if (kv == NULL) continue;
        /* len was counted from the two strings: it always fits. */
        if (snprintf(kv, len, "%s=%s", o.env_keep[k], v) != (int)len - 1) {
            free(kv);
            continue;
        }
        env[n++] = kv;
    }
    env[n] = NULL;
    return env;
}

/* ---- Landlock ---- */
struct ruleset_attr {
    uint64_t handled_access_fs, handled_access_net, scoped;
};

/* The ruleset fd, -1 when no rule was asked for; -2 on a fatal error. */
static int build_ruleset(void) {
    if (o.n_rules == 0) return -1;
    int abi = confine_landlock_abi();
    if (abi < 1) {
        if (o.landlock_optional) {
            fprintf(stderr, "stamp-run: WARNING: Landlock is unavailable; running without a "
                            "filesystem sandbox (separate user only)\n");
            return -1;
        }
        fprintf(stderr, "stamp-run: Landlock is unavailable and the command may not run "
                        "unconfined\n");
        return -2;
    }
    uint64_t handled = confine_landlock_fs_mask(abi);
    struct ruleset_attr attr = {.handled_access_fs = handled};
    size_t size = sizeof(uint64_t);
    if (abi >= 4) {
        /* No TCP port may be bound (no rule allows one): a pod squatting on
         * stampd's API port while stampd restarts would be handed the
         * operator's token by stampctl, and one holding the port range
         * would stop every deployment.  Batch pods serve nothing. */
        attr.handled_access_net = LANDLOCK_NET_BIND_TCP;
        size = 2 * sizeof(uint64_t);
    } else {
        fprintf(stderr, "stamp-run: WARNING: Landlock ABI %d cannot forbid binding TCP ports "
                        "(needs 4, Linux 6.7)\n", abi);
    }
    if (abi >= 6) {
        /* Signals and abstract sockets only within the sandbox: a pod that
         * runs as stampd's user must not kill stampd or its other units. */
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
        size = sizeof(attr);
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0) {
        fprintf(stderr, "stamp-run: landlock_create_ruleset: %s\n", strerror(errno));
        return -2;
    }
    for (int i = 0; i < o.n_rules; i++) {
        int fd = open(o.rules[i].path, O_PATH | O_CLOEXEC);
        if (fd < 0) continue; /* e.g. no /lib64 on this system */
        struct stat st;
        uint64_t access = o.rules[i].access & handled;
        if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) access &= FS_FILE_ONLY;
        struct landlock_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
        if (access && syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0) {
            fprintf(stderr, "stamp-run: landlock_add_rule %s: %s\n", o.rules[i].path,
                    strerror(errno));
            close(fd);
            close(rs);
            return -2;
        }
        close(fd);
    }
    return rs;
}

/* ---- seccomp: no AF_UNIX sockets ---- */
#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

/* Needs no_new_privs.  A syscall of another ABI (32-bit, x32) fails
 * outright: it could reach socket() by another number. */
static int deny_unix_sockets(void) {
#ifdef SECCOMP_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1), /* x32 */
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
#endif
        /* io_uring makes sockets (IORING_OP_SOCKET) and more without the
         * system calls this filter sees: none for pods. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_enter, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_register, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 3),
        /* args[0], low 32 bits (little endian): the domain */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* ---- the child ---- */
static _Noreturn void child_fail(const char *what) {
    fprintf(stderr, "stamp-run: %s: %s\n", what, strerror(errno));
    _exit(126);
}

static _Noreturn void run_child(char **argv, int outfd, char **env, int ruleset, uid_t uid,
                                gid_t gid, pid_t parent) {
    setpgid(0, 0);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (outfd >= 0 && (dup2(outfd, 1) < 0 || dup2(outfd, 2) < 0)) _exit(126);
    if (o.cwd && chdir(o.cwd) != 0) child_fail("chdir to the working directory");
    for (int k = 0; k < o.n_rlims; k++) {
        struct rlimit rl = {o.rlims[k].value, o.rlims[k].value};
        if (setrlimit(o.rlims[k].resource, &rl) != 0) child_fail("setrlimit");
    }
    if ((o.user || ruleset >= 0 || o.no_unix) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail("prctl(NO_NEW_PRIVS)");
    if (o.user) {
        if (setgroups(0, NULL) != 0) child_fail("setgroups");
        if (setgid(gid) != 0) child_fail("setgid");
        if (setuid(uid) != 0) child_fail("setuid");
        /* Verify rather than trust: every id changed and no way back. */
        if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid ||
            getgroups(0, NULL) != 0 || (uid != 0 && setuid(0) == 0)) {
            fprintf(stderr, "stamp-run: could not drop privileges to %s\n", o.user);
            _exit(126);
        }
    }
    if (ruleset >= 0) {
        if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
            child_fail("landlock_restrict_self");
        close(ruleset);
    }
    if (o.no_unix && deny_unix_sockets() != 0) child_fail("seccomp");
    /* If stamp-run dies (kill -9), the command goes with it.  Set after the
     * uid change, which clears it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(126);
    if (env) execvpe(argv[0], argv, env);
    else execvp(argv[0], argv);
    fprintf(stderr, "stamp-run: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* ---- output ---- */
static logcap lc;
static int log_fd = -1;
static uint64_t dropped_written;

/* A line from stamp-run itself about the command: into its log. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    char buf[512]; /* a line for people reading the log: cut when longer */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n >= sizeof(buf) ? sizeof(buf) - 1 : (size_t)n;
    if (log_fd >= 0) logcap_write(&lc, buf, len);
    else fputs(buf, stderr);
}

static void flush_log(void) {
    if (log_fd < 0) return;
    logcap_flush(&lc);
    uint64_t d = logcap_dropped(&lc);
    if (d != dropped_written) {
        char path[PATH_MAX], text[32]; /* text: any %llu fits */
        if (snprintf(path, sizeof(path), "%s.dropped", o.log_path) >= (int)sizeof(path))
            return; /* no such file can be named; the count is in the result too */
        snprintf(text, sizeof(text), "%llu\n", (unsigned long long)d);
        if (write_result(path, text) == 0) dropped_written = d;
    }
}

/* Reads what the pipe holds now; false at end of file. */
static bool pump(int fd, char *buf) {
    for (;;) {
        ssize_t r = read(fd, buf, READ_CHUNK);
        if (r > 0) {
            logcap_write(&lc, buf, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        return r < 0; /* EAGAIN: open, nothing now; 0: end of file */
    }
}

/* ---- disk ---- */
static int64_t free_bytes(const char *dir) { return confine_free_bytes(dir); }

/* A namespace with more entries than the walk may look at is over any
 * budget (INT64_MAX): what the walk cannot see, it cannot vouch for. */
static int64_t used_bytes(void) {
    int64_t b = 0;
    long budget = DU_ENTRIES_MAX;
    for (int k = 0; k < o.n_usage; k++)
        if (confine_du(o.usage_dirs[k], &b, &budget) != 0) return INT64_MAX;
    return b;
}

/* ---- the command's processes ---- */
static pid_t child;
static int child_status;
static bool child_done;

/* Reaps whatever ended (with --reap-all, orphans come to us too). */
static void reap(void) {
    int st;
    pid_t w;
    while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
        if (w == child) {
            child_status = st;
            child_done = true;
        }
    }
}

/* SIGKILL to the command's group and, with --reap-all, to every process
 * that is our child now (orphans that left the group were re-parented to
 * us) and to its group. */
static void kill_all(void) {
    kill(-child, SIGKILL);
    if (!o.reap_all) return;
    pid_t self = getpid();
    DIR *d = opendir("/proc");
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end, path[64], buf[512]; /* path: "/proc/" and a long always fit */
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 1 || pid == self) continue;
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *p = strrchr(buf, ')'), state;
        long ppid;
        if (p && sscanf(p + 1, " %c %ld", &state, &ppid) == 2 && ppid == self) {
            kill(-(pid_t)pid, SIGKILL);
            kill((pid_t)pid, SIGKILL);
        }
    }
    closedir(d);
}

/* After the command: nothing it started may outlive it.  Bounded. */
static void kill_rest(void) {
    for (int round = 0; round < 100; round++) {
        kill_all();
        reap();
        if (!o.reap_all) return;
        if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) return;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* --user: its uid and gid, or a message and -1 (no such user, not root). */
static int lookup_user(uid_t *uid, gid_t *gid) {
    struct passwd pw, *res = NULL;
    long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t bl = sz > 0 && sz < 65536 ? (size_t)sz : 16384;
    char *pbuf = malloc(bl);
    if (pbuf == NULL || getpwnam_r(o.user, &pw, pbuf, bl, &res) != 0 || res == NULL) {
        fprintf(stderr, "stamp-run: user %s does not exist\n", o.user);
        free(pbuf);
        return -1;
    }
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    free(pbuf);
    if (geteuid() != 0) {
        fprintf(stderr, "stamp-run: --user needs root\n");
        return -1;
    }
    return 0;
}

/* The disk budgets, each at its own pace: what stopped the command (after
 * killing it and saying why in its log), or NULL. */
static const char *disk_check(int64_t now, int64_t *next_free, int64_t *next_usage) {
    if (o.free_dir && now >= *next_free) {
        *next_free = now + 200;
        int64_t f = free_bytes(o.free_dir);
        if (f < o.free_min) {
            kill_all();
            note("\n[stamp: stopped: the data filesystem has %lld bytes free, under the "
                 "reserve of %lld (disk-reserve)]\n", (long long)f, o.free_min);
            return "disk-reserve";
        }
    }
    if (o.n_usage && o.disk_max > 0 && now >= *next_usage) {
        *next_usage = now + 1000;
        int64_t u = used_bytes();
        if (u > o.disk_max) {
            kill_all();
            note("\n[stamp: stopped: the namespace uses %lld bytes on disk, over its budget "
                 "of %lld (ns-disk-max)]\n", (long long)u, o.disk_max);
            return "ns-disk-max";
        }
    }
    return NULL;
}

/* The result is JSON stampd parses: written whole or not at all (-1).  It
 * always fits: numbers and one of our own stoppedBy words. */
static int result_json(char *res, size_t len, int code, int sig, bool timed_out, int64_t dur,
                       int64_t started, int64_t ended, unsigned long long dropped,
                       const char *stopped_by) {
    char by[64] = "";
    int n = stopped_by ? snprintf(by, sizeof(by), ",\"stoppedBy\":\"%s\"", stopped_by) : 0;
    if (n < 0 || (size_t)n >= sizeof(by)) return -1;
    n = snprintf(res, len,
                 "{\"exit\":%d,\"signal\":%d,\"timedOut\":%s,\"durationMs\":%lld,"
                 "\"startedMs\":%lld,\"endedMs\":%lld,\"logBytesDropped\":%llu%s}\n",
                 code, sig, timed_out ? "true" : "false", (long long)dur, (long long)started,
                 (long long)ended, dropped, by);
    return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* Long: the order of confinement matters (identity, limits, Landlock,
 * seccomp, exec) and reads best as one sequence. */
int main(int argc, char **argv) {
    int i = parse_args(argc, argv);
    if (o.rc_path == NULL) usage();
    if (o.log_path && o.log_max <= 0) usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    uid_t uid = 0;
    gid_t gid = 0;
    if (o.user && lookup_user(&uid, &gid) != 0) return 126;
    char **env = NULL;
    if (o.env_file || o.n_keep) {
        if ((env = build_env()) == NULL) return 126;
    }
    int ruleset = build_ruleset();
    if (ruleset == -2) return 126;

    int pfd[2] = {-1, -1};
    char *buf = NULL;
    if (o.log_path) {
        log_fd = open(o.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
        buf = malloc(READ_CHUNK);
        if (log_fd < 0 || buf == NULL || pipe2(pfd, O_CLOEXEC) != 0) {
            fprintf(stderr, "stamp-run: log %s: %s\n", o.log_path, strerror(errno));
            return 126;
        }
        logcap_init(&lc, log_fd, (uint64_t)o.log_max);
        fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    }

    if (open_slot(o.rc_path, &slot_fd) == 0 && posix_fallocate(slot_fd, 0, 4096) != 0) {
        /* No room even now: the result is tried again at the end. */
    }
    if (o.reap_all) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int64_t started = clock_ms(CLOCK_REALTIME), t0 = clock_ms(CLOCK_MONOTONIC);
    pid_t self = getpid();
    child = fork();
    if (child < 0) {
        fprintf(stderr, "stamp-run: fork: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0) run_child(argv + i, pfd[1], env, ruleset, uid, gid, self);
    setpgid(child, child); /* whichever of us runs first */
    if (pfd[1] >= 0) close(pfd[1]);
    if (ruleset >= 0) close(ruleset);

    bool timed_out = false, eof = pfd[0] < 0;
    const char *stopped_by = NULL;
    int64_t term_at = -1; /* when SIGTERM went to the group */
    int64_t next_flush = t0 + 1000, next_free = t0, next_usage = t0;
    for (;;) {
        reap();
        if (child_done) break;
        int64_t now = clock_ms(CLOCK_MONOTONIC);
        if (term_at < 0 && (got_term || (o.timeout_ms > 0 && now - t0 >= o.timeout_ms))) {
            if (!got_term) {
                timed_out = true;
                note("stamp-run: timed out after %lldms; stopping the command\n", o.timeout_ms);
            }
            kill(-child, SIGTERM);
            term_at = now;
        } else if (term_at >= 0 && now - term_at >= KILL_AFTER_MS) {
            kill(-child, SIGKILL);
            term_at = now + 3600 * 1000LL; /* once */
        }
        if (!stopped_by) stopped_by = disk_check(now, &next_free, &next_usage);
        if (log_fd >= 0 && now >= next_flush) {
            next_flush = now + 1000;
            flush_log();
        }
        if (!eof) {
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            if (poll(&p, 1, 20) > 0) eof = !pump(pfd[0], buf);
        } else {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* Whatever the command left behind in its group (and, with --reap-all,
     * anywhere) goes with it. */
    kill_rest();
    /* What is still in the pipe; bounded, since a process that left the
     * group may hold it open. */
    for (int64_t until = clock_ms(CLOCK_MONOTONIC) + DRAIN_AFTER_EXIT_MS;
         !eof && clock_ms(CLOCK_MONOTONIC) < until;) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 50) > 0) eof = !pump(pfd[0], buf);
    }

    int code, sig = 0, status = child_status;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
    } else {
        sig = WTERMSIG(status);
        code = 128 + sig;
    }
    if (timed_out && code == 0) code = 124; /* a timed-out run never counts as success */
    if (stopped_by && code == 0) code = 137;
    flush_log();
    unsigned long long dropped = 0;
    if (log_fd >= 0) {
        dropped = (unsigned long long)logcap_dropped(&lc);
        fsync(log_fd);
        close(log_fd);
        logcap_done(&lc);
    }
    int64_t ended = clock_ms(CLOCK_REALTIME), dur = clock_ms(CLOCK_MONOTONIC) - t0;
    free(buf);
    free_env(env);
    char res[512];
    if (result_json(res, sizeof(res), code, sig, timed_out, dur, started, ended, dropped,
                    stopped_by) != 0) {
        fprintf(stderr, "stamp-run: the result does not fit %zu bytes\n", sizeof(res));
        return 1;
    }
    if ((slot_fd >= 0 ? write_result_fd(o.rc_path, slot_fd, res) : -1) != 0 &&
        write_result(o.rc_path, res) != 0) {
        fprintf(stderr, "stamp-run: writing %s: %s\n", o.rc_path, strerror(errno));
        return 1;
    }
    return code;
}
