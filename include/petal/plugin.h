/* plugin.h - Petal plugin ABI v1: the only header a ClientApp or ServerApp plugin needs. */
#ifndef PETAL_PLUGIN_H
#define PETAL_PLUGIN_H

/*
 * The ABI is a promise. A plugin built against this header keeps loading in newer hosts:
 *  - the host calls one exported function, petal_plugin_entry_v1(), once after dlopen();
 *  - it passes a table of host functions that is append-only and starts with its size;
 *  - every struct that crosses the boundary starts with its size and ABI version;
 *  - only fixed-width integers, double, and pointers cross the boundary.
 * Plugins link nothing of Petal's. Write `PETAL_PLUGIN_INIT;` once in one source file; then
 * petal_xxx(...) calls go through the table, as SQLite extensions call sqlite3_xxx(...).
 *
 * This header includes only <stdint.h> and <stddef.h> on purpose; see docs/plugin-abi.md.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PETAL_ABI_VERSION 1
#define PETAL_PLUGIN_ENTRY_V1 "petal_plugin_entry_v1"

/* ---- Errors: one table for host, plugins and wire; codes are negative ------------------- */

/*
 * X(NAME, value, "message"). Runtime errors are below -4000 so that they never collide with
 * libuv's (negated errno) codes, which pass through unchanged. The PETAL_E_* block mirrors
 * Flower's error codes and is what an error reply carries on the wire.
 */
#define PETAL_ERRORS(X)                                                                            \
    X(PETAL_EPROTO, -4001, "protocol error (malformed or unexpected bytes)")                       \
    X(PETAL_EMSGSIZE, -4002, "message exceeds a configured size limit")                            \
    X(PETAL_EABI, -4003, "plugin ABI mismatch")                                                    \
    X(PETAL_ENOENT, -4004, "no such entry")                                                        \
    X(PETAL_EINVAL, -4005, "invalid argument")                                                     \
    X(PETAL_ENOMEM, -4006, "out of memory")                                                        \
    X(PETAL_ECLOSED, -4007, "connection or actor closed")                                          \
    X(PETAL_EAGAIN, -4008, "resource temporarily full, try again")                                 \
    X(PETAL_ETIMEDOUT, -4009, "timed out")                                                         \
    X(PETAL_EPLUGIN, -4010, "plugin failed")                                                       \
    X(PETAL_ECONFIG, -4011, "bad configuration")                                                   \
    X(PETAL_ETYPE, -4012, "value has another type")                                                \
    X(PETAL_EEXIST, -4013, "entry exists already")                                                 \
    X(PETAL_EVERSION, -4014, "unsupported protocol version")                                       \
    X(PETAL_EIO, -4015, "input/output error")                                                      \
    X(PETAL_ESTATE, -4016, "operation not valid in this state")                                    \
    X(PETAL_E_UNKNOWN, -4100, "unknown error")                                                     \
    X(PETAL_E_CLIENT_APP_RAISED_EXCEPTION, -4101, "ClientApp raised an exception")                 \
    X(PETAL_E_MESSAGE_UNAVAILABLE, -4102, "message unavailable (expired or missing)")              \
    X(PETAL_E_REPLY_MESSAGE_UNAVAILABLE, -4103, "reply message unavailable")                       \
    X(PETAL_E_NODE_UNAVAILABLE, -4104, "node unavailable")                                         \
    X(PETAL_E_CLIENT_APP_CRASHED, -4105, "ClientApp crashed")                                      \
    X(PETAL_E_LOAD_CLIENT_APP_EXCEPTION, -4106, "ClientApp failed to load")                        \
    X(PETAL_E_MOD_FAILED_PRECONDITION, -4107, "client mod failed a precondition")                  \
    X(PETAL_E_INVALID_BUNDLE, -4108, "invalid or untrusted app bundle")                            \
    X(PETAL_E_LOAD_SERVER_APP_EXCEPTION, -4109, "ServerApp failed to load")                        \
    X(PETAL_E_SERVER_APP_RAISED_EXCEPTION, -4110, "ServerApp raised an exception")

