/*
 * fsm.c - lookups over the tables of fsm.h.  Tables are small (tens of rows),
 * so linear scans are the clearest choice.
 */
#include "core/fsm.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

int fsm_phase_parse(const fsm_def *d, const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < d->nphases; i++)
        if (strcasecmp(d->phases[i], name) == 0) return i;
    return -1;
}

const char *fsm_phase_name(const fsm_def *d, int phase) {
    if (phase < 0 || phase >= d->nphases) return "Unknown";
    return d->phases[phase];
}

int fsm_op_parse(const fsm_def *d, const char *name) {
    if (name == NULL) return -1;
    for (int i = 0; i < d->nops; i++)
        if (strcasecmp(d->ops[i], name) == 0) return i;
    return -1;
}

const char *fsm_op_name(const fsm_def *d, int op) {
    if (op < 0 || op >= d->nops) return "unknown";
    return d->ops[op];
}

const fsm_transition *fsm_transition_find(const fsm_def *d, int from, int to) {
    for (int i = 0; i < d->ntransitions; i++)
        if (d->transitions[i].from == from && d->transitions[i].to == to)
            return &d->transitions[i];
    return NULL;
}

const fsm_timeout *fsm_timeout_find(const fsm_def *d, int phase) {
    for (int i = 0; i < d->ntimeouts; i++)
        if (d->timeouts[i].phase == phase) return &d->timeouts[i];
    return NULL;
}

bool fsm_op_allowed(const fsm_def *d, int phase, int op) {
    assert(d->nops <= 32); /* one bit per op in allowed[phase] */
    if (phase < 0 || phase >= d->nphases || op < 0 || op >= d->nops) return false;
    return (d->allowed[phase] >> op) & 1u;
}

/* For error messages: a list cut by a short buffer still reads. */
void fsm_allowed_list(const fsm_def *d, int phase, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int op = 0; op < d->nops; op++) {
        if (!fsm_op_allowed(d, phase, op)) continue;
        n += str_fmt_cut(buf + n, len - n, "%s%s", n ? ", " : "", d->ops[op]);
    }
    if (n == 0) str_fmt_cut(buf, len, "nothing");
}

int fsm_check_op(const fsm_def *d, const char *name, int phase, int op, serr *e) {
    if (fsm_op_allowed(d, phase, op)) return 0;
    char allowed[256];
    fsm_allowed_list(d, phase, allowed, sizeof(allowed));
    const char *blocked = d->blocked && phase >= 0 && phase < d->nphases ? d->blocked[phase] : NULL;
    if (blocked)
        return serr_set(e, SE_PHASE, "%s %s is %s: %s is not allowed (%s blocks %s; it allows: %s)",
                        d->kind, name, fsm_phase_name(d, phase), fsm_op_name(d, op),
                        fsm_phase_name(d, phase), blocked, allowed);
    return serr_set(e, SE_PHASE, "%s %s is %s: %s is not allowed (%s allows: %s)", d->kind, name,
                    fsm_phase_name(d, phase), fsm_op_name(d, op), fsm_phase_name(d, phase),
                    allowed);
}
