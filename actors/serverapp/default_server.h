/* default_server.h - the built-in ServerApp: a strategy loop driven by the run config. */
#ifndef PT_DEFAULT_SERVER_H
#define PT_DEFAULT_SERVER_H

#include <petal/petal.h>

/*
 * A ServerApp main (petal_server_ops_t.main) for apps that ship only a ClientApp. It reads the
 * run config (docs/strategies.md lists the keys: "strategy", "num-server-rounds",
 * "fraction-train", ...), checks every value before round 1 (a bad one fails the run with a
 * message naming the key), asks the lowest node id for the initial arrays with a
 * "query.init-arrays" message (the ClientApp's query handler, action "init-arrays", returns
 * them in ArrayRecord "arrays"), then runs petal_strategy_start(). Every run-config key is
 * forwarded in each round's "config" record, next to "server-round".
 * Runs on the ServerApp thread. 0, or a negative error whose reason is logged and set on ctx
 * (petal_context_set_error).
 */
int32_t pt_default_server_main(petal_grid_t *grid, petal_context_t *ctx);

#endif