enum petal_error {
#define PETAL_ERROR_ENUM_(name, value, text) name = value,
    PETAL_ERRORS(PETAL_ERROR_ENUM_)
#undef PETAL_ERROR_ENUM_
};

/* ---- Values ------------------------------------------------------------------------------ */

/* Array element types. The numbers are on the wire: never renumber. */
typedef enum petal_dtype {
    PETAL_DTYPE_FLOAT32 = 1,
    PETAL_DTYPE_FLOAT64 = 2,
    PETAL_DTYPE_INT8 = 3,
    PETAL_DTYPE_INT16 = 4,
    PETAL_DTYPE_INT32 = 5,
    PETAL_DTYPE_INT64 = 6,
    PETAL_DTYPE_UINT8 = 7,
    PETAL_DTYPE_UINT16 = 8,
    PETAL_DTYPE_UINT32 = 9,
    PETAL_DTYPE_UINT64 = 10,
    PETAL_DTYPE_BOOL = 11 /* one byte per element, 0 or 1 */
} petal_dtype_t;

#define PETAL_MAX_NDIM 16

/* Scalar and list value kinds for MetricRecord and ConfigRecord. On the wire: never renumber. */
typedef enum petal_value_type {
    PETAL_VALUE_INT64 = 1,
    PETAL_VALUE_UINT64 = 2,
    PETAL_VALUE_DOUBLE = 3,
    PETAL_VALUE_BOOL = 4,   /* ConfigRecord only */
    PETAL_VALUE_STRING = 5, /* ConfigRecord only; UTF-8, len bytes, NUL-terminated */
    PETAL_VALUE_BYTES = 6,  /* ConfigRecord only */
    PETAL_VALUE_INT64_LIST = 7,
    PETAL_VALUE_UINT64_LIST = 8,
    PETAL_VALUE_DOUBLE_LIST = 9,
    PETAL_VALUE_BOOL_LIST = 10,  /* ConfigRecord only; one byte per element */
    PETAL_VALUE_STRING_LIST = 11 /* ConfigRecord only; `strs` holds len pointers */
} petal_value_type_t;

/*
 * A typed value. For lists, strings and bytes the pointer is borrowed: on set, the record
 * copies it; on get, it stays valid while the record lives and is not modified.
 */
typedef struct petal_value {
    uint32_t type; /* petal_value_type_t */
    uint32_t reserved;
    uint64_t len; /* element count for lists, byte count for string/bytes */
    union {
        int64_t i64;
        uint64_t u64;
        double f64;
        int32_t boolean;
        const char *str;
        const void *bytes;
        const int64_t *i64s;
        const uint64_t *u64s;
        const double *f64s;
        const uint8_t *bools;
        const char *const *strs;
    } as;
} petal_value_t;

/* ---- Opaque objects (owned by the host) -------------------------------------------------- */

typedef struct petal_array petal_array_t;               /* {dtype, shape, data} */
typedef struct petal_arrayrecord petal_arrayrecord_t;   /* ordered name -> array */
typedef struct petal_metricrecord petal_metricrecord_t; /* ordered name -> int/uint/double(/list) */
typedef struct petal_configrecord
    petal_configrecord_t;                           /* MetricRecord values + bool/string/bytes */
typedef struct petal_recorddict petal_recorddict_t; /* ordered name -> one of the three records */
typedef struct petal_message petal_message_t;       /* Metadata + (content | error) */
typedef struct petal_context petal_context_t;       /* run/node config and persistent state */
typedef struct petal_grid petal_grid_t;             /* the ServerApp's view of the federation */

typedef enum petal_record_kind {
    PETAL_RECORD_ARRAYS = 1,
    PETAL_RECORD_METRICS = 2,
    PETAL_RECORD_CONFIG = 3
} petal_record_kind_t;

