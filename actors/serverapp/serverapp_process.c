/* serverapp_process.c - a ServerApp in a child process, its Grid calls relayed over a socket pair.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "actors/serverapp/default_server.h"
#include "runtime/codec.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/grid.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/plugin.h"

#include "serverapp_process.h"

extern char **environ;

/* Verbs: the message type of each request; the answer is "ok" (params, maybe content) or an
 * error message carrying the code and reason. */
#define V_INIT "serverapp.init"
#define V_NODE_IDS "grid.node-ids"
#define V_SEND "grid.send-and-stream" /* followed by n instruction messages */
#define V_REPLY "grid.reply"          /* one per reply, then V_END */
#define V_END "grid.end"
#define V_PUSH "grid.push" /* followed by the message */
#define V_PULL "grid.pull"
#define V_METRICS "grid.record-metrics"
#define V_FINAL "grid.set-final-arrays"
#define V_DONE "serverapp.done"
#define V_OK "ok"

#define MAX_RPC_BYTES (16ull << 30)

/* ---- Messages over a blocking socket ------------------------------------------------------- */

static int
write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return PETAL_EIO;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int
send_msg(int fd, const petal_message_t *m)
{
    pt_encoded_t e;
    int rc = pt_codec_encode(m, &e);
    if (rc != 0) {
        return rc;
    }
    struct iovec *iov = calloc(e.niov + 1, sizeof(*iov));
    if (iov == NULL) {
        pt_encoded_fini(&e);
        return PETAL_ENOMEM;
    }
    uint8_t len[4] = {(uint8_t)(e.total >> 24), (uint8_t)(e.total >> 16), (uint8_t)(e.total >> 8),
                      (uint8_t)e.total};
    iov[0].iov_base = len;
    iov[0].iov_len = 4;
    for (size_t i = 0; i < e.niov; i++) {
        iov[i + 1].iov_base = (void *)e.iov[i].base;
        iov[i + 1].iov_len = e.iov[i].len;
    }
    rc = e.total > UINT32_MAX ? PETAL_EMSGSIZE : write_all(fd, iov, (int)e.niov + 1);
    free(iov);
    pt_encoded_fini(&e);
    return rc;
}

static int
read_all(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return PETAL_ECLOSED;
        }
        got += (size_t)r;
    }
    return 0;
}

/* The next message, or NULL when the peer closed or sent garbage (logged). */
static petal_message_t *
recv_msg(int fd)
{
    uint8_t h[4];
    if (read_all(fd, h, 4) != 0) {
        return NULL;
    }
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    pt_buf_t *buf = pt_buf_alloc(len ? len : 1, 0);
    if (buf == NULL || read_all(fd, pt_buf_data(buf), len) != 0) {
        if (buf != NULL) {
            pt_buf_release(buf);
        }
        return NULL;
    }
    pt_codec_limits_t lim;
    pt_codec_limits_default(&lim);
    petal_message_t *m = NULL;
    char err[256];
    if (pt_codec_decode(buf, 0, len, &lim, &m, NULL, err, sizeof(err)) != 0) {
        PT_ERROR("ServerApp process channel: %s", err);
        m = NULL;
    }
    pt_buf_release(buf);
    return m;
}

static int
is_type(const petal_message_t *m, const char *type)
{
    return strcmp(pt_message_md_const(m)->message_type, type) == 0;
}

/* A request/answer message with a params record (returned for filling). */
static petal_message_t *
verb(const char *type, petal_configrecord_t **params)
{
    petal_recorddict_t *rd = petal_recorddict_alloc();
    *params = rd ? petal_recorddict_add_config(rd, PT_PARAMS) : NULL;
    petal_message_t *m = *params ? petal_message_alloc(rd, type, 0, "", 0) : NULL;
    if (m == NULL) {
        petal_recorddict_free(rd);
    }
    return m;
}

static const petal_configrecord_t *
params_of(const petal_message_t *m)
{
    const petal_recorddict_t *c = petal_message_content(m);
    return c ? petal_recorddict_config(c, PT_PARAMS) : NULL;
}

