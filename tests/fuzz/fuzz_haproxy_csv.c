/*
 * fuzz_haproxy_csv.c - the HAProxy `show stat` CSV parser
 * (haproxy_stat_parse) over the input as a reply; every server row it
 * reports is read back field by field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traffic/traffic.h"

static void row(const char *name, const tr_stat *s, void *arg) {
    uint64_t *sum = arg; /* unsigned: any int64 field values may be summed */
    *sum += strlen(name) + strlen(s->status);
    *sum += (uint64_t)(s->scur ^ s->qcur ^ s->stot ^ s->rate ^ s->req_tot ^ s->hrsp_5xx ^ s->rtime_ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *reply = malloc(size + 1);
    if (reply == NULL) return 0;
    memcpy(reply, data, size);
    reply[size] = '\0';
    uint64_t sum = 0;
    serr e = {0};
    (void)haproxy_stat_parse(reply, row, &sum, &e);
    free(reply);
    return 0;
}