/* Message metadata, mirroring Flower's Metadata. Copied by value; strings are NUL-terminated. */
#define PETAL_GROUP_ID_MAX 64
#define PETAL_MESSAGE_TYPE_MAX 64
typedef struct petal_metadata {
    uint32_t struct_size; /* sizeof(petal_metadata_t) */
    uint32_t abi_version; /* PETAL_ABI_VERSION */
    uint64_t run_id;
    uint64_t message_id; /* assigned by the SuperLink when the message is pushed */
    uint64_t src_node_id;
    uint64_t dst_node_id;
    uint64_t reply_to_message_id; /* 0 for an instruction */
    double ttl;                   /* seconds */
    double created_at;            /* seconds since the Unix epoch */
    char group_id[PETAL_GROUP_ID_MAX];
    char message_type[PETAL_MESSAGE_TYPE_MAX]; /* "train", "evaluate", "query", "query.<action>" */
} petal_metadata_t;

#define PETAL_SERVER_NODE_ID 0 /* the node id of the ServerApp side */

typedef enum petal_log_level {
    PETAL_LOG_ERROR = 0,
    PETAL_LOG_WARN = 1,
    PETAL_LOG_INFO = 2,
    PETAL_LOG_DEBUG = 3
} petal_log_level_t;

/* Called by the host when it drops the last reference to memory a plugin lent it. */
typedef void (*petal_free_cb)(void *data, void *ctx);

/* Called by petal_grid_send_and_stream() for each reply, on the ServerApp's thread. The host
 * frees the reply after the callback returns; return non-zero to stop waiting early. */
typedef int32_t (*petal_reply_cb)(void *ctx, const petal_message_t *reply);

/* ---- The host function table --------------------------------------------------------------- */

/*
 * Append-only: new functions go at the end, nothing is removed or reordered. A plugin checks
 * `struct_size` before calling a function added after the one it was built with (see
 * PETAL_HOST_HAS()). Unless a function says otherwise: ints return 0 or a negative
 * petal_error; pointers return NULL on error; functions may be called from any thread, but one
 * object (record, message, context) is used by one thread at a time.
 */