static int
send_verb_i64(int fd, const char *type, const char *key, int64_t x)
{
    petal_configrecord_t *p;
    petal_message_t *m = verb(type, &p);
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, key, x);
    int rc = send_msg(fd, m);
    petal_message_free(m);
    return rc;
}

/* ---- Parent: serve the child's Grid calls --------------------------------------------------- */

typedef struct relay {
    int fd;
    int rc;
} relay_t;

static int32_t
relay_reply(void *ctx, const petal_message_t *reply)
{
    relay_t *r = ctx;
    if (r->rc == 0) {
        r->rc = send_msg(r->fd, reply);
    }
    return 0;
}

static int
serve_send(petal_grid_t *grid, int fd, const petal_message_t *req)
{
    int64_t n = 0;
    double timeout = 0;
    pt_params_i64(params_of(req), "n", &n);
    pt_params_f64(params_of(req), "timeout", &timeout);
    if (n < 0 || n > 100000000) {
        return PETAL_EPROTO;
    }
    petal_message_t **msgs = calloc((size_t)n + 1, sizeof(*msgs));
    if (msgs == NULL) {
        return PETAL_ENOMEM;
    }
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        msgs[i] = recv_msg(fd);
        rc = msgs[i] ? 0 : PETAL_ECLOSED;
    }
    relay_t r = {.fd = fd};
    int64_t got =
        rc == 0 ? petal_grid_send_and_stream(grid, msgs, (uint64_t)n, timeout, relay_reply, &r)
                : rc;
    if (got < 0) {
        for (int64_t i = 0; i < n; i++) {
            petal_message_free(msgs[i]); /* not taken on error */
        }
    }
    free(msgs);
    if (r.rc != 0) {
        return r.rc;
    }
    return send_verb_i64(fd, V_END, "result", got);
}

static int
serve_one(petal_grid_t *grid, int fd, petal_message_t *req, int *done, int *main_rc, char *err,
          size_t err_cap)
{
    const petal_configrecord_t *p = params_of(req);
    const petal_recorddict_t *content = petal_message_content(req);
    if (is_type(req, V_NODE_IDS)) {
        int64_t n = petal_grid_node_ids(grid, NULL, 0);
        uint64_t *ids = n > 0 ? calloc((size_t)n, sizeof(*ids)) : NULL;
        if (n > 0 && ids != NULL) {
            n = petal_grid_node_ids(grid, ids, (uint64_t)n);
        }
        petal_configrecord_t *q;
        petal_message_t *m = verb(V_OK, &q);
        int rc = m ? 0 : PETAL_ENOMEM;
        if (rc == 0) {
            pt_params_set_i64(q, "result", n);
            petal_value_t v = {
                PETAL_VALUE_UINT64_LIST, 0, n > 0 && ids ? (uint64_t)n : 0, {.u64s = ids}};
            petal_configrecord_set(q, "ids", &v);
            rc = send_msg(fd, m);
        }
        petal_message_free(m);
        free(ids);
        return rc;
    }
    if (is_type(req, V_SEND)) {
        return serve_send(grid, fd, req);
    }
    if (is_type(req, V_PUSH)) {
        petal_message_t *m = recv_msg(fd);
        int64_t id = m ? petal_grid_push(grid, m) : PETAL_ECLOSED;
        if (id < 0) {
            petal_message_free(m);
        }
        return send_verb_i64(fd, V_OK, "result", id);
    }
    if (is_type(req, V_PULL)) {
        int64_t id = 0;
        double timeout = 0;
        pt_params_i64(p, "message-id", &id);
        pt_params_f64(p, "timeout", &timeout);
        petal_message_t *reply = NULL;
        int32_t rc = petal_grid_pull(grid, (uint64_t)id, timeout, &reply);
        if (rc != 0) {
            return send_verb_i64(fd, V_OK, "result", rc);
        }
        rc = send_verb_i64(fd, V_OK, "result", 0);
        if (rc == 0) {
            rc = send_msg(fd, reply);
        }
        petal_message_free(reply);
        return rc;
    }
    if (is_type(req, V_METRICS)) {
        int64_t round = 0;
        const char *phase = "";
        pt_params_i64(p, "round", &round);
        pt_params_str(p, "phase", &phase);
        int32_t rc = petal_grid_record_metrics(grid, (uint32_t)round, phase,
                                               petal_recorddict_metrics(content, "metrics"));
        return send_verb_i64(fd, V_OK, "result", rc);
    }
    if (is_type(req, V_FINAL)) {
        const petal_arrayrecord_t *a = petal_recorddict_arrays(content, "arrays");
        int32_t rc = a ? petal_grid_set_final_arrays(grid, a) : PETAL_EINVAL;
        return send_verb_i64(fd, V_OK, "result", rc);
    }
    if (is_type(req, V_DONE)) {
        int64_t rc = PETAL_EPLUGIN;
        const char *reason = "";
        pt_params_i64(p, "result", &rc);
        pt_params_str(p, "reason", &reason);
        *main_rc = (int)rc;
        snprintf(err, err_cap, "%s", reason);
        *done = 1;
        return 0;
    }
    PT_WARN("ServerApp process sent an unknown request '%s'",
            pt_message_md_const(req)->message_type);
    return PETAL_EPROTO;
}

