/*
 * stamp-run - run one operator command for stampd and leave its result in a
 * file, atomically, before exiting.
 *
 *   stamp-run --rc FILE [--timeout-ms N] -- PROG [ARGS...]
 *
 * stampd starts this detached (its own session, output already sent to the
 * step's log) and may die and restart while the command runs.  The result
 * file is how a later stampd learns that the run ended and how: it is
 * written to FILE.tmp, fsynced, and renamed, so it is either absent or
 * complete.  The command runs in its own process group, so a timeout (or a
 * SIGTERM to stamp-run) reaches everything it started.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILL_AFTER_MS 2000

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

static void usage(void) {
    fprintf(stderr, "usage: stamp-run --rc FILE [--timeout-ms N] -- PROG [ARGS...]\n");
    exit(2);
}

static int write_result(const char *path, const char *text) {
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) return -1;
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof(dir), ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *rc_path = NULL;
    long long timeout_ms = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--rc") == 0 && i + 1 < argc) {
            rc_path = argv[++i];
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            timeout_ms = strtoll(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || timeout_ms < 0) {
                fprintf(stderr, "stamp-run: bad --timeout-ms %s\n", argv[i]);
                usage();
            }
        } else {
            fprintf(stderr, "stamp-run: unknown argument %s\n", argv[i]);
            usage();
        }
    }
    if (rc_path == NULL || i >= argc || strcmp(argv[i - 1], "--") != 0) usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int64_t started = clock_ms(CLOCK_REALTIME), t0 = clock_ms(CLOCK_MONOTONIC);
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "stamp-run: fork: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0) {
        setpgid(0, 0);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execvp(argv[i], argv + i);
        fprintf(stderr, "stamp-run: exec %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    setpgid(child, child); /* whichever of us runs first */

    bool timed_out = false;
    int64_t term_at = -1; /* when SIGTERM went to the group */
    int status = 0;
    for (;;) {
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child) break;
        if (w < 0 && errno != EINTR) {
            fprintf(stderr, "stamp-run: waitpid: %s\n", strerror(errno));
            return 1;
        }
        int64_t now = clock_ms(CLOCK_MONOTONIC);
        if (term_at < 0 && (got_term || (timeout_ms > 0 && now - t0 >= timeout_ms))) {
            if (!got_term) {
                timed_out = true;
                fprintf(stderr, "stamp-run: timed out after %lldms; stopping the command\n",
                        timeout_ms);
            }
            kill(-child, SIGTERM);
            term_at = now;
        } else if (term_at >= 0 && now - term_at >= KILL_AFTER_MS) {
            kill(-child, SIGKILL);
            term_at = now + 3600 * 1000LL; /* once */
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* Whatever the command left behind in its group goes with it. */
    kill(-child, SIGKILL);

    int code, sig = 0;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
    } else {
        sig = WTERMSIG(status);
        code = 128 + sig;
    }
    if (timed_out && code == 0) code = 124; /* a timed-out run never counts as success */
    int64_t ended = clock_ms(CLOCK_REALTIME), dur = clock_ms(CLOCK_MONOTONIC) - t0;
    char res[256];
    snprintf(res, sizeof(res),
             "{\"exit\":%d,\"signal\":%d,\"timedOut\":%s,\"durationMs\":%lld,"
             "\"startedMs\":%lld,\"endedMs\":%lld}\n",
             code, sig, timed_out ? "true" : "false", (long long)dur, (long long)started,
             (long long)ended);
    if (write_result(rc_path, res) != 0) {
        fprintf(stderr, "stamp-run: writing %s: %s\n", rc_path, strerror(errno));
        return 1;
    }
    return code;
}
