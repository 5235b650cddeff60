/*
 * probes.c - see probes.h.
 */
#include "health/probes.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/httpc.h"
#include "util/util.h"

int probe_tcp(int port, int64_t timeout_ms, char *err, size_t errlen) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        rc = poll(&p, 1, (int)timeout_ms);
        if (rc == 0) {
            snprintf(err, errlen, "127.0.0.1:%d: connect timed out", port);
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr ? -1 : 0;
        errno = soerr;
    }
    if (rc != 0) snprintf(err, errlen, "127.0.0.1:%d: %s", port, strerror(errno));
    close(fd);
    return rc;
}

int probe_http(const char *url, int expect_status, int64_t timeout_ms, char *err, size_t errlen) {
    httpc_req rq = {.url = url, .timeout_ms = timeout_ms, .max_response = 65536};
    long status = 0;
    sbuf body;
    serr e = {0};
    if (httpc_do(&rq, &status, &body, &e) != 0) {
        snprintf(err, errlen, "%s: %s", url, e.msg);
        return -1;
    }
    sbuf_free(&body);
    if (status != expect_status) {
        snprintf(err, errlen, "%s answered %ld, expected %d", url, status, expect_status);
        return -1;
    }
    return 0;
}

static void exec_child(const char *const *argv, const char *const *env, const char *cwd, int in, int out) {
    setpgid(0, 0);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
    }
    if ((cwd == NULL || chdir(cwd) != 0) && chdir("/") != 0) _exit(127);
    execve(argv[0], (char *const *)argv, (char *const *)env);
    _exit(127);
}

int probe_exec(const char *command, const char *const *env, const char *cwd, const char *log_path,
               int64_t timeout_ms, char *err, size_t errlen) {
    const char *const argv[] = {"/bin/sh", "-c", command, NULL};
    return probe_exec_argv(argv, env, cwd, log_path, timeout_ms, err, errlen);
}

int probe_exec_argv(const char *const *argv, const char *const *env, const char *cwd, const char *log_path,
                    int64_t timeout_ms, char *err, size_t errlen) {
    int out = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : -1;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid == 0) exec_child(argv, env, cwd, devnull, out);
    if (out >= 0) close(out);
    if (devnull >= 0) close(devnull);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    setpgid(pid, pid);
    int64_t until = mono_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
        if (mono_ms() >= until) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(err, errlen, "timed out after %lld ms (log %s)", (long long)timeout_ms,
                     log_path ? log_path : "none");
            return -1;
        }
        sleep_ms(5);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status))
        snprintf(err, errlen, "exited %d (log %s)", WEXITSTATUS(status), log_path ? log_path : "none");
    else
        snprintf(err, errlen, "killed by signal %d (log %s)", WTERMSIG(status),
                 log_path ? log_path : "none");
    return -1;
}

int probe_scrape(const char *url, int64_t timeout_ms, const hc_check *c, double *worst, bool *seen,
                 char *err, size_t errlen) {
    httpc_req rq = {.url = url, .timeout_ms = timeout_ms};
    long status = 0;
    sbuf body;
    serr e = {0};
    if (httpc_do(&rq, &status, &body, &e) != 0) {
        snprintf(err, errlen, "%s", e.msg);
        return -1;
    }
    for (int k = 0; k < c->nexprs && status == 200; k++) {
        double v;
        if (prom_value(body.data, c->exprs[k].metric, &v) != 0) continue;
        /* The worst replica: the one that breaks the rule, if any. */
        if (!seen[k] || (!hc_expr_holds(&c->exprs[k], v) && hc_expr_holds(&c->exprs[k], worst[k])))
            worst[k] = v;
        seen[k] = true;
    }
    sbuf_free(&body);
    return 0;
}

int probe_threshold_verdict(const hc_check *c, const double *worst, const bool *seen, char *err,
                            size_t errlen) {
    for (int k = 0; k < c->nexprs; k++) {
        if (!seen[k]) {
            snprintf(err, errlen, "%s: not reported by any replica", c->exprs[k].metric);
            return -1;
        }
        if (!hc_expr_holds(&c->exprs[k], worst[k])) {
            snprintf(err, errlen, "%s is %g, rule %s", c->exprs[k].metric, worst[k], c->exprs[k].text);
            return -1;
        }
    }
    return 0;
}
