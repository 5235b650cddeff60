/*
 * wallclock.h - ages of wall-clock timestamps that a step of the system
 * clock does not change.
 *
 * stampd persists the start of what it times (a phase, a drain, an
 * activation) as wall-clock milliseconds: a monotonic reading means nothing
 * to the next process, and people read these times.  But the age of such a
 * timestamp, taken as now_ms() - t, follows every step of the system clock:
 * set forward two hours, every drain under way is forced and every stamp in
 * Creating fails its timeout; set back, timeouts and waits stall for two
 * hours.
 *
 * So a timestamp's age is measured on the monotonic clock (CLOCK_BOOTTIME:
 * time asleep counts, steps of the wall clock do not) from the moment this
 * process first knew it: wall_stamp_ms() takes a timestamp and remembers
 * which monotonic instant it is; wall_age_ms(t) of one this process did not
 * take (written before a restart) takes its age from the wall clock once,
 * on first sight, and from the monotonic clock after.  A step while stampd
 * runs therefore changes no age; a step while stampd is down does, which
 * is as much as anything can know across a restart.
 *
 * The memory is a bounded table (WALL_ANCHORS entries, least recently used
 * evicted): a timestamp evicted and seen again is taken from the wall clock
 * again.  After a step back, a new timestamp equal to one already known (the
 * same millisecond, before the step) would share its monotonic instant:
 * wall_stamp_ms() moves it on a millisecond at a time until it is unique.
 *
 * Only for durations and deadlines.  Token checks (exp, nbf, iat), event and
 * audit times and calendar rules (inactivity in hours, retention in days)
 * take now_ms() as it is.  Thread safe.
 */
#ifndef STAMP_WALLCLOCK_H
#define STAMP_WALLCLOCK_H

#include <stdint.h>

#define WALL_ANCHORS 16384

/* now_ms(), remembered as this monotonic instant. */
int64_t wall_stamp_ms(void);
/* Milliseconds since the wall-clock instant t (negative: t is ahead), as
 * above; t <= 0 (none) is 0. */
int64_t wall_age_ms(int64_t t);
/* The monotonic clock the ages are measured on, in ms. */
int64_t wall_mono_ms(void);

#endif