typedef struct petal_host_api_v1 {
    uint32_t struct_size; /* sizeof the table this host was built with */
    uint32_t abi_version; /* PETAL_ABI_VERSION */

    /* errors, logging, memory */
    const char *(*strerror)(int32_t err);
    void (*log)(int32_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    void *(*alloc)(uint64_t size); /* 64-byte aligned, zeroed; NULL on failure */
    void (*free)(void *ptr);

    /* arrays (views: the data belongs to a reference-counted buffer) */
    int32_t (*array_dtype)(const petal_array_t *a);
    uint32_t (*array_ndim)(const petal_array_t *a);
    const uint64_t *(*array_shape)(const petal_array_t *a);
    uint64_t (*array_numel)(const petal_array_t *a);
    uint64_t (*array_nbytes)(const petal_array_t *a);
    const void *(*array_data)(const petal_array_t *a);
    /* Writable data; only for an array this caller added and has not sent yet. */
    void *(*array_data_mut)(petal_array_t *a);

    /* ArrayRecord; the record owns its arrays; names are copied */
    uint64_t (*arrayrecord_count)(const petal_arrayrecord_t *r);
    const char *(*arrayrecord_name_at)(const petal_arrayrecord_t *r, uint64_t i);
    const petal_array_t *(*arrayrecord_at)(const petal_arrayrecord_t *r, uint64_t i);
    const petal_array_t *(*arrayrecord_get)(const petal_arrayrecord_t *r, const char *name);
    /* New zeroed array; returns it for filling through array_data_mut. */
    petal_array_t *(*arrayrecord_add)(petal_arrayrecord_t *r, const char *name, int32_t dtype,
                                      uint32_t ndim, const uint64_t *shape);
    /* New array over caller memory, no copy; free_cb(data, ctx) runs when the last reference
     * goes (it may run on any thread). On error free_cb is not called. */
    petal_array_t *(*arrayrecord_add_wrap)(petal_arrayrecord_t *r, const char *name, int32_t dtype,
                                           uint32_t ndim, const uint64_t *shape, void *data,
                                           petal_free_cb free_cb, void *free_ctx);
    /* Adds a reference to src's bytes under `name` (no copy). */
    int32_t (*arrayrecord_add_ref)(petal_arrayrecord_t *r, const char *name,
                                   const petal_array_t *src);

    /* MetricRecord */
    uint64_t (*metricrecord_count)(const petal_metricrecord_t *r);
    int32_t (*metricrecord_at)(const petal_metricrecord_t *r, uint64_t i, const char **name,
                               petal_value_t *value);
    int32_t (*metricrecord_get)(const petal_metricrecord_t *r, const char *name,
                                petal_value_t *value);
    int32_t (*metricrecord_set)(petal_metricrecord_t *r, const char *name,
                                const petal_value_t *value);

    /* ConfigRecord */
    uint64_t (*configrecord_count)(const petal_configrecord_t *r);
    int32_t (*configrecord_at)(const petal_configrecord_t *r, uint64_t i, const char **name,
                               petal_value_t *value);
    int32_t (*configrecord_get)(const petal_configrecord_t *r, const char *name,
                                petal_value_t *value);
    int32_t (*configrecord_set)(petal_configrecord_t *r, const char *name,
                                const petal_value_t *value);

    /* RecordDict; owns its records */
    petal_recorddict_t *(*recorddict_alloc)(void);
    void (*recorddict_free)(petal_recorddict_t *d);
    uint64_t (*recorddict_count)(const petal_recorddict_t *d);
    const char *(*recorddict_name_at)(const petal_recorddict_t *d, uint64_t i);
    int32_t (*recorddict_kind_at)(const petal_recorddict_t *d, uint64_t i);
    const petal_arrayrecord_t *(*recorddict_arrays)(const petal_recorddict_t *d, const char *name);
    const petal_metricrecord_t *(*recorddict_metrics)(const petal_recorddict_t *d,
                                                      const char *name);
    const petal_configrecord_t *(*recorddict_config)(const petal_recorddict_t *d, const char *name);
    /* Get-or-create a record of that kind; NULL if `name` holds another kind. */
    petal_arrayrecord_t *(*recorddict_add_arrays)(petal_recorddict_t *d, const char *name);
    petal_metricrecord_t *(*recorddict_add_metrics)(petal_recorddict_t *d, const char *name);
    petal_configrecord_t *(*recorddict_add_config)(petal_recorddict_t *d, const char *name);

    /* Messages (ServerApp side builds them; ClientApp handlers read them) */
    /* Takes ownership of `content` on success. dst_node_id/group_id/ttl go into metadata. */
    petal_message_t *(*message_alloc)(petal_recorddict_t *content, const char *message_type,
                                      uint64_t dst_node_id, const char *group_id, double ttl);
    void (*message_free)(petal_message_t *m);
    int32_t (*message_metadata)(const petal_message_t *m, petal_metadata_t *out);
    const petal_recorddict_t *(*message_content)(const petal_message_t *m); /* NULL if error */
    int32_t (*message_error_code)(const petal_message_t *m);       /* 0 when it has content */
    const char *(*message_error_reason)(const petal_message_t *m); /* "" when none */

    /* Context */
    uint64_t (*context_run_id)(const petal_context_t *c);
    uint64_t (*context_node_id)(const petal_context_t *c);
    const petal_configrecord_t *(*context_run_config)(const petal_context_t *c);
    const petal_configrecord_t *(*context_node_config)(const petal_context_t *c);
    /* Persists across rounds for this node and run; only the current handler touches it. */
    petal_recorddict_t *(*context_state)(petal_context_t *c);
    /* Explains a failing handler's return; becomes the error reply's reason. */
    void (*context_set_error)(petal_context_t *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* Grid (ServerApp main only; these block the calling ServerApp thread) */
    /* Writes up to `cap` node ids; returns how many nodes there are (may be > cap). */
    int64_t (*grid_node_ids)(petal_grid_t *g, uint64_t *ids, uint64_t cap);
    /* Sends n messages (takes ownership of each message on success, of none on error) and
     * calls cb for each reply as it arrives, until all replied, `timeout` seconds passed, or
     * cb returned non-zero. Missing replies are reported as error replies
     * (PETAL_E_REPLY_MESSAGE_UNAVAILABLE / PETAL_E_NODE_UNAVAILABLE). Returns the number of
     * replies delivered (error replies included), or a negative error. */
    int64_t (*grid_send_and_stream)(petal_grid_t *g, petal_message_t **msgs, uint64_t n,
                                    double timeout, petal_reply_cb cb, void *cb_ctx);
    /* Pushes one message without waiting; returns its message id (>0) or a negative error. */
    int64_t (*grid_push)(petal_grid_t *g, petal_message_t *m);
    /* Waits up to `timeout` seconds for the reply to `message_id`; *reply is the caller's. */
    int32_t (*grid_pull)(petal_grid_t *g, uint64_t message_id, double timeout,
                         petal_message_t **reply);
    /* Records a per-round metric in the run's history (round >= 1) and prints it. */
    int32_t (*grid_record_metrics)(petal_grid_t *g, uint32_t round, const char *phase,
                                   const petal_metricrecord_t *metrics);
    /* Sets the run's final arrays (what --save-arrays writes); the arrays are referenced. */
    int32_t (*grid_set_final_arrays)(petal_grid_t *g, const petal_arrayrecord_t *arrays);

    /* ---- v1.1 additions (check with PETAL_HOST_HAS before calling) ---- */

    /* Runs the built-in default ServerApp on `g` (ServerApp main only; blocks until the run's
     * rounds are done): the strategy named by the run config's "strategy" key ("fedavg",
     * "fedprox", "fedadam", "krum", ...) with its keys, exactly as for an app without a server
     * plugin. 0, or a negative error whose reason is set on ctx. */
    int32_t (*run_default_server)(petal_grid_t *g, petal_context_t *ctx);
} petal_host_api_v1_t;

/* True when the host table has `field` (a plugin built later may run on an older host). */
#define PETAL_HOST_HAS(host, field)                                                                \
    ((host)->struct_size >= offsetof(petal_host_api_v1_t, field) + sizeof((host)->field))

/* ---- What the plugin hands back -------------------------------------------------------------- */

typedef enum petal_plugin_kind {
    PETAL_PLUGIN_CLIENT = 1,
    PETAL_PLUGIN_SERVER = 2
} petal_plugin_kind_t;

/*
 * ClientApp operations. Handlers run on worker threads, possibly several at once for different
 * nodes, so `app` must be used read-only or under the plugin's own lock; per-node state lives in
 * petal_context_state(). A handler fills `reply` and returns 0, or returns a negative error
 * (and may call petal_context_set_error) which becomes a CLIENT_APP_RAISED_EXCEPTION reply.
 * A NULL handler means the ClientApp does not handle that message type.
 */
typedef struct petal_client_ops {
    uint32_t struct_size; /* sizeof(petal_client_ops_t) */
    uint32_t abi_version; /* PETAL_ABI_VERSION */
    /* Once per process and run, before any handler; *app is passed to every handler. */
    int32_t (*init)(const petal_configrecord_t *run_config, void **app);
    int32_t (*train)(void *app, petal_context_t *ctx, const petal_message_t *msg,
                     petal_recorddict_t *reply);
    int32_t (*evaluate)(void *app, petal_context_t *ctx, const petal_message_t *msg,
                        petal_recorddict_t *reply);
    /* `action` is "" for message type "query", or what follows "query." */
    int32_t (*query)(void *app, petal_context_t *ctx, const char *action,
                     const petal_message_t *msg, petal_recorddict_t *reply);
    void (*fini)(void *app);
} petal_client_ops_t;

/* ServerApp operations. main() runs on its own thread and drives the run through the Grid. */
typedef struct petal_server_ops {
    uint32_t struct_size; /* sizeof(petal_server_ops_t) */
    uint32_t abi_version; /* PETAL_ABI_VERSION */
    int32_t (*main)(petal_grid_t *grid, petal_context_t *ctx);
} petal_server_ops_t;

typedef struct petal_plugin_info {
    uint32_t struct_size; /* sizeof(petal_plugin_info_t); the host fills it before the call */
    uint32_t abi_version; /* the plugin sets PETAL_ABI_VERSION */
    uint32_t kind;        /* petal_plugin_kind_t */
    uint32_t reserved;
    const char *name; /* static strings, owned by the plugin */
    const char *version;
    const petal_client_ops_t *client; /* kind == PETAL_PLUGIN_CLIENT */
    const petal_server_ops_t *server; /* kind == PETAL_PLUGIN_SERVER */
} petal_plugin_info_t;

/* The one symbol a plugin exports. Returns 0 after filling *info, or a negative error. */
typedef int32_t (*petal_plugin_entry_v1_fn)(const petal_host_api_v1_t *host,
                                            petal_plugin_info_t *info);

#if defined(__GNUC__)
#define PETAL_PLUGIN_EXPORT __attribute__((visibility("default")))
#define PETAL_PLUGIN_HIDDEN __attribute__((visibility("hidden")))
#else
#define PETAL_PLUGIN_EXPORT
#define PETAL_PLUGIN_HIDDEN
#endif

/* ---- The plugin-side macro layer (not in the host, which links the real functions) ------ */

#ifndef PETAL_HOST_BUILD

extern PETAL_PLUGIN_HIDDEN const petal_host_api_v1_t *petal_host;

/* The entry point every plugin defines (declared here so plugins need no prototype of their own).
 */
PETAL_PLUGIN_EXPORT int32_t petal_plugin_entry_v1(const petal_host_api_v1_t *host,
                                                  petal_plugin_info_t *info);

/* Put once in one source file of the plugin. */
#define PETAL_PLUGIN_INIT PETAL_PLUGIN_HIDDEN const petal_host_api_v1_t *petal_host = NULL

/* Start the entry function with this: keeps the table and refuses an older ABI. */
#define PETAL_PLUGIN_ENTRY_BEGIN(host)                                                             \
    do {                                                                                           \
        if ((host) == NULL || (host)->abi_version != PETAL_ABI_VERSION) {                          \
            return PETAL_EABI;                                                                     \
        }                                                                                          \
        petal_host = (host);                                                                       \
    } while (0)

#define petal_strerror petal_host->strerror
#define petal_log petal_host->log
#define petal_alloc petal_host->alloc
#define petal_free petal_host->free
#define petal_array_dtype petal_host->array_dtype
#define petal_array_ndim petal_host->array_ndim
#define petal_array_shape petal_host->array_shape
#define petal_array_numel petal_host->array_numel
#define petal_array_nbytes petal_host->array_nbytes
#define petal_array_data petal_host->array_data
#define petal_array_data_mut petal_host->array_data_mut
#define petal_arrayrecord_count petal_host->arrayrecord_count
#define petal_arrayrecord_name_at petal_host->arrayrecord_name_at
#define petal_arrayrecord_at petal_host->arrayrecord_at
#define petal_arrayrecord_get petal_host->arrayrecord_get
#define petal_arrayrecord_add petal_host->arrayrecord_add
#define petal_arrayrecord_add_wrap petal_host->arrayrecord_add_wrap
#define petal_arrayrecord_add_ref petal_host->arrayrecord_add_ref
#define petal_metricrecord_count petal_host->metricrecord_count
#define petal_metricrecord_at petal_host->metricrecord_at
#define petal_metricrecord_get petal_host->metricrecord_get
#define petal_metricrecord_set petal_host->metricrecord_set
#define petal_configrecord_count petal_host->configrecord_count
#define petal_configrecord_at petal_host->configrecord_at
#define petal_configrecord_get petal_host->configrecord_get
#define petal_configrecord_set petal_host->configrecord_set
#define petal_recorddict_alloc petal_host->recorddict_alloc
#define petal_recorddict_free petal_host->recorddict_free
#define petal_recorddict_count petal_host->recorddict_count
#define petal_recorddict_name_at petal_host->recorddict_name_at
#define petal_recorddict_kind_at petal_host->recorddict_kind_at
#define petal_recorddict_arrays petal_host->recorddict_arrays
#define petal_recorddict_metrics petal_host->recorddict_metrics
#define petal_recorddict_config petal_host->recorddict_config
#define petal_recorddict_add_arrays petal_host->recorddict_add_arrays
#define petal_recorddict_add_metrics petal_host->recorddict_add_metrics
#define petal_recorddict_add_config petal_host->recorddict_add_config
#define petal_message_alloc petal_host->message_alloc
#define petal_message_free petal_host->message_free
#define petal_message_metadata petal_host->message_metadata
#define petal_message_content petal_host->message_content
#define petal_message_error_code petal_host->message_error_code
#define petal_message_error_reason petal_host->message_error_reason
#define petal_context_run_id petal_host->context_run_id
#define petal_context_node_id petal_host->context_node_id
#define petal_context_run_config petal_host->context_run_config
#define petal_context_node_config petal_host->context_node_config
#define petal_context_state petal_host->context_state
#define petal_context_set_error petal_host->context_set_error
#define petal_grid_node_ids petal_host->grid_node_ids
#define petal_grid_send_and_stream petal_host->grid_send_and_stream
#define petal_grid_push petal_host->grid_push
#define petal_grid_pull petal_host->grid_pull
#define petal_grid_record_metrics petal_host->grid_record_metrics
#define petal_grid_set_final_arrays petal_host->grid_set_final_arrays
#define petal_run_default_server petal_host->run_default_server

#endif /* PETAL_HOST_BUILD */

/* ---- Value helpers (header-only; work in host and plugin code alike) ---------------------- */

static inline petal_value_t
petal_value_i64(int64_t v)
{
    petal_value_t x = {PETAL_VALUE_INT64, 0, 1, {.i64 = v}};
    return x;
}

static inline petal_value_t
petal_value_u64(uint64_t v)
{
    petal_value_t x = {PETAL_VALUE_UINT64, 0, 1, {.u64 = v}};
    return x;
}

static inline petal_value_t
petal_value_f64(double v)
{
    petal_value_t x = {PETAL_VALUE_DOUBLE, 0, 1, {.f64 = v}};
    return x;
}

static inline petal_value_t
petal_value_bool(int v)
{
    petal_value_t x = {PETAL_VALUE_BOOL, 0, 1, {.boolean = v ? 1 : 0}};
    return x;
}

/* `s` must be NUL-terminated; `len` is its length without the NUL. */
static inline petal_value_t
petal_value_str(const char *s, uint64_t len)
{
    petal_value_t x = {PETAL_VALUE_STRING, 0, len, {.str = s}};
    return x;
}

/* Numeric value as double (ints converted); 0 on success, PETAL_ETYPE otherwise. */
static inline int32_t
petal_value_as_f64(const petal_value_t *v, double *out)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
        *out = (double)v->as.i64;
        return 0;
    case PETAL_VALUE_UINT64:
        *out = (double)v->as.u64;
        return 0;
    case PETAL_VALUE_DOUBLE:
        *out = v->as.f64;
        return 0;
    default:
        return PETAL_ETYPE;
    }
}

/* Integer value as int64 (doubles with an integral value accepted); 0 or PETAL_ETYPE. */
static inline int32_t
petal_value_as_i64(const petal_value_t *v, int64_t *out)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
        *out = v->as.i64;
        return 0;
    case PETAL_VALUE_UINT64:
        if (v->as.u64 > (uint64_t)INT64_MAX) {
            return PETAL_ETYPE;
        }
        *out = (int64_t)v->as.u64;
        return 0;
    case PETAL_VALUE_DOUBLE:
        if (v->as.f64 != (double)(int64_t)v->as.f64) {
            return PETAL_ETYPE;
        }
        *out = (int64_t)v->as.f64;
        return 0;
    default:
        return PETAL_ETYPE;
    }
}

#ifdef __cplusplus
}
#endif

#endif /* PETAL_PLUGIN_H */
