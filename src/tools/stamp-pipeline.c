/*
 * stamp-pipeline - the small deterministic pipeline stampd ships for MTTC
 * (seed 004): a Monte Carlo projection whose parameters come from a model
 * bundle and whose scenarios come from a config.  The same bundle and
 * config give the same output, byte for byte, on any run.
 *
 *   stamp-pipeline init WORKDIR BUNDLE       copy the bundle in, check it
 *   stamp-pipeline run  WORKDIR CONFIG OUT   project, write OUT
 *
 * CONFIG is JSON with optional integers "scenarios" (default 1000),
 * "months" (default 120) and "seed" (default 42).  Model parameters (a base
 * rate, a volatility, a lapse rate) are derived from the bundle's bytes.
 * All arithmetic is integer (fixed point), so results do not depend on the
 * compiler's floating point.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int die(const char *what, const char *a) {
    fprintf(stderr, "stamp-pipeline: %s %s\n", what, a);
    return 1;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap > (512u << 20)) break;
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

/* FNV-1a over the bundle: the model's fingerprint. */
static uint64_t fnv(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int64_t cfg_int(const char *json, const char *key, int64_t dflt) {
    char pat[64]; /* key is one of ours; a cut pattern would match another key */
    if (snprintf(pat, sizeof(pat), "\"%s\":", key) >= (int)sizeof(pat)) return dflt;
    const char *p = strstr(json, pat);
    if (p == NULL) return dflt;
    p += strlen(pat);
    while (*p == ' ') p++;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p) return dflt;
    return v;
}

static uint64_t next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "init") == 0) {
        size_t n;
        char *b = slurp(argv[3], &n);
        if (b == NULL) return die("cannot read bundle", argv[3]);
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/model.bin", argv[2]) >= (int)sizeof(path))
            return die("work directory path too long", argv[2]);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0) return die("cannot write", path);
        printf("pipeline init: model of %zu bytes, fingerprint %016" PRIx64 "\n", n, fnv(b, n));
        free(b);
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: stamp-pipeline init WORKDIR BUNDLE | run WORKDIR CONFIG OUT\n");
        return 2;
    }
    char path[4096];
    size_t n, cn;
    if (snprintf(path, sizeof(path), "%s/model.bin", argv[2]) >= (int)sizeof(path))
        return die("work directory path too long", argv[2]);
    char *model = slurp(path, &n);
    if (model == NULL) return die("not initialised, missing", path);
    char *cfg = slurp(argv[3], &cn);
    if (cfg == NULL) return die("cannot read config", argv[3]);
    int64_t scenarios = cfg_int(cfg, "scenarios", 1000), months = cfg_int(cfg, "months", 120),
            seed = cfg_int(cfg, "seed", 42);
    if (scenarios < 0 || scenarios > 10000000 || months < 1 || months > 1200)
        return die("config out of range:", cfg);
    uint64_t fp = fnv(model, n);
    /* parameters in basis points */
    int64_t base = 100 + (int64_t)(fp % 400), vol = 10 + (int64_t)((fp >> 16) % 90),
            lapse = 20 + (int64_t)((fp >> 32) % 80);
    printf("pipeline run: %" PRId64 " scenarios x %" PRId64 " months, base %" PRId64
           "bp vol %" PRId64 "bp lapse %" PRId64 "bp\n", scenarios, months, base, vol, lapse);
    FILE *out = fopen(argv[4], "wb");
    if (out == NULL) return die("cannot write", argv[4]);
    int64_t total = 0;
    for (int64_t s = 0; s < scenarios; s++) {
        uint64_t st = (uint64_t)seed * 0x9E3779B97F4A7C15ull ^ fp ^ (uint64_t)(s + 1);
        if (st == 0) st = 1;
        int64_t rate = base, inforce = 1000000, pv = 0, disc = 1000000;
        for (int64_t m = 0; m < months; m++) {
            int64_t shock = (int64_t)(next(&st) % (uint64_t)(2 * vol + 1)) - vol;
            rate += shock / 4;
            if (rate < 1) rate = 1;
            inforce -= inforce * lapse / 120000;
            int64_t cash = inforce / 100;
            disc = disc * 1000000 / (1000000 + rate * 100 / 12);
            pv += cash * disc / 1000000;
        }
        total += pv;
        fprintf(out, "%" PRId64 ",%" PRId64 "\n", s, pv);
        if (scenarios >= 10 && s % (scenarios / 10) == 0)
            printf("pipeline run: scenario %" PRId64 "/%" PRId64 "\n", s, scenarios);
    }
    fprintf(out, "total,%" PRId64 "\n", total);
    if (fclose(out) != 0) return die("cannot write", argv[4]);
    printf("pipeline run: done, total %" PRId64 "\n", total);
    free(model);
    free(cfg);
    return 0;
}
