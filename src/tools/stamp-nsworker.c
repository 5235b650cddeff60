/*
 * stamp-nsworker - the worker a namespace's pods run by default: a batch
 * job that logs its progress, can report a memory sentinel violation the way
 * seed 004's workers do (an annotation on its pod), can write into a volume,
 * and ends with a chosen exit status.
 *
 *   stamp-nsworker [--steps N] [--interval-ms MS] [--violation TEXT]
 *                  [--write-volume NAME] [--exit CODE] [--forever]
 *
 * The annotation is a file in $STAMP_ANNOTATIONS_DIR, written atomically;
 * a volume is $STAMP_VOLUME_<NAME>.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

static long num(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "stamp-nsworker: bad number %s\n", s);
        exit(2);
    }
    return v;
}

static void stamp_now(char *buf, size_t len) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static int write_atomic(const char *path, const char *text) {
    char tmp[4200];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    long steps = 5, interval = 50, code = 0;
    const char *violation = NULL, *volume = NULL;
    int forever = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--forever") == 0) forever = 1;
        else if (v == NULL) {
            fprintf(stderr, "stamp-nsworker: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--steps") == 0) steps = num(argv[++i]);
        else if (strcmp(a, "--interval-ms") == 0) interval = num(argv[++i]);
        else if (strcmp(a, "--exit") == 0) code = num(argv[++i]);
        else if (strcmp(a, "--violation") == 0) violation = argv[++i];
        else if (strcmp(a, "--write-volume") == 0) volume = argv[++i];
        else {
            fprintf(stderr, "stamp-nsworker: unknown argument %s\n", a);
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    /* Line buffered when paced, so the log is live; fully buffered when
     * asked for volume (--interval-ms 0). */
    setvbuf(stdout, NULL, interval > 0 ? _IOLBF : _IOFBF, interval > 0 ? 0 : 1 << 16);
    const char *pod = getenv("STAMP_POD"), *bucket = getenv("STAMP_BUCKET_ID");
    char ts[32];
    stamp_now(ts, sizeof(ts));
    printf("%s - INFO - worker %s starting for bucket %s (%ld steps)\n", ts, pod ? pod : "?",
           bucket ? bucket : "?", steps);
    for (long i = 1; (forever || i <= steps) && !stop; i++) {
        if (interval > 0) {
            struct timespec d = {interval / 1000, (interval % 1000) * 1000000L};
            nanosleep(&d, NULL);
        }
        stamp_now(ts, sizeof(ts));
        printf("%s - INFO - worker %s step %ld: projected block %ld of bucket %s\n", ts,
               pod ? pod : "?", i, i, bucket ? bucket : "?");
        if (violation && i == 1) {
            const char *dir = getenv("STAMP_ANNOTATIONS_DIR");
            char path[4096];
            if (dir && snprintf(path, sizeof(path), "%s/memory-sentinel-violations", dir) < (int)sizeof(path) &&
                write_atomic(path, violation) == 0)
                printf("%s - WARNING - memory sentinel violation: %s\n", ts, violation);
        }
        if (volume && i == 1) {
            /* The variable's name whole or none: a cut one is another
             * volume's (or no) variable. */
            char env[128], path[4096];
            static const char pre[] = "STAMP_VOLUME_";
            size_t j = sizeof(pre) - 1;
            memcpy(env, pre, j);
            for (const char *p = volume; *p && j + 1 < sizeof(env); p++)
                env[j++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            env[j] = '\0';
            const char *vd = j - (sizeof(pre) - 1) == strlen(volume) ? getenv(env) : NULL;
            if (vd == NULL)
                fprintf(stderr, "stamp-nsworker: no volume directory for %s\n", volume);
            if (vd && snprintf(path, sizeof(path), "%s/checkpoint", vd) < (int)sizeof(path))
                write_atomic(path, "checkpoint 1\n");
        }
    }
    stamp_now(ts, sizeof(ts));
    printf("%s - INFO - worker %s %s, exit %ld\n", ts, pod ? pod : "?", stop ? "stopped" : "done", code);
    return stop ? 143 : (int)code;
}
