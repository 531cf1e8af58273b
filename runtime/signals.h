/* signals.h - SIGINT/SIGTERM end a daemon's runtime cleanly. */
#ifndef PT_SIGNALS_H
#define PT_SIGNALS_H

#include "actor.h"

/* On SIGINT or SIGTERM, logs the signal and calls pt_runtime_shutdown(rt). The handles close
 * when the runtime shuts down. Loop thread, before pt_runtime_run. */
int pt_signals_start(pt_runtime_t *rt);

#endif
