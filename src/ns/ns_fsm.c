/*
 * ns_fsm.c - the Namespace table and the names of seed 004.
 *
 *   active     view, activity, finalize, reap, pods, runs, annotations
 *   finalized  view, reap, pods (read), annotations; runs blocked: the
 *              bucket's work is done; activity is refused so a finalized
 *              namespace cannot be kept alive by a straggler; annotations
 *              still reach the archive (the reap reads them after)
 *   reaping    view
 *   reaped     view (the record stays with its diagnostics paths)
 *
 * No timeouts in the table: eligibility (finalized, or idle past
 * inactivity-threshold) is the reaper's, through due_ms.
 */
#include "ns/ns.h"

#include <string.h>

#include "util/util.h"

static const char *const phases[NP_NPHASES] = {
    [NP_ACTIVE] = "active", [NP_FINALIZED] = "finalized", [NP_REAPING] = "reaping",
    [NP_REAPED] = "reaped"};

static const char *const ops[NO_NOPS] = {
    [NO_VIEW] = "view",   [NO_ACTIVITY] = "activity", [NO_FINALIZE] = "finalize",
    [NO_REAP] = "reap",   [NO_POD] = "start pods",    [NO_RUN] = "run pipelines",
    [NO_ANNOTATE] = "annotate pods"};

static const fsm_transition transitions[] = {
    {NP_ACTIVE, NP_FINALIZED, "all jobs of the bucket complete"},
    {NP_ACTIVE, NP_REAPING, "inactive past the threshold, or manual reap"},
    {NP_FINALIZED, NP_REAPING, "finalized namespaces are eligible at once"},
    {NP_REAPING, NP_REAPED, "diagnostics archived and namespace deleted"},
};

#define B(op) (1u << (op))
static const uint32_t allowed[NP_NPHASES] = {
    [NP_ACTIVE] = B(NO_VIEW) | B(NO_ACTIVITY) | B(NO_FINALIZE) | B(NO_REAP) | B(NO_POD) | B(NO_RUN) |
                  B(NO_ANNOTATE),
    [NP_FINALIZED] = B(NO_VIEW) | B(NO_REAP) | B(NO_ANNOTATE),
    [NP_REAPING] = B(NO_VIEW) | B(NO_REAP), /* a reap retries at once */
    [NP_REAPED] = B(NO_VIEW),
};
#undef B

const fsm_def ns_fsm = {
    .kind = "namespace",
    .phases = phases,
    .nphases = NP_NPHASES,
    .ops = ops,
    .nops = NO_NOPS,
    .transitions = transitions,
    .ntransitions = (int)(sizeof(transitions) / sizeof(transitions[0])),
    .timeouts = NULL,
    .ntimeouts = 0,
    .allowed = allowed,
    .warning = NULL,
    .transitions_metric = "namespace_transitions_total",
    .duration_metric = "namespace_state_duration",
};

/* A refused name quoted in its error: cut on a character boundary, odd
 * bytes shown as \xNN, so the message is always valid UTF-8. */
static const char *quoted(const char *s, char *buf, size_t len) {
    return utf8_sanitize(s ? s : "", s ? strlen(s) : 0, buf, len);
}

int ns_bucket_check(const char *bucket, serr *e) {
    if (bucket == NULL || *bucket == '\0') return serr_set(e, SE_INVAL, "bucket_id is required");
    char q[72];
    if (!name_valid(bucket, NS_BUCKET_MAX))
        return serr_set(e, SE_INVAL,
                        "bucket_id \"%s\" is not valid: 1-%d lowercase letters, digits and '-', "
                        "starting and ending with a letter or digit",
                        quoted(bucket, q, sizeof(q)), NS_BUCKET_MAX);
    return 0;
}

int ns_name_check(const char *ns, serr *e) {
    if (ns == NULL || !name_valid(ns, NS_NAME_MAX) ||
        (!str_has_prefix(ns, NS_PREFIX) && !str_has_prefix(ns, NS_MTTC_PREFIX)))
    {
        char q[88];
        return serr_set(e, SE_INVAL, "namespace \"%s\" is not valid: expected %s{bucket_id}",
                        quoted(ns, q, sizeof(q)), NS_PREFIX);
    }
    return 0;
}

int ns_tenant_check(const char *t, serr *e) {
    size_t n = t ? strlen(t) : 0;
    bool ok = n > 0 && n <= NS_TENANT_MAX && t[0] != '.' && t[0] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
             (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_' || t[i] == '.';
    if (!ok || strstr(t, ".."))
        return serr_set(e, SE_INVAL, "tenant_id must be 1-%d of [A-Za-z0-9._-]", NS_TENANT_MAX);
    return 0;
}

int ns_pod_check(const char *pod, serr *e) {
    char q[88];
    if (!name_valid(pod, NS_POD_MAX))
        return serr_set(e, SE_INVAL, "pod name \"%s\" is not valid: 1-%d lowercase letters, digits and '-'",
                        quoted(pod, q, sizeof(q)), NS_POD_MAX);
    return 0;
}

bool ns_hash_valid(const char *h) {
    if (h == NULL || strlen(h) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    return true;
}
