/*
 * metrics.h - stampd's own metrics in Prometheus text format.  Families are
 * registered once (name, type, help); series are (family, label string)
 * pairs created on first use, at most METRICS_MAX_SERIES in all.  Gauges
 * that are counts of resources are not kept here: the /metrics handler
 * computes them from the store at scrape time and appends them.
 *
 * Threading: all calls thread safe (one mutex; updates are rare).
 */
#ifndef STAMP_METRICS_H
#define STAMP_METRICS_H

#include "util/util.h"

#define METRICS_MAX_SERIES 4096
#define METRICS_MAX_FAMILIES 128

enum metric_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

/* Buckets (seconds) used by every histogram: from 10 ms to 3 days, enough
 * for drains of milliseconds and standby ages of days. */
void metrics_register(const char *name, int type, const char *help);
/* labels: already formatted, e.g. `from="Creating",to="Active"`, or "". */
void metrics_inc(const char *name, const char *labels, double v);
void metrics_set(const char *name, const char *labels, double v);
void metrics_observe(const char *name, const char *labels, double v);
/* Value of a counter/gauge series, or of a histogram's count; 0 if absent. */
double metrics_get(const char *name, const char *labels);
int metrics_render(sbuf *out);
void metrics_reset(void); /* tests */

#endif
