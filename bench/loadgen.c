/*
 * loadgen.c - a small closed-loop HTTP load generator for the benchmarks:
 * T threads, each with one kept-alive libcurl handle, request after request
 * for D seconds; prints requests per second, errors and latency figures.
 *
 *   stamp-loadgen URL [threads] [seconds] [tenants]
 *
 * With tenants > 0 each request carries X-Tenant-Id: tN (N cycling), so the
 * front door spreads them over the stamps as it would real tenants.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define LAT_BUCKETS 4096 /* 0.1 ms each, up to 409.6 ms */

typedef struct worker {
    pthread_t th;
    int id;
    const char *url;
    int tenants;
    double seconds;
    long ok, errors;
    long lat[LAT_BUCKETS];
} worker;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t sz, size_t n, void *u) {
    (void)p;
    (void)u;
    return sz * n;
}

static void *run(void *arg) {
    worker *w = arg;
    CURL *c = curl_easy_init();
    if (c == NULL) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    double end = mono() + w->seconds;
    long n = 0;
    while (mono() < end) {
        struct curl_slist *h = NULL;
        if (w->tenants > 0) {
            char hdr[64]; /* a long is at most 20 characters: always fits */
            int hn = snprintf(hdr, sizeof(hdr), "X-Tenant-Id: t%ld", (n * MAX_THREADS + w->id) % w->tenants);
            if (hn < 0 || (size_t)hn >= sizeof(hdr)) break;
            h = curl_slist_append(NULL, hdr);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        }
        double t0 = mono();
        long code = 0;
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        double dt = mono() - t0;
        if (rc == CURLE_OK && code == 200) {
            w->ok++;
            long b = (long)(dt * 10000.0);
            w->lat[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
        } else {
            w->errors++;
        }
        curl_slist_free_all(h);
        n++;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static double pct(const long *lat, long total, double p) {
    long want = (long)((double)total * p), seen = 0;
    for (int i = 0; i < LAT_BUCKETS; i++) {
        seen += lat[i];
        if (seen > want) return i / 10.0;
    }
    return LAT_BUCKETS / 10.0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: stamp-loadgen URL [threads] [seconds] [tenants]\n");
        return 2;
    }
    int threads = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 4;
    double seconds = argc > 3 ? strtod(argv[3], NULL) : 3.0;
    int tenants = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 0;
    if (threads < 1 || threads > MAX_THREADS || !(seconds > 0 && seconds <= 600)) {
        fprintf(stderr, "stamp-loadgen: threads 1-%d, seconds (0, 600]\n", MAX_THREADS);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static worker w[MAX_THREADS];
    double t0 = mono();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.id = i, .url = argv[1], .tenants = tenants, .seconds = seconds};
        pthread_create(&w[i].th, NULL, run, &w[i]);
    }
    long ok = 0, errors = 0;
    static long lat[LAT_BUCKETS];
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        ok += w[i].ok;
        errors += w[i].errors;
        for (int b = 0; b < LAT_BUCKETS; b++) lat[b] += w[i].lat[b];
    }
    double el = mono() - t0;
    printf("%.0f req/s  ok %ld  errors %ld  p50 %.1f ms  p99 %.1f ms\n", (double)ok / el, ok, errors,
           pct(lat, ok, 0.50), pct(lat, ok, 0.99));
    curl_global_cleanup();
    return errors > ok ? 1 : 0;
}
