/* clientapp.h - the ClientApp host: loads a client plugin and dispatches messages to it. */
#ifndef PT_CLIENTAPP_H
#define PT_CLIENTAPP_H

#include <stddef.h>

#include <petal/petal.h>

/*
 * Shared by the simulation's virtual nodes and the SuperNode. One pt_clientapp_t per run and
 * process: loading calls the plugin's init once; pt_clientapp_handle() may then run on several
 * worker threads at once (for different nodes).
 */
typedef struct pt_clientapp pt_clientapp_t;

/* Loads APP_DIR/petal.toml's client plugin and calls its init with the run config. On error
 * writes a sentence to err naming the file and the problem. */
int pt_clientapp_load(const char *app_dir, const petal_configrecord_t *run_config,
                      pt_clientapp_t **out, char *err, size_t err_cap);
void pt_clientapp_free(pt_clientapp_t *ca);

/* Runs the handler for msg's type ("train", "evaluate", "query", "query.<action>") and returns
 * the reply: content on success, or an error reply (CLIENT_APP_RAISED_EXCEPTION with the
 * handler's reason, or an unknown-type error). NULL only when out of memory. Worker thread. */
petal_message_t *pt_clientapp_handle(pt_clientapp_t *ca, petal_context_t *ctx,
                                     const petal_message_t *msg);

#endif
