/*
 * fuzz_prom_text.c - the Prometheus exposition parsing the autoscaler and
 * the health checks do on a scraped /metrics body: prom_value for the
 * workload's gauges (and, when the input holds a NUL, for the metric name
 * after it, as a health check threshold names one), and as_hist_parse of
 * the latency histogram, then the window arithmetic the autoscaler does on
 * it (add, delta, quantile).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/collect.h"
#include "autoscale/observe.h"
#include "util/httpc.h"

static const char *const gauges[] = {
    "stamp_workload_active_connections", "stamp_workload_queue_depth",
    "stamp_workload_active_jobs", "stamp_workload_job_capacity", "up",
    "stamp_workload_request_duration_seconds_count",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = malloc(size + 1);
    if (body == NULL) return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    size_t n1 = strlen(body);
    double v;
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++)
        (void)prom_value(body, gauges[i], &v);
    if (n1 < size) {
        const char *name = body + n1 + 1;
        (void)prom_value(body, name, &v);
        as_hist h2;
        serr e2 = {0};
        (void)as_hist_parse(body, name, &h2, &e2);
    }
    as_hist *h = calloc(3, sizeof(*h));
    if (h == NULL) abort();
    serr e = {0};
    if (as_hist_parse(body, AS_LATENCY_HISTOGRAM, &h[0], &e) == 0) {
        (void)as_hist_quantile(&h[0], 0.99);
        (void)as_hist_quantile(&h[0], 0.5);
        (void)as_hist_add(&h[1], &h[0]);
        (void)as_hist_add(&h[1], &h[0]);
        as_hist_delta(&h[1], &h[0], &h[2]);
        (void)as_hist_quantile(&h[2], 0.99);
        as_hist_delta(&h[0], &h[1], &h[2]);
        (void)as_hist_quantile(&h[2], 1.0);
    }
    free(h);
    free(body);
    return 0;
}
