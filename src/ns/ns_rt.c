/*
 * ns_rt.c - namespaces on the local runtime (see ns.h for the layout).
 * Pods are started through stamp-run, so a pod that ends leaves its exit
 * status in pods/{pod}/rc even if stampd was down at the time; a running pod
 * is found by rt_scan under the unit "ns/{ns}/{pod}".
 *
 * Confinement (DESIGN.md, "Tenancy and confinement"): a pod is a tenant's
 * code, so stamp-run applies, in the child before exec, everything
 * pod_confine() lists: an environment built from scratch (the tenant's
 * variables checked against confine.c's denylist), the pod user when stampd
 * is root, rlimits, a Landlock view of the system's programs and libraries
 * plus the pod's own home, annotations and volumes, and a watch on disk
 * space.  The pod's output goes through stamp-run into pods/{pod}/log,
 * capped at pod-log-max.  Layout of a pod's directory:
 *   spec.json env rc log log.dropped run.log   stampd's and stamp-run's
 *                                              files (the pod cannot write)
 *   home/          the pod's working directory and HOME (pod writes)
 *   annotations/   one file per key (pod writes)
 */
#include "ns/ns.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "runtime/runtime.h"
#include "util/confine.h"
#include "util/util.h"

#define MAX_ARGS 64
#define MAX_ENV 32
#define ARG_MAX_LEN 1024
#define ENV_NAME_MAX 64

int nsrt_dir(const ctl_ctx *c, const char *ns, const char *sub, char *buf, size_t len) {
    int n = sub ? snprintf(buf, len, "%s/namespaces/%s/%s", c->data_dir, ns, sub)
                : snprintf(buf, len, "%s/namespaces/%s", c->data_dir, ns);
    return n >= (int)len ? SE_INVAL : 0;
}

static int vol_dir(const ctl_ctx *c, const char *ns, const char *vol, char *buf, size_t len) {
    int n = vol ? snprintf(buf, len, "%s/volumes/%s/%s", c->data_dir, ns, vol)
                : snprintf(buf, len, "%s/volumes/%s", c->data_dir, ns);
    return n >= (int)len ? SE_INVAL : 0;
}

static int pod_dir(const ctl_ctx *c, const char *ns, const char *pod, const char *file, char *buf,
                   size_t len) {
    int n = file ? snprintf(buf, len, "%s/namespaces/%s/pods/%s/%s", c->data_dir, ns, pod, file)
                 : snprintf(buf, len, "%s/namespaces/%s/pods/%s", c->data_dir, ns, pod);
    return n >= (int)len ? SE_INVAL : 0;
}

int nsrt_create(ctl_ctx *c, const char *ns, serr *e) {
    char d[PATH_MAX];
    if (nsrt_dir(c, ns, "pods", d, sizeof(d))) return serr_set(e, SE_INVAL, "path too long");
    return mkdir_p(d, 0750, e);
}

static bool annotation_key_valid(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 63 || k[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '-' ||
              k[i] == '.'))
            return false;
    return true;
}

/* ---- the tenant's environment ----
 * A tenant's variables reach programs the operator chose (pod-command), so
 * no variable may turn into code or files those programs load: the dynamic
 * loader's, libc's (locale, iconv, malloc, tunables, resolver), shells'
 * (startup files, IFS, PATH) and interpreters' (module paths and options).
 * The variables stamp sets itself (PATH, HOME, LANG, TMPDIR, STAMP*) are
 * refused too, so a pod always sees the values stamp gave it.
 *
 *   entry       why
 *   LD_*        dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...
 *   DYLD_*      the same on other loaders
 *   GLIBC_*     GLIBC_TUNABLES
 *   MALLOC_*    glibc malloc debugging hooks
 *   GCONV*      GCONV_PATH: iconv modules are shared objects
 *   LC_*        a locale name with a '/' is a path to locale files
 *   STAMP*      stamp's own variables and the runtime's markers
 *   BASH_*      BASH_ENV (a file bash sources), BASH_LOADABLES_PATH, ...
 *   PYTHON*     PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, ...
 *   PERL5*      PERL5LIB, PERL5OPT, PERL5DB
 *   RUBY*       RUBYLIB, RUBYOPT
 *   NODE_*      NODE_OPTIONS (--require), NODE_PATH
 *   LUA_*       LUA_INIT runs code
 *   JAVA_TOOL*, _JAVA*, JDK_JAVA*   JVM options (-javaagent)
 *   OPENSSL_*   OPENSSL_CONF loads engines (shared objects)
 *   names: PATH HOME TMPDIR LANG LANGUAGE (stamp sets them), IFS ENV SHELL
 *   SHELLOPTS BASHOPTS PS4 CDPATH GLOBIGNORE PROMPT_COMMAND (shells),
 *   LOCPATH NLSPATH TZDIR GETCONF_DIR (libc data paths), HOSTALIASES
 *   RES_OPTIONS LOCALDOMAIN (resolver), PERLLIB PHPRC (interpreters).
 */
static const char *const env_prefixes[] = {
    "LD_",    "DYLD_", "GLIBC_", "MALLOC_", "GCONV",     "LC_",   "STAMP",    "BASH_",    "PYTHON",
    "PERL5",  "RUBY",  "NODE_",  "LUA_",    "JAVA_TOOL", "_JAVA", "JDK_JAVA", "OPENSSL_",
};
static const char *const env_names[] = {
    "PATH",      "HOME",       "TMPDIR",         "LANG",    "LANGUAGE", "IFS",
    "ENV",       "SHELL",      "SHELLOPTS",      "BASHOPTS", "PS4",     "CDPATH",
    "GLOBIGNORE", "PROMPT_COMMAND", "LOCPATH",   "NLSPATH", "TZDIR",    "GETCONF_DIR",
    "HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN", "PERLLIB", "PHPRC",
};