static int
send_init(int fd, petal_context_t *ctx, const char *app_dir)
{
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_INIT, &p);
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, "run-id", (int64_t)petal_context_run_id(ctx));
    pt_params_set_str(p, "app-dir", app_dir);
    petal_configrecord_t *cfg = petal_recorddict_add_config(pt_message_content_mut(m), "config");
    const petal_configrecord_t *src = petal_context_run_config(ctx);
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; cfg != NULL && i < petal_configrecord_count(src); i++) {
        if (petal_configrecord_at(src, i, &name, &v) == 0) {
            petal_configrecord_set(cfg, name, &v);
        }
    }
    int rc = cfg ? send_msg(fd, m) : PETAL_ENOMEM;
    petal_message_free(m);
    return rc;
}

int
pt_serverapp_process_run(petal_grid_t *grid, petal_context_t *ctx, const char *self_exe,
                         const char *app_dir, char *err, size_t err_cap)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, err_cap, "cannot create the ServerApp process channel: %s", strerror(errno));
        return PETAL_EIO;
    }
    /* The child's end must survive exec: dup it without CLOEXEC in the child via the actions. */
    char fdarg[16];
    snprintf(fdarg, sizeof(fdarg), "%d", 3);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    char *argv[] = {(char *)self_exe, "--serverapp-child", fdarg, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, self_exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        snprintf(err, err_cap, "cannot start the ServerApp process %s: %s", self_exe, strerror(rc));
        return PETAL_EIO;
    }
    int fd = sv[0], done = 0, main_rc = PETAL_EPLUGIN;
    err[0] = '\0';
    rc = send_init(fd, ctx, app_dir);
    while (rc == 0 && !done) {
        petal_message_t *req = recv_msg(fd);
        if (req == NULL) {
            rc = PETAL_ECLOSED;
            break;
        }
        rc = serve_one(grid, fd, req, &done, &main_rc, err, err_cap);
        petal_message_free(req);
    }
    close(fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (done) {
        return main_rc;
    }
    if (WIFSIGNALED(status)) {
        snprintf(err, err_cap, "the ServerApp process was killed by signal %d (%s)",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        snprintf(err, err_cap, "the ServerApp process ended (status %d) without a result",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    return PETAL_E_SERVER_APP_RAISED_EXCEPTION;
}

/* ---- Child: a Grid that asks the parent -------------------------------------------------------
 */

typedef struct remote_grid {
    struct petal_grid base;
    int fd;
} remote_grid_t;

static int
remote_fd(petal_grid_t *g)
{
    return ((remote_grid_t *)g)->fd;
}

/* Waits for an "ok" answer; returns its "result" (or PETAL_ECLOSED), *ans kept if asked. */
static int64_t
answer(int fd, petal_message_t **ans)
{
    petal_message_t *m = recv_msg(fd);
    if (m == NULL) {
        return PETAL_ECLOSED;
    }
    int64_t result = PETAL_EPROTO;
    pt_params_i64(params_of(m), "result", &result);
    if (ans != NULL) {
        *ans = m;
    } else {
        petal_message_free(m);
    }
    return result;
}

static int64_t
rg_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_NODE_IDS, &p);
    if (m == NULL || send_msg(fd, m) != 0) {
        petal_message_free(m);
        return PETAL_ECLOSED;
    }
    petal_message_free(m);
    petal_message_t *a = NULL;
    int64_t n = answer(fd, &a);
    petal_value_t v;
    if (n > 0 && ids != NULL && petal_configrecord_get(params_of(a), "ids", &v) == 0 &&
        v.type == PETAL_VALUE_UINT64_LIST) {
        memcpy(ids, v.as.u64s, (v.len < cap ? v.len : cap) * sizeof(*ids));
    }
    petal_message_free(a);
    return n;
}

static int64_t
rg_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                   petal_reply_cb cb, void *cb_ctx)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_SEND, &p);
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, "n", (int64_t)n);
    pt_params_set_f64(p, "timeout", timeout);
    int rc = send_msg(fd, m);
    petal_message_free(m);
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        rc = send_msg(fd, msgs[i]);
    }
    if (rc != 0) {
        return PETAL_ECLOSED;
    }
    for (uint64_t i = 0; i < n; i++) {
        petal_message_free(msgs[i]); /* sent: ours to drop, as the Grid takes them */
    }
    int stop = 0;
    for (;;) {
        petal_message_t *r = recv_msg(fd);
        if (r == NULL) {
            return PETAL_ECLOSED;
        }
        if (is_type(r, V_END)) {
            int64_t got = PETAL_EPROTO;
            pt_params_i64(params_of(r), "result", &got);
            petal_message_free(r);
            return got;
        }
        if (!stop && cb != NULL) {
            stop = cb(cb_ctx, r) != 0; /* the parent keeps relaying; we stop listening */
        }
        petal_message_free(r);
    }
}

