/*
 * local.h - the local runtime (runtime.h's "local"): real processes on this
 * machine, supervised by stampd but not its children, so they outlive a
 * restart of stampd.
 *
 * Every process it starts is detached (double fork, setsid, its own process
 * group, stdin from /dev/null, stdout+stderr appended to a log file) and
 * carries two environment markers:
 *   STAMPD_OWNER=<owner id>   (one per data dir; from runtime_open)
 *   STAMP_UNIT=<unit>         (e.g. "synaxis-weu-001/general/0")
 * A scan reads /proc/<pid>/environ to find every live process of this
 * owner, whatever happened to stampd in between (kill -9 right after fork
 * included), so adoption never depends on a pidfile being written.
 *
 * Threading: one mutex per instance around the scan cache; scan results are
 * cached for at most LRT_SCAN_TTL_MS so that many reconcilers can ask
 * cheaply.  Spawning and stopping hold no lock.
 */
#ifndef STAMP_RUNTIME_LOCAL_H
#define STAMP_RUNTIME_LOCAL_H

#include "runtime/runtime.h"

#define LRT_SCAN_TTL_MS 200

extern const runtime_ops rt_local_ops;

#endif