static bool env_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > ENV_NAME_MAX || (name[0] >= '0' && name[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

static const char *env_denied(const char *name) {
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        if (strcmp(name, env_names[i]) == 0) return env_names[i];
    for (size_t i = 0; i < sizeof(env_prefixes) / sizeof(env_prefixes[0]); i++) {
        size_t n = strlen(env_prefixes[i]);
        if (strncmp(name, env_prefixes[i], n) == 0) return env_prefixes[i];
    }
    return NULL;
}

int nsrt_env_check(const char *name, serr *e) {
    if (!env_name_valid(name))
        return serr_set(e, SE_INVAL, "env.%.64s: names are [A-Z_][A-Z0-9_]*, at most %d bytes",
                        name, ENV_NAME_MAX);
    const char *rule = env_denied(name);
    if (rule)
        return serr_set(e, SE_INVAL, "env.%s: not allowed (%s%s is stamp's or could load code)",
                        name, rule, strcmp(rule, name) == 0 ? "" : "*");
    return 0;
}

static int count_dir(const char *path) {
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- confinement ---- */

/* Who pods run as.  Root: the pod user (must exist).  Otherwise stampd's own
 * user, which needs Landlock to keep pods out of stampd's files. */
typedef struct pod_ident {
    bool switch_user;
    uid_t uid;
    gid_t gid;
    int landlock_abi;
} pod_ident;

static int pod_ident_get(const ctl_ctx *c, pod_ident *id, serr *e) {
    memset(id, 0, sizeof(*id));
    id->landlock_abi = confine_landlock_abi();
    if (geteuid() != 0) {
        if (id->landlock_abi < 1)
            return serr_set(e, SE_UNAVAIL, "pods are disabled: this kernel has no Landlock and "
                                           "stampd is not root, so pods cannot be confined");
        id->uid = geteuid();
        id->gid = getegid();
        return 0;
    }
    struct passwd pw, *res = NULL;
    char *buf = malloc(16384);
    if (buf == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    int err = getpwnam_r(c->cfg->pod_user, &pw, buf, 16384, &res);
    if (err == 0 && res != NULL) {
        id->uid = pw.pw_uid;
        id->gid = pw.pw_gid;
    }
    free(buf);
    if (res == NULL)
        return serr_set(e, SE_UNAVAIL, "pods are disabled: the pod user \"%s\" does not exist "
                                       "(pod-user; scripts/install-deps.sh creates stamp-pod)",
                        c->cfg->pod_user);
    if (id->uid == 0)
        return serr_set(e, SE_UNAVAIL, "pods are disabled: pod-user %s is root", c->cfg->pod_user);
    id->switch_user = true;
    return 0;
}

/* The first directory above path that the pod user cannot pass through
 * (into blocked), or 0 when all can be passed. */
static int closed_parent(const char *path, const pod_ident *id, char *blocked, size_t len) {
    char up[PATH_MAX];
    str_copy(up, sizeof(up), path);
    for (char *slash = strrchr(up, '/'); slash && slash != up; slash = strrchr(up, '/')) {
        *slash = '\0';
        struct stat st;
        if (stat(up, &st) == 0 && !(st.st_mode & S_IXOTH) &&
            !(st.st_gid == id->gid && (st.st_mode & S_IXGRP)) && st.st_uid != id->uid) {
            str_copy(blocked, len, up);
            return 1;
        }
    }
    return 0;
}

int nsrt_confine_init(ctl_ctx *c, char *msg, size_t len) {
    pod_ident id;
    serr e = {0};
    if (pod_ident_get(c, &id, &e)) {
        snprintf(msg, len, "%s", e.msg);
        return -1;
    }
    if (id.switch_user) {
        /* The pod user must be able to pass through the data directory to
         * reach its pods (no listing: 0711); the store, blobs and every
         * other file in it stay stampd's only.  Its parents are the
         * operator's: say which one is closed rather than change it. */
        chmod(c->data_dir, 0711);
        char blocked[PATH_MAX];
        if (closed_parent(c->data_dir, &id, blocked, sizeof(blocked))) {
            snprintf(msg, len, "pods run as %s but cannot reach the data directory: %s is "
                               "not passable for it (chmod o+x)", c->cfg->pod_user, blocked);
            return -1;
        }
        /* The programs pods run must be reachable too (a build tree in a
         * private directory is not). */
        char prog[PATH_MAX];
        const char *progs[2] = {c->cfg->pod_command, c->cfg->pipeline_command};
        for (int k = 0; k < 2; k++) {
            if (progs[k][0]) str_copy(prog, sizeof(prog), progs[k]);
            else snprintf(prog, sizeof(prog), "%s/%s", c->libexec, k == 0 ? "stamp-nsworker" : "stamp-pipeline");
            if (closed_parent(prog, &id, blocked, sizeof(blocked))) {
                snprintf(msg, len, "pods run as %s but cannot reach %s: %s is not passable for it "
                                   "(chmod o+x, or install stamp: make install)", c->cfg->pod_user, prog, blocked);
                return -1;
            }
        }
        if (id.landlock_abi < 1) {
            snprintf(msg, len, "pods run as %s (uid %d) WITHOUT a filesystem sandbox: this kernel "
                               "has no Landlock; pods of different tenants share that user",
                     c->cfg->pod_user, (int)id.uid);
            return 1;
        }
        snprintf(msg, len, "pods run as %s (uid %d), Landlock ABI %d, rlimits", c->cfg->pod_user,
                 (int)id.uid, id.landlock_abi);
        return 0;
    }
    snprintf(msg, len, "stampd is not root: pods run as stampd's own user, confined by Landlock "
                       "(ABI %d) and rlimits only; run stampd as root for a separate pod user",
             id.landlock_abi);
    return 1;
}

/* Space the namespace uses on disk: its directory and its volumes. */
static int64_t ns_usage(const ctl_ctx *c, const char *ns) {
    char d[PATH_MAX], v[PATH_MAX];
    int64_t bytes = 0;
    long budget = 200000;
    if (nsrt_dir(c, ns, NULL, d, sizeof(d)) == 0 && confine_du(d, &bytes, &budget) != 0)
        return INT64_MAX;
    if (vol_dir(c, ns, NULL, v, sizeof(v)) == 0 && confine_du(v, &bytes, &budget) != 0)
        return INT64_MAX;
    return bytes;
}

static int disk_check(const ctl_ctx *c, const char *ns, serr *e) {
    if (confine_free_bytes(c->data_dir) < c->cfg->disk_reserve)
        return serr_set(e, SE_LIMIT, "no pod can start now: the data filesystem is nearly full "
                                     "(less free space or inodes than disk-reserve)");
    int64_t used = ns_usage(c, ns);
    if (used > c->cfg->ns_disk_max)
        return used == INT64_MAX
                   ? serr_set(e, SE_LIMIT, "namespace %s holds more files than stamp counts "
                                           "(over its ns-disk-max budget)", ns)
                   : serr_set(e, SE_LIMIT, "namespace %s uses %lld bytes on disk, over its budget "
                                           "(ns-disk-max %lld)",
                              ns, (long long)used, (long long)c->cfg->ns_disk_max);
    return 0;
}

/* A directory the pod writes: owned by the pod user when there is one. */
static int pod_owned_dir(const char *path, const pod_ident *id, serr *e) {
    int rc = mkdir_p(path, id->switch_user ? 0700 : 0750, e);
    if (rc) return rc;
    if (id->switch_user && (lchown(path, id->uid, id->gid) != 0 || chmod(path, 0700) != 0))
        return serr_set(e, SE_IO, "chown: %s", strerror(errno));
    return 0;
}

/* stampd's directories on the way to a pod's: passable, not listable. */
static void passable(const pod_ident *id, const char *path) {
    if (id->switch_user) chmod(path, 0711);
}

/* The pipeline's work directory (stampd's own pods): its tag directories
 * and the files in them (bundle, config) become the pod user's. */
static void chown_work(const char *work, const pod_ident *id) {
    if (!id->switch_user) return;
    passable(id, work);
    DIR *d = opendir(work);
    if (d == NULL) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", work, de->d_name) >= (int)sizeof(p)) continue;
        lchown(p, id->uid, id->gid);
        DIR *sd = opendir(p);
        if (sd == NULL) continue;
        struct dirent *se;
        while ((se = readdir(sd)) != NULL) {
            char f[PATH_MAX];
            if (se->d_name[0] == '.') continue;
            if (snprintf(f, sizeof(f), "%s/%s", p, se->d_name) < (int)sizeof(f))
                lchown(f, id->uid, id->gid);
        }
        closedir(sd);
    }
    closedir(d);
}

/* argv for stamp-run: a small arena of option strings. */
typedef struct argbuf {
    const char *argv[MAX_ARGS + 96];
    int n;
    char store[48][PATH_MAX + 32];
    int ns;
} argbuf;

static void arg(argbuf *a, const char *s) {
    if (a->n < (int)(sizeof(a->argv) / sizeof(a->argv[0])) - 1) a->argv[a->n++] = s;
}

static void argf(argbuf *a, const char *opt, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void argf(argbuf *a, const char *opt, const char *fmt, ...) {
    if (a->ns >= 48) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->store[a->ns], sizeof(a->store[0]), fmt, ap);
    va_end(ap);
    arg(a, opt);
    arg(a, a->store[a->ns++]);
}

/* Read+execute on a program's directory, or on the program alone when the
 * data directory lies under it (a program in /tmp must not open DATA). */
static void allow_program(argbuf *a, const ctl_ctx *c, const char *prog) {
    char dir[PATH_MAX];
    str_copy(dir, sizeof(dir), prog);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) return;
    if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    size_t n = strlen(dir);
    bool covers_data = strcmp(dir, "/") == 0 ||
                       (strncmp(c->data_dir, dir, n) == 0 && (c->data_dir[n] == '/' || c->data_dir[n] == '\0'));
    argf(a, "--allow-rx", "%s", covers_data ? prog : dir);
}

/* What a pod may see besides its own directories (read-only): the system's
 * programs and libraries, the few files in /etc that libc and programs
 * read (loader cache, users and groups, name service, time zone,
 * certificates, alternatives), the harmless devices, /proc (other users'
 * processes and processes outside the pod's sandbox stay closed by uid and
 * by Landlock's ptrace rule) and the CPU list. */
static const char *const ro_system[] = {
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/nsswitch.conf",
    "/etc/passwd", "/etc/group", "/etc/localtime", "/etc/timezone", "/etc/hosts",
    "/etc/host.conf", "/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols",
    "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/mime.types",
    "/dev/zero", "/dev/urandom", "/dev/random", "/proc", "/sys/devices/system/cpu",
};
static const char *const rx_system[] = {"/usr", "/lib", "/lib64", "/bin", "/sbin"};

static void pod_confine(argbuf *a, const ctl_ctx *c, const pod_ident *id, const char *program,
                        const char *home, const char *annotations, const char *vpaths[], int nvol,
                        const char *work, const char *ns) {
    const stamp_config *cfg = c->cfg;
    if (id->switch_user) arg(a, "--user"), arg(a, cfg->pod_user);
    argf(a, "--rlimit", "as=%lld", (long long)cfg->pod_memory_max);
    argf(a, "--rlimit", "nproc=%lld", (long long)cfg->pod_procs_max);
    argf(a, "--rlimit", "nofile=%lld", (long long)cfg->pod_files_max);
    if (cfg->pod_cpu_max_ms > 0)
        argf(a, "--rlimit", "cpu=%lld", (long long)((cfg->pod_cpu_max_ms + 999) / 1000));
    argf(a, "--rlimit", "fsize=%lld", (long long)cfg->pod_file_size_max);
    arg(a, "--rlimit"), arg(a, "core=0");
    for (size_t i = 0; i < sizeof(rx_system) / sizeof(rx_system[0]); i++)
        arg(a, "--allow-rx"), arg(a, rx_system[i]);
    for (size_t i = 0; i < sizeof(ro_system) / sizeof(ro_system[0]); i++)
        arg(a, "--allow-ro"), arg(a, ro_system[i]);
    arg(a, "--allow-rw"), arg(a, "/dev/null");
    allow_program(a, c, program);
    char sr[PATH_MAX];
    snprintf(sr, sizeof(sr), "%s/stamp-run", c->libexec);
    allow_program(a, c, sr); /* the default pod program lives there too */
    argf(a, "--allow-rw", "%s", home);
    argf(a, "--allow-rw", "%s", annotations);
    for (int i = 0; i < nvol; i++) argf(a, "--allow-rw", "%s", vpaths[i]);
    if (work) argf(a, "--allow-rw", "%s", work);
    if (id->switch_user) arg(a, "--landlock-optional");
    argf(a, "--disk-free", "%s=%lld", c->data_dir, (long long)cfg->disk_reserve);
    char d[PATH_MAX];
    if (nsrt_dir(c, ns, NULL, d, sizeof(d)) == 0) argf(a, "--disk-usage", "%s", d);
    if (vol_dir(c, ns, NULL, d, sizeof(d)) == 0) argf(a, "--disk-usage", "%s", d);
    argf(a, "--disk-max", "%lld", (long long)cfg->ns_disk_max);
}

/* The pod's environment, NUL-separated, for stamp-run --env-file. */
static int env_add(sbuf *b, const char *k, const char *v) {
    int rc = sbuf_adds(b, k);
    if (rc == 0) rc = sbuf_adds(b, "=");
    if (rc == 0) rc = sbuf_adds(b, v);
    if (rc == 0) rc = sbuf_add(b, "", 1);
    return rc;
}

/* vpaths: 16 PATH_MAX buffers from the heap (64 KiB is no stack buffer). */
/* The paths one pod start works with. */
typedef struct pod_paths {
    char pods[PATH_MAX], pd[PATH_MAX], path[PATH_MAX], rcpath[PATH_MAX], logpath[PATH_MAX];
    char home[PATH_MAX], ann[PATH_MAX], runlog[PATH_MAX], envpath[PATH_MAX], d[PATH_MAX];
    char work[PATH_MAX];
} pod_paths;

/* What a tenant asks of a pod, checked before anything is made. */
static int pod_request_check(const char *pod, json_t *args, json_t *env, json_t *volumes, serr *e) {
    int rc = ns_pod_check(pod, e);
    if (rc) return rc;
    if (args && (!json_is_array(args) || json_array_size(args) > MAX_ARGS))
        return serr_set(e, SE_INVAL, "args: at most %d strings", MAX_ARGS);
    if (env && (!json_is_object(env) || json_object_size(env) > MAX_ENV))
        return serr_set(e, SE_INVAL, "env: an object of at most %d strings", MAX_ENV);
    if (volumes && (!json_is_array(volumes) || json_array_size(volumes) > 16))
        return serr_set(e, SE_INVAL, "volumes: at most 16 names");
    size_t i;
    json_t *v;
    const char *k;
    json_array_foreach(args, i, v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) > ARG_MAX_LEN)
            return serr_set(e, SE_INVAL, "args[%zu]: a string of at most %d bytes", i, ARG_MAX_LEN);
    }
    json_object_foreach(env, k, v) {
        if ((rc = nsrt_env_check(k, e))) return rc;
        if (!json_is_string(v) || strlen(json_string_value(v)) > ARG_MAX_LEN)
            return serr_set(e, SE_INVAL, "env.%s: a string of at most %d bytes", k, ARG_MAX_LEN);
    }
    return 0;
}