static int64_t
rg_push(petal_grid_t *g, petal_message_t *msg)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_PUSH, &p);
    int rc = m ? send_msg(fd, m) : PETAL_ENOMEM;
    petal_message_free(m);
    if (rc == 0) {
        rc = send_msg(fd, msg);
    }
    if (rc != 0) {
        return PETAL_ECLOSED;
    }
    petal_message_free(msg);
    return answer(fd, NULL);
}

static int32_t
rg_pull(petal_grid_t *g, uint64_t message_id, double timeout, petal_message_t **reply)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_PULL, &p);
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, "message-id", (int64_t)message_id);
    pt_params_set_f64(p, "timeout", timeout);
    int rc = send_msg(fd, m);
    petal_message_free(m);
    if (rc != 0) {
        return PETAL_ECLOSED;
    }
    int64_t result = answer(fd, NULL);
    if (result != 0) {
        return (int32_t)result;
    }
    *reply = recv_msg(fd);
    return *reply ? 0 : PETAL_ECLOSED;
}

static int32_t
rg_record_metrics(petal_grid_t *g, uint32_t round, const char *phase,
                  const petal_metricrecord_t *metrics)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_METRICS, &p);
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    pt_params_set_i64(p, "round", round);
    pt_params_set_str(p, "phase", phase ? phase : "");
    petal_metricrecord_t *dst = petal_recorddict_add_metrics(pt_message_content_mut(m), "metrics");
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; dst && metrics && i < petal_metricrecord_count(metrics); i++) {
        if (petal_metricrecord_at(metrics, i, &name, &v) == 0) {
            petal_metricrecord_set(dst, name, &v);
        }
    }
    int rc = send_msg(fd, m);
    petal_message_free(m);
    return rc != 0 ? PETAL_ECLOSED : (int32_t)answer(fd, NULL);
}

static int32_t
rg_set_final_arrays(petal_grid_t *g, const petal_arrayrecord_t *arrays)
{
    int fd = remote_fd(g);
    petal_configrecord_t *p;
    petal_message_t *m = verb(V_FINAL, &p);
    petal_arrayrecord_t *dst =
        m ? petal_recorddict_add_arrays(pt_message_content_mut(m), "arrays") : NULL;
    for (uint64_t i = 0; dst && arrays && i < petal_arrayrecord_count(arrays); i++) {
        petal_arrayrecord_add_ref(dst, petal_arrayrecord_name_at(arrays, i),
                                  petal_arrayrecord_at(arrays, i));
    }
    int rc = dst ? send_msg(fd, m) : PETAL_ENOMEM;
    petal_message_free(m);
    return rc != 0 ? PETAL_ECLOSED : (int32_t)answer(fd, NULL);
}

static const pt_grid_ops_t remote_grid_ops = {
    .node_ids = rg_node_ids,
    .send_and_stream = rg_send_and_stream,
    .push = rg_push,
    .pull = rg_pull,
    .record_metrics = rg_record_metrics,
    .set_final_arrays = rg_set_final_arrays,
    .runtime = NULL, /* aggregation in the child runs on its own thread */
};

int
pt_serverapp_child_main(int fd)
{
    signal(SIGPIPE, SIG_IGN);
    petal_message_t *init = recv_msg(fd);
    if (init == NULL || !is_type(init, V_INIT)) {
        fprintf(stderr, "petal-superlink --serverapp-child: no run to serve on fd %d\n", fd);
        petal_message_free(init);
        return 1;
    }
    char err[512] = "";
    int64_t run_id = 0;
    const char *app_dir = "";
    pt_params_i64(params_of(init), "run-id", &run_id);
    pt_params_str(params_of(init), "app-dir", &app_dir);
    pt_manifest_t *manifest = NULL;
    pt_plugin_t *plugin = NULL;
    petal_context_t *ctx = NULL;
    int32_t (*main_fn)(petal_grid_t *, petal_context_t *) = pt_default_server_main;
    int32_t rc = pt_manifest_load(app_dir, &manifest, err, sizeof(err));
    if (rc == 0 && manifest->server_path != NULL) {
        rc = pt_plugin_load(manifest->server_path, PETAL_PLUGIN_SERVER, &plugin, err, sizeof(err));
        if (rc == 0) {
            main_fn = pt_plugin_info(plugin)->server->main;
        }
    }
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *cfg = holder ? petal_recorddict_add_config(holder, "config") : NULL;
    const petal_configrecord_t *src =
        petal_recorddict_config(petal_message_content(init), "config");
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; cfg && src && i < petal_configrecord_count(src); i++) {
        if (petal_configrecord_at(src, i, &name, &v) == 0) {
            petal_configrecord_set(cfg, name, &v);
        }
    }
    pt_run_config_t *rcfg = cfg ? pt_run_config_alloc(holder) : NULL;
    if (rcfg == NULL) {
        petal_recorddict_free(holder);
    }
    remote_grid_t grid = {.base.ops = &remote_grid_ops, .fd = fd};
    if (rc == 0) {
        ctx = rcfg ? pt_context_alloc((uint64_t)run_id, PETAL_SERVER_NODE_ID, rcfg, NULL) : NULL;
        if (ctx == NULL) {
            rc = PETAL_ENOMEM;
            snprintf(err, sizeof(err), "out of memory");
        } else {
            pt_context_set_grid(ctx, &grid.base);
            rc = main_fn(&grid.base, ctx);
            if (rc != 0) {
                const char *why = pt_context_error(ctx);
                snprintf(err, sizeof(err), "ServerApp main failed: %s",
                         why[0] ? why : petal_strerror(rc));
            }
        }
    }
    if (rcfg != NULL) {
        pt_run_config_release(rcfg);
    }
    petal_configrecord_t *p;
    petal_message_t *done = verb(V_DONE, &p);
    if (done != NULL) {
        pt_params_set_i64(p, "result", rc);
        pt_params_set_str(p, "reason", err);
        send_msg(fd, done);
        petal_message_free(done);
    }
    pt_context_free(ctx);
    pt_plugin_unload(plugin);
    pt_manifest_free(manifest);
    petal_message_free(init);
    close(fd);
    return 0;
}