/* The pod's environment, from scratch: stamp's variables, then the
 * tenant's (already checked against the denylist), to its env file. */
static int pod_write_env(const char *ns, const char *bucket, const char *pod, json_t *env, json_t *volumes,
                         char (*vpaths)[PATH_MAX], pod_paths *P, serr *e) {
    char *home = P->home, *pd = P->pd, *ann = P->ann, *envpath = P->envpath;
    serr ie = {0};
    size_t i;
    json_t *v;
    const char *k;
    int rc;
    sbuf eb;
    sbuf_init(&eb, 256 * 1024);
    rc = env_add(&eb, "PATH", "/usr/local/bin:/usr/bin:/bin");
    if (rc == 0) rc = env_add(&eb, "HOME", home);
    if (rc == 0) rc = env_add(&eb, "TMPDIR", home);
    if (rc == 0) rc = env_add(&eb, "LANG", "C.UTF-8");
    if (rc == 0) rc = env_add(&eb, "STAMP_NAMESPACE", ns);
    if (rc == 0) rc = env_add(&eb, "STAMP_POD", pod);
    if (rc == 0) rc = env_add(&eb, "STAMP_BUCKET_ID", bucket);
    if (rc == 0) rc = env_add(&eb, "STAMP_POD_DIR", pd);
    if (rc == 0) rc = env_add(&eb, "STAMP_ANNOTATIONS_DIR", ann);
    json_array_foreach(volumes, i, v) {
        char up[96];
        size_t j = (size_t)snprintf(up, sizeof(up), "STAMP_VOLUME_");
        for (const char *p = json_string_value(v); *p && j + 1 < sizeof(up); p++)
            up[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        up[j] = '\0';
        if (rc == 0) rc = env_add(&eb, up, vpaths[i]);
    }
    json_object_foreach(env, k, v) {
        if (rc == 0) rc = env_add(&eb, k, json_string_value(v));
    }
    if (rc == 0) rc = write_file_atomic(envpath, eb.data, eb.len, 0600, &ie);
    sbuf_free(&eb);
    if (rc) return serr_set(e, SE_IO, "pod %s: its environment could not be written", pod);

    return 0;
}

/* stamp-run, confined, running the pod's program, as the runtime's unit
 * ns/<ns>/<pod>. */
static int pod_spawn(ctl_ctx *c, const char *ns, const char *pod, const char *prog, json_t *args,
                     int64_t timeout_ms, const pod_ident *idp, const char **vp, int nvol, bool has_work,
                     pod_paths *P, serr *e) {
    char *rcpath = P->rcpath, *logpath = P->logpath, *envpath = P->envpath, *home = P->home;
    char *ann = P->ann, *runlog = P->runlog, *pd = P->pd, *work = P->work;
    pod_ident id = *idp;
    serr ie = {0};
    size_t i;
    json_t *v;
    int rc;
    char runner[PATH_MAX], program[PATH_MAX];
    snprintf(runner, sizeof(runner), "%s/stamp-run", c->libexec);
    if (prog) str_copy(program, sizeof(program), prog);
    else if (c->cfg->pod_command[0]) str_copy(program, sizeof(program), c->cfg->pod_command);
    else snprintf(program, sizeof(program), "%s/stamp-nsworker", c->libexec);
    argbuf *a = calloc(1, sizeof(*a));
    if (a == NULL) return serr_set(e, SE_NOMEM, "out of memory");
    arg(a, runner);
    arg(a, "--rc"), arg(a, rcpath);
    if (timeout_ms > 0) argf(a, "--timeout-ms", "%lld", (long long)timeout_ms);
    arg(a, "--log"), arg(a, logpath);
    argf(a, "--log-max", "%lld", (long long)c->cfg->pod_log_max);
    arg(a, "--env-file"), arg(a, envpath);
    /* Not the runtime's markers: stamp-run carries them and is the unit;
     * in the pod they would let it pass its own processes off as any unit
     * of this stampd.  Nothing the pod starts outlives stamp-run's watch:
     * it is their subreaper, and the pod dies with it (parent-death
     * signal). */
    arg(a, "--reap-all");
    arg(a, "--no-unix-sockets");
    arg(a, "--cwd"), arg(a, home);
    pod_confine(a, c, &id, program, home, ann, vp, nvol, has_work ? work : NULL, ns);
    arg(a, "--");
    arg(a, program);
    json_array_foreach(args, i, v) arg(a, json_string_value(v));
    a->argv[a->n] = NULL;

    const char *senv[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    char unit[RT_UNIT_MAX];
    snprintf(unit, sizeof(unit), "ns/%s/%s", ns, pod);
    rt_spawn_spec sp = {.unit = unit, .argv = a->argv, .env = senv, .log_path = runlog,
                         .cwd = pd, .env_clear = true};
    pid_t pid;
    rc = rt_spawn(c->rt, &sp, &pid, &ie);
    free(a);
    if (rc) return serr_set(e, rc, "pod %s could not be started", pod);
    return 0;
}

static int pod_start(ctl_ctx *c, const char *ns, const char *bucket, const char *pod,
                     const char *prog, json_t *args, json_t *env, json_t *volumes,
                     int64_t timeout_ms, char (*vpaths)[PATH_MAX], pod_paths *P, serr *e) {
    int rc = pod_request_check(pod, args, env, volumes, e);
    if (rc) return rc;
    size_t i;
    json_t *v;
    pod_ident id;
    if ((rc = pod_ident_get(c, &id, e))) return rc;
    char *pods = P->pods, *pd = P->pd, *path = P->path, *rcpath = P->rcpath, *logpath = P->logpath;
    char *home = P->home, *ann = P->ann, *runlog = P->runlog, *envpath = P->envpath;
    if (nsrt_dir(c, ns, "pods", pods, PATH_MAX) || pod_dir(c, ns, pod, NULL, pd, PATH_MAX) ||
        pod_dir(c, ns, pod, "rc", rcpath, PATH_MAX) ||
        pod_dir(c, ns, pod, "log", logpath, PATH_MAX) ||
        pod_dir(c, ns, pod, "home", home, PATH_MAX) ||
        pod_dir(c, ns, pod, "annotations", ann, PATH_MAX) ||
        pod_dir(c, ns, pod, "run.log", runlog, PATH_MAX) ||
        pod_dir(c, ns, pod, "env", envpath, PATH_MAX))
        return serr_set(e, SE_INVAL, "path too long");
    if (!path_exists(pods)) return serr_set(e, SE_NOTFOUND, "namespace %s has no directory", ns);
    if (path_exists(pd)) return serr_set(e, SE_EXISTS, "pod %s already exists in %s", pod, ns);
    if (count_dir(pods) >= c->cfg->ns_max_pods)
        return serr_set(e, SE_LIMIT, "namespace %s has %lld pods already (ns-max-pods)", ns,
                        (long long)c->cfg->ns_max_pods);
    /* Volumes must exist: a pod cannot create storage by naming it. */
    const char *vp[16];
    int nvol = 0;
    json_array_foreach(volumes, i, v) {
        const char *vn = json_string_value(v);
        if (vn == NULL || !name_valid(vn, 63) || vol_dir(c, ns, vn, vpaths[i], sizeof(vpaths[i])))
            return serr_set(e, SE_INVAL, "volumes[%zu]: not a volume name", i);
        if (!path_exists(vpaths[i]))
            return serr_set(e, SE_NOTFOUND, "volume %s does not exist in %s", vn, ns);
        vp[nvol++] = vpaths[i];
    }
    if ((rc = disk_check(c, ns, e))) return rc;

    /* Directories: stampd's (passable when pods run as another user), and
     * the pod's own (home, annotations, its volumes). */
    serr ie = {0};
    if (mkdir_p(pd, 0750, &ie) || pod_owned_dir(home, &id, &ie) || pod_owned_dir(ann, &id, &ie))
        return serr_set(e, SE_IO, "pod %s: its directory could not be made (%s)", pod,
                        strerror(errno));
    if (id.switch_user) {
        char *d = P->d;
        snprintf(d, PATH_MAX, "%s/namespaces", c->data_dir);
        passable(&id, d);
        if (nsrt_dir(c, ns, NULL, d, PATH_MAX) == 0) passable(&id, d);
        passable(&id, pods);
        passable(&id, pd);
        snprintf(d, PATH_MAX, "%s/volumes", c->data_dir);
        passable(&id, d);
        if (nvol && vol_dir(c, ns, NULL, d, PATH_MAX) == 0) passable(&id, d);
        for (int j = 0; j < nvol; j++)
            if (lchown(vp[j], id.uid, id.gid) != 0 || chmod(vp[j], 0700) != 0)
                return serr_set(e, SE_IO, "pod %s: volume %d could not be given to it", pod, j);
    }
    char *work = P->work;
    bool has_work = prog != NULL && nsrt_dir(c, ns, "work", work, PATH_MAX) == 0 && path_exists(work);
    if (has_work) chown_work(work, &id);

    json_t *spec = json_pack("{s:s,s:O?,s:O?,s:O?,s:I}", "name", pod, "args", args, "env", env,
                             "volumes", volumes, "createdMs", (json_int_t)now_ms());
    char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(spec);
    rc = text ? str_fmt(path, PATH_MAX, &ie, "path", "%s/spec.json", pd) : SE_NOMEM;
    if (rc == 0) rc = write_file_atomic(path, text, strlen(text), 0640, &ie);
    free(text);
    if (rc) return serr_set(e, rc == SE_NOMEM ? SE_NOMEM : SE_IO, "pod %s: its spec could not be written", pod);

    if ((rc = pod_write_env(ns, bucket, pod, env, volumes, vpaths, P, e))) return rc;
    return pod_spawn(c, ns, pod, prog, args, timeout_ms, &id, vp, nvol, has_work, P, e);
}

int nsrt_pod_start(ctl_ctx *c, const char *ns, const char *bucket, const char *pod,
                   const char *prog, json_t *args, json_t *env, json_t *volumes,
                   int64_t timeout_ms, serr *e) {
    /* Its paths on the heap: this runs on an API thread. */
    char (*vpaths)[PATH_MAX] = calloc(16, PATH_MAX);
    pod_paths *P = calloc(1, sizeof(*P));
    int rc = vpaths && P ? pod_start(c, ns, bucket, pod, prog, args, env, volumes, timeout_ms, vpaths, P, e)
                         : serr_set(e, SE_NOMEM, "out of memory");
    free(vpaths);
    free(P);
    return rc;
}

/* An annotation as its bytes (one trailing line end is not part of it).
 * The pod owns the annotations directory: its symlinks are never followed
 * and only regular files are read, at most the value limit. */
static int read_annotation_raw(const char *pd, const char *key, char **data, size_t *len) {
    char p[PATH_MAX + 300];
    *data = NULL;
    *len = 0;
    if (snprintf(p, sizeof(p), "%s/annotations/%s", pd, key) >= (int)sizeof(p)) return SE_INVAL;
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SE_NOTFOUND : SE_IO;
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (text = malloc(NS_ANNOTATION_VALUE_MAX + 1)) == NULL) {
        close(fd);
        return SE_IO;
    }
    size_t n = 0;
    while (n < NS_ANNOTATION_VALUE_MAX) {
        ssize_t r = read(fd, text + n, NS_ANNOTATION_VALUE_MAX - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
    text[n] = '\0';
    *data = text;
    *len = n;
    return 0;
}

char *nsrt_base64(const void *data, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* A pod writes its annotations as files, and may write any bytes.  Text
 * that is UTF-8 without NUL is shown as it is; anything else is shown with
 * the odd bytes as \xNN and its exact bytes, base64, in encoded{} (so that
 * nothing a pod reported vanishes or is silently altered). */
static json_t *read_annotations(const char *pd, json_t **encoded, int64_t *cut) {
    json_t *o = json_object();
    *encoded = NULL;
    *cut = 0;
    char ad[PATH_MAX];
    /* pd fits with room to spare (nsrt_dir checked it); a cut path would
     * read another directory, so it is refused all the same. */
    DIR *d = str_fmt(ad, sizeof(ad), NULL, "path", "%s/annotations", pd) == 0 ? opendir(ad) : NULL;
    if (d == NULL) return o;
    struct dirent *de;
    size_t total = 0;
    while ((de = readdir(d)) != NULL) {
        if (!annotation_key_valid(de->d_name)) continue;
        /* A pod makes as many files as it likes: a listing shows at most
         * NS_ANNOTATIONS_MAX of them and NS_ANNOTATIONS_BYTES, and counts
         * the rest (the sentinel violations are archived whatever this
         * listing shows). */
        if (json_object_size(o) >= NS_ANNOTATIONS_MAX || total >= NS_ANNOTATIONS_BYTES) {
            (*cut)++;
            continue;
        }
        char *text = NULL;
        size_t len = 0;
        if (read_annotation_raw(pd, de->d_name, &text, &len) == 0) {
            total += len;
            if (utf8_valid(text, len)) {
                json_object_set_new(o, de->d_name, json_stringn(text, len));
            } else {
                size_t max = len * 4 + 1;
                char *shown = malloc(max), *b64 = nsrt_base64(text, len);
                if (shown && b64) {
                    json_object_set_new(o, de->d_name, json_string(utf8_sanitize(text, len, shown, max)));
                    if (*encoded == NULL) *encoded = json_object();
                    json_object_set_new(*encoded, de->d_name, json_string(b64));
                }
                free(shown);
                free(b64);
            }
        }
        free(text);
    }
    closedir(d);
    return o;
}

int nsrt_annotation(ctl_ctx *c, const char *ns, const char *pod, const char *key, char **data,
                    size_t *len, serr *e) {
    char pd[PATH_MAX];
    *data = NULL;
    *len = 0;
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd))) return serr_set(e, SE_INVAL, "name too long");
    int rc = read_annotation_raw(pd, key, data, len);
    if (rc == SE_NOTFOUND) return rc;
    if (rc) return serr_set(e, rc, "pod %s: annotation %s cannot be read", pod, key);
    return 0;
}

static void pod_state(ctl_ctx *c, const char *ns, const char *pod, const rt_proc *procs, int np,
                      json_t *out) {
    char unit[RT_UNIT_MAX], rcpath[PATH_MAX];
    snprintf(unit, sizeof(unit), "ns/%s/%s", ns, pod);
    for (int i = 0; i < np; i++) {
        if (strcmp(procs[i].unit, unit) == 0) {
            json_object_set_new(out, "phase", json_string("Running"));
            json_object_set_new(out, "pid", json_integer(procs[i].pid));
            /* While it runs, stamp-run keeps the count beside the log. */
            char dp[PATH_MAX], *t = NULL;
            int64_t d = 0;
            if (pod_dir(c, ns, pod, "log.dropped", dp, sizeof(dp)) == 0 &&
                read_file(dp, 64, &t, NULL, NULL) == 0) {
                t[strcspn(t, "\n")] = '\0';
                parse_i64(t, 0, INT64_MAX, &d);
            }
            free(t);
            json_object_set_new(out, "logBytesDropped", json_integer(d));
            return;
        }
    }
    pod_dir(c, ns, pod, "rc", rcpath, sizeof(rcpath));
    char *text = NULL;
    if (read_file(rcpath, 4096, &text, NULL, NULL) == 0) {
        json_t *res = json_loads(text, 0, NULL);
        free(text);
        json_t *code = json_object_get(res, "exit");
        int64_t x = json_is_integer(code) ? json_integer_value(code) : -1;
        json_object_set_new(out, "phase", json_string(x == 0 ? "Succeeded" : "Failed"));
        json_object_set_new(out, "exitCode", json_integer(x));
        json_t *dropped = json_object_get(res, "logBytesDropped");
        json_object_set_new(out, "logBytesDropped",
                            json_integer(json_is_integer(dropped) ? json_integer_value(dropped) : 0));
        const char *by = json_string_value(json_object_get(res, "stoppedBy"));
        if (by) json_object_set_new(out, "stoppedBy", json_string(by));
        json_t *ended = json_object_get(res, "endedMs");
        if (json_is_integer(ended)) {
            char t[40];
            json_object_set_new(out, "finishedAt",
                                json_string(fmt_time_rfc3339(json_integer_value(ended), t, sizeof(t))));
        }
        json_decref(res);
        return;
    }
    json_object_set_new(out, "phase", json_string("Unknown"));
}

static int scan_ns(ctl_ctx *c, const char *ns, rt_proc **procs) {
    char prefix[RT_UNIT_MAX];
    snprintf(prefix, sizeof(prefix), "ns/%s/", ns);
    *procs = calloc(RT_MAX_PROCS, sizeof(rt_proc));
    if (*procs == NULL) return 0;
    int n = rt_scan(c->rt, prefix, true, *procs, RT_MAX_PROCS, NULL);
    return n < 0 ? 0 : n > RT_MAX_PROCS ? RT_MAX_PROCS : n;
}

static int pod_entry(const struct dirent *de) { return name_valid(de->d_name, NS_POD_MAX); }

json_t *nsrt_pods(ctl_ctx *c, const char *ns) {
    json_t *arr = json_array();
    char pods[PATH_MAX];
    if (nsrt_dir(c, ns, "pods", pods, sizeof(pods))) return arr;
    struct dirent **names;
    int n = scandir(pods, &names, pod_entry, alphasort); /* name order: stable listings */
    if (n < 0) return arr;
    rt_proc *procs = NULL;
    int np = scan_ns(c, ns, &procs);
    for (int i = 0; i < n; i++) {
        const char *pod = names[i]->d_name;
        char pd[PATH_MAX], sp[PATH_MAX + 16];
        pod_dir(c, ns, pod, NULL, pd, sizeof(pd));
        json_t *p = json_pack("{s:s}", "name", pod);
        pod_state(c, ns, pod, procs, np, p);
        snprintf(sp, sizeof(sp), "%s/spec.json", pd);
        char *text = NULL;
        if (read_file(sp, 1 << 20, &text, NULL, NULL) == 0) {
            json_t *spec = json_loads(text, 0, NULL);
            json_t *cm = json_object_get(spec, "createdMs");
            char t[40];
            if (json_is_integer(cm))
                json_object_set_new(p, "startedAt", json_string(fmt_time_rfc3339(json_integer_value(cm), t, sizeof(t))));
            if (json_is_array(json_object_get(spec, "args"))) json_object_set(p, "args", json_object_get(spec, "args"));
            json_decref(spec);
            free(text);
        }
        json_t *encoded = NULL;
        int64_t cut = 0;
        json_object_set_new(p, "annotations", read_annotations(pd, &encoded, &cut));
        if (encoded) json_object_set_new(p, "annotationsBase64", encoded);
        if (cut) json_object_set_new(p, "annotationsNotShown", json_integer(cut));
        json_array_append_new(arr, p);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(procs);
    return arr;
}

int nsrt_pod_phase(ctl_ctx *c, const char *ns, const char *pod, char *phase, size_t len,
                   int *exit_code, serr *e) {
    char pd[PATH_MAX];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    rt_proc *procs = NULL;
    int np = scan_ns(c, ns, &procs);
    json_t *o = json_object();
    pod_state(c, ns, pod, procs, np, o);
    free(procs);
    str_copy(phase, len, json_string_value(json_object_get(o, "phase")));
    json_t *x = json_object_get(o, "exitCode");
    *exit_code = json_is_integer(x) ? (int)json_integer_value(x) : -1;
    json_decref(o);
    return 0;
}

int nsrt_pod_log(ctl_ctx *c, const char *ns, const char *pod, size_t max, char **data,
                 size_t *len, bool *truncated, serr *e) {
    *data = NULL;
    *len = 0;
    if (truncated) *truncated = false;
    char pd[PATH_MAX], lp[PATH_MAX];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    pod_dir(c, ns, pod, "log", lp, sizeof(lp));
    int rc = read_file_tail(lp, max, data, len, truncated, e);
    if (rc == SE_NOTFOUND) { /* no output yet */
        serr_clear(e);
        *data = calloc(1, 1);
        return *data ? 0 : serr_set(e, SE_NOMEM, "out of memory");
    }
    return rc;
}

int nsrt_annotate_check(const char *key, const char *value, serr *e) {
    if (!annotation_key_valid(key)) {
        char shown[80];
        return serr_set(e, SE_INVAL, "annotation key \"%s\": 1-63 of [a-z0-9.-]",
                        utf8_sanitize(key, strlen(key), shown, sizeof(shown)));
    }
    if (value && strlen(value) > NS_ANNOTATION_VALUE_MAX)
        return serr_set(e, SE_TOOBIG, "annotation %s: value longer than %d bytes", key,
                        NS_ANNOTATION_VALUE_MAX);
    if (value && !utf8_valid(value, strlen(value)))
        return serr_set(e, SE_INVAL, "annotation %s: value is not UTF-8 text", key);
    return 0;
}

int nsrt_annotate(ctl_ctx *c, const char *ns, const char *pod, const char *key,
                  const char *value, serr *e) {
    int rc = nsrt_annotate_check(key, value, e);
    if (rc) return rc;
    char pd[PATH_MAX], p[PATH_MAX + 128];
    if (pod_dir(c, ns, pod, NULL, pd, sizeof(pd)) || !path_exists(pd))
        return serr_set(e, SE_NOTFOUND, "pod %s not found in %s", pod, ns);
    snprintf(p, sizeof(p), "%s/annotations", pd);
    rc = mkdir_p(p, 0750, e);
    if (rc) return rc;
    snprintf(p, sizeof(p), "%s/annotations/%s", pd, key);
    if (value == NULL) {
        if (unlink(p) != 0 && errno != ENOENT)
            return serr_set(e, SE_IO, "annotation %s: %s", key, strerror(errno));
        return 0;
    }
    return write_file_atomic(p, value, strlen(value), 0640, e);
}

int nsrt_volume_create(ctl_ctx *c, const char *ns, const char *vol, serr *e) {
    if (!name_valid(vol, 63))
        return serr_set(e, SE_INVAL, "volume name \"%.80s\": 1-63 lowercase letters, digits and '-'", vol);
    char p[PATH_MAX];
    if (vol_dir(c, ns, vol, p, sizeof(p))) return serr_set(e, SE_INVAL, "path too long");
    if (path_exists(p)) return serr_set(e, SE_EXISTS, "volume %s already exists in %s", vol, ns);
    char parent[PATH_MAX];
    vol_dir(c, ns, NULL, parent, sizeof(parent));
    if (count_dir(parent) >= 16) return serr_set(e, SE_LIMIT, "namespace %s has 16 volumes already", ns);
    return mkdir_p(p, 0750, e);
}

void nsrt_counts(ctl_ctx *c, const char *ns, int *pods, int *volumes) {
    char p[PATH_MAX];
    *pods = nsrt_dir(c, ns, "pods", p, sizeof(p)) ? 0 : count_dir(p);
    *volumes = vol_dir(c, ns, NULL, p, sizeof(p)) ? 0 : count_dir(p);
}

int nsrt_stop_pods(ctl_ctx *c, const char *ns, int64_t timeout_ms, serr *e) {
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        rt_proc *procs = NULL;
        int np = scan_ns(c, ns, &procs);
        if (np == 0) {
            free(procs);
            rt_invalidate(c->rt);
            return 0;
        }
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            free(procs);
            return serr_set(e, SE_TIMEOUT, "%d pod process(es) of %s still running", np, ns);
        }
        int64_t grace = c->cfg->stop_grace_ms < left ? c->cfg->stop_grace_ms : left;
        for (int i = 0; i < np; i++) rt_stop(c->rt, procs[i].pid, (int)grace, NULL);
        free(procs);
        rt_invalidate(c->rt);
    }
}

int nsrt_delete(ctl_ctx *c, const char *ns, int64_t timeout_ms, int *orphans, serr *e) {
    *orphans = 0;
    int64_t deadline = mono_ms() + timeout_ms;
    int rc = nsrt_stop_pods(c, ns, timeout_ms, e);
    if (rc) return rc;
    char d[PATH_MAX], v[PATH_MAX];
    nsrt_dir(c, ns, NULL, d, sizeof(d));
    vol_dir(c, ns, NULL, v, sizeof(v));
    for (;;) {
        serr ie = {0};
        remove_tree(d, &ie);
        remove_tree(v, &ie);
        if (!path_exists(d) && !path_exists(v)) return 0;
        if (mono_ms() >= deadline) break;
        sleep_ms(100);
    }
    *orphans = count_dir(v);
    if (path_exists(d)) return serr_set(e, SE_TIMEOUT, "namespace directory %s still present", d);
    return 0;
}
