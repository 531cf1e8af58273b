/* linkstate_sqlite.c - the LinkState in a SQLite file (--database): WAL, kept statements. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sqlite3.h>

#include "runtime/codec.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/u64map.h"

#include "linkstate.h"

/*
 * One file holds everything a restarted SuperLink needs (docs/deployment.md, "State"). The
 * SuperLink is the only writer: an exclusive flock() on the file keeps a second SuperLink out,
 * while readers such as `sqlite3 FILE .backup` still work (WAL). Runs are cached in memory once
 * loaded (their config is decoded once and lent out by run_get); everything else is read from
 * the file each time. Ids are stored as SQLite's signed 64-bit integers (bit-for-bit).
 *
 * nodes_create(count) inserts one row per node in one transaction: fine for a real federation,
 * not meant for a million simulated nodes (`petal sim` uses the in-memory LinkState).
 */

#define SCHEMA_VERSION 1
#define RESTART_REASON "the SuperLink restarted while the run was running"

static const char schema_sql[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "CREATE TABLE nodes ("
    " node_id INTEGER PRIMARY KEY,"
    " key BLOB UNIQUE," /* NULL for nodes from nodes_create */
    " online INTEGER NOT NULL,"
    " last_seen REAL NOT NULL);"
    "CREATE TABLE runs ("
    " run_id INTEGER PRIMARY KEY,"
    " status INTEGER NOT NULL,"
    " result INTEGER NOT NULL,"
    " app_dir TEXT NOT NULL,"
    " bundle_hash TEXT NOT NULL,"
    " config BLOB," /* a RecordDict with ConfigRecord "config", Petal's msgpack encoding */
    " reason TEXT NOT NULL,"
    " created_at REAL NOT NULL,"
    " started_at REAL NOT NULL,"
    " finished_at REAL NOT NULL);"
    "CREATE TABLE messages ("
    " message_id INTEGER PRIMARY KEY,"
    " dst_node_id INTEGER NOT NULL,"
    " run_id INTEGER NOT NULL,"
    " created_at REAL NOT NULL,"
    " ttl REAL NOT NULL,"
    " body BLOB NOT NULL);" /* the whole message, Petal's msgpack encoding */
    "CREATE INDEX messages_by_node ON messages (dst_node_id, created_at, message_id);"
    "CREATE INDEX messages_by_expiry ON messages (created_at + ttl);"
    "CREATE TABLE logs ("
    " run_id INTEGER NOT NULL,"
    " idx INTEGER NOT NULL,"
    " line TEXT NOT NULL,"
    " PRIMARY KEY (run_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE bundles ("
    " hash TEXT PRIMARY KEY,"
    " bytes BLOB NOT NULL);"
    "INSERT INTO schema_version VALUES (1);";

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_NODE_INSERT,
    S_NODE_GET,
    S_NODE_SET_ONLINE,
    S_NODE_BY_KEY,
    S_NODES_ONLINE,
    S_NODE_LIST,
    S_RUN_INSERT,
    S_RUN_IDS,
    S_RUN_GET,
    S_RUN_UPDATE,
    S_MSG_INSERT,
    S_MSG_GET,
    S_MSG_DELETE,
    S_MSG_EXPIRED,
    S_MSG_DELETE_EXPIRED,
    S_MSG_FOR_NODE,
    S_LOG_INSERT,
    S_LOG_READ,
    S_BUNDLE_INSERT,
    S_BUNDLE_GET,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_NODE_INSERT] = "INSERT INTO nodes (node_id, key, online, last_seen) VALUES (?1, ?2, 1, ?3)",
    [S_NODE_GET] = "SELECT online, last_seen FROM nodes WHERE node_id = ?1",
    [S_NODE_SET_ONLINE] = "UPDATE nodes SET online = ?2, last_seen = ?3 WHERE node_id = ?1",
    [S_NODE_BY_KEY] = "SELECT node_id FROM nodes WHERE key = ?1",
    [S_NODES_ONLINE] = "SELECT node_id FROM nodes WHERE online = 1 ORDER BY node_id",
    [S_NODE_LIST] = "SELECT node_id, online, last_seen FROM nodes ORDER BY node_id",
    [S_RUN_INSERT] =
        "INSERT INTO runs (status, result, app_dir, bundle_hash, config, reason,"
        " created_at, started_at, finished_at) VALUES (0, 0, ?1, ?2, ?3, '', ?4, 0, 0)",
    [S_RUN_IDS] = "SELECT run_id FROM runs ORDER BY run_id",
    [S_RUN_GET] = "SELECT status, result, app_dir, bundle_hash, config, reason, created_at,"
                  " started_at, finished_at,"
                  " (SELECT coalesce(max(idx) + 1, 0) FROM logs WHERE run_id = ?1)"
                  " FROM runs WHERE run_id = ?1",
    [S_RUN_UPDATE] = "UPDATE runs SET status = ?2, result = ?3, reason = ?4, started_at = ?5,"
                     " finished_at = ?6 WHERE run_id = ?1",
    [S_MSG_INSERT] = "INSERT INTO messages (message_id, dst_node_id, run_id, created_at, ttl, body)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_MSG_GET] = "SELECT body FROM messages WHERE message_id = ?1",
    [S_MSG_DELETE] = "DELETE FROM messages WHERE message_id = ?1",
    [S_MSG_EXPIRED] = "SELECT message_id, body FROM messages WHERE created_at + ttl < ?1"
                      " ORDER BY created_at, message_id",
    [S_MSG_DELETE_EXPIRED] = "DELETE FROM messages WHERE created_at + ttl < ?1",
    [S_MSG_FOR_NODE] = "SELECT message_id, body FROM messages WHERE dst_node_id = ?1"
                       " ORDER BY created_at, message_id",
    [S_LOG_INSERT] = "INSERT INTO logs (run_id, idx, line) VALUES (?1, ?2, ?3)",
    [S_LOG_READ] = "SELECT idx, line FROM logs WHERE run_id = ?1 AND idx >= ?2 ORDER BY idx",
    [S_BUNDLE_INSERT] = "INSERT OR IGNORE INTO bundles (hash, bytes) VALUES (?1, ?2)",
    [S_BUNDLE_GET] = "SELECT bytes FROM bundles WHERE hash = ?1",
};

/* A run as last read or written; the strings and config are lent out by run_get. */
typedef struct sql_run {
    pt_run_rec_t rec;
    char *app_dir;
    char *bundle_hash;
    char *reason;
    petal_recorddict_t *config_holder;
    uint64_t num_lines; /* the next log index */
} sql_run_t;

typedef struct sql_linkstate {
    pt_linkstate_t base;
    sqlite3 *db;
    char *path;
    int lock_fd;
    sqlite3_stmt *st[S_COUNT];
    pt_u64map_t runs; /* run id -> sql_run_t*, filled on first use */
    uint64_t next_node_id;
    uint64_t pending; /* rows in `messages` */
    pt_codec_limits_t limits;
} sql_linkstate_t;

/* ---- Helpers ----------------------------------------------------------------------------------
 */

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Logs the connection's last error, naming the file and the operation; returns PETAL_EIO. */
static int
db_fail(sql_linkstate_t *s, const char *what)
{
    PT_ERROR("LinkState database %s: %s failed: %s", s->path, what, sqlite3_errmsg(s->db));
    return PETAL_EIO;
}

/* Resets a kept statement after use and drops its bindings (some point at caller memory). */
static void
done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static sqlite3_int64
i64(uint64_t v)
{
    return (sqlite3_int64)v;
}

static uint64_t
col_u64(sqlite3_stmt *st, int col)
{
    return (uint64_t)sqlite3_column_int64(st, col);
}

/* Runs a statement that returns no rows; 0 or PETAL_EIO (logged). */
static int
run_done(sql_linkstate_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(s, what);
    done(st);
    return ret;
}

static int
tx_begin(sql_linkstate_t *s)
{
    return run_done(s, s->st[S_BEGIN], "BEGIN");
}

static int
tx_commit(sql_linkstate_t *s)
{
    int rc = run_done(s, s->st[S_COMMIT], "COMMIT");
    if (rc != 0 && !sqlite3_get_autocommit(s->db)) {
        run_done(s, s->st[S_ROLLBACK], "ROLLBACK");
    }
    return rc;
}

static void
tx_rollback(sql_linkstate_t *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        run_done(s, s->st[S_ROLLBACK], "ROLLBACK");
    }
}

/* 64 lower-case hex digits. */
static int
valid_hash(const char *hash)
{
    size_t i = 0;
    for (; hash[i] != '\0'; i++) {
        char c = hash[i];
        if (i >= PT_BUNDLE_HASH_LEN || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return i == PT_BUNDLE_HASH_LEN;
}

/* A copy of column `col` (a blob) in a new 64-byte aligned buffer; NULL when out of memory or
 * the column is empty. */
static pt_buf_t *
col_buf(sqlite3_stmt *st, int col)
{
    const void *p = sqlite3_column_blob(st, col);
    int len = sqlite3_column_bytes(st, col);
    if (p == NULL || len <= 0) {
        return NULL;
    }
    pt_buf_t *b = pt_buf_alloc((size_t)len, 0);
    if (b != NULL) {
        memcpy(pt_buf_data(b), p, (size_t)len);
    }
    return b;
}

/* Decodes a stored message (column `col` of the current row); NULL after logging a reason. */
static petal_message_t *
decode_msg(sql_linkstate_t *s, sqlite3_stmt *st, int col, uint64_t message_id)
{
    char why[256] = "";
    petal_message_t *m = NULL;
    pt_buf_t *b = col_buf(st, col);
    if (b == NULL) {
        PT_ERROR("LinkState database %s: message %llu: %s", s->path, (unsigned long long)message_id,
                 sqlite3_column_bytes(st, col) > 0 ? "out of memory" : "empty record");
        return NULL;
    }
    int rc = pt_codec_decode(b, 0, pt_buf_len(b), &s->limits, &m, NULL, why, sizeof(why));
    pt_buf_release(b);
    if (rc != 0) {
        PT_ERROR("LinkState database %s: message %llu cannot be decoded (%s); dropped", s->path,
                 (unsigned long long)message_id, why);
        return NULL;
    }
    return m;
}

/* Binds bytes as a blob; PETAL_EMSGSIZE (logged) past SQLite's limit (1 GB by default). */
static int
bind_blob(sql_linkstate_t *s, sqlite3_stmt *st, int idx, const void *p, uint64_t len)
{
    int rc = sqlite3_bind_blob64(st, idx, p, len, SQLITE_STATIC);
    if (rc == SQLITE_TOOBIG) {
        PT_ERROR("LinkState database %s: cannot store %llu bytes in one record (SQLite's limit is "
                 "%d bytes)",
                 s->path, (unsigned long long)len, sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1));
        return PETAL_EMSGSIZE;
    }
    return rc == SQLITE_OK ? 0 : PETAL_ENOMEM;
}

/* Binds a whole encoding as one blob: the single iovec itself, or a flattened copy in *flat. */
static int
bind_encoded(sql_linkstate_t *s, sqlite3_stmt *st, int idx, const pt_encoded_t *e, pt_buf_t **flat)
{
    const void *p;
    *flat = NULL;
    if (e->total > (uint64_t)sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1)) {
        return bind_blob(s, st, idx, NULL, e->total); /* reports the limit, copies nothing */
    }
    if (e->niov == 1) {
        p = e->iov[0].base;
    } else {
        *flat = pt_encoded_flatten(e);
        if (*flat == NULL) {
            return PETAL_ENOMEM;
        }
        p = pt_buf_data(*flat);
    }
    return bind_blob(s, st, idx, p, e->total);
}

/* ---- Nodes ------------------------------------------------------------------------------------
 */

static int
sql_nodes_create(pt_linkstate_t *ls, uint64_t count, double now, uint64_t *first)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_NODE_INSERT];
    if (count == 0 || count > UINT32_MAX) {
        return PETAL_EINVAL;
    }
    int rc = tx_begin(s);
    if (rc != 0) {
        return rc;
    }
    for (uint64_t i = 0; i < count; i++) {
        sqlite3_bind_int64(st, 1, i64(s->next_node_id + i));
        sqlite3_bind_null(st, 2);
        sqlite3_bind_double(st, 3, now);
        rc = run_done(s, st, "adding a node");
        if (rc != 0) {
            tx_rollback(s);
            return rc;
        }
    }
    rc = tx_commit(s);
    if (rc != 0) {
        return rc;
    }
    *first = s->next_node_id;
    s->next_node_id += count;
    return 0;
}

static int
sql_node_get(pt_linkstate_t *ls, uint64_t node_id, pt_node_rec_t *out)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_NODE_GET];
    sqlite3_bind_int64(st, 1, i64(node_id));
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        out->node_id = node_id;
        out->online = sqlite3_column_int(st, 0) ? 1 : 0;
        out->last_seen = sqlite3_column_double(st, 1);
    } else {
        ret = rc == SQLITE_DONE ? PETAL_ENOENT : db_fail(s, "reading a node");
    }
    done(st);
    return ret;
}

static int
sql_node_set_online(pt_linkstate_t *ls, uint64_t node_id, int online, double now)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_NODE_SET_ONLINE];
    sqlite3_bind_int64(st, 1, i64(node_id));
    sqlite3_bind_int(st, 2, online ? 1 : 0);
    sqlite3_bind_double(st, 3, now);
    int rc = run_done(s, st, "updating a node");
    if (rc == 0 && sqlite3_changes(s->db) == 0) {
        rc = PETAL_ENOENT;
    }
    return rc;
}

static int64_t
sql_node_ids_online(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_NODES_ONLINE];
    uint64_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k < cap) {
            ids[k] = col_u64(st, 0);
        }
        k++;
    }
    int64_t ret = rc == SQLITE_DONE ? (int64_t)k : db_fail(s, "listing online nodes");
    done(st);
    return ret;
}

static int
sql_node_register(pt_linkstate_t *ls, const uint8_t *key, size_t key_len, double now,
                  uint64_t *node_id, int *is_new)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    if (key == NULL || key_len == 0 || key_len > PT_NODE_KEY_MAX) {
        return PETAL_EINVAL;
    }
    sqlite3_stmt *st = s->st[S_NODE_BY_KEY];
    sqlite3_bind_blob(st, 1, key, (int)key_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    uint64_t id = rc == SQLITE_ROW ? col_u64(st, 0) : 0;
    done(st);
    if (rc == SQLITE_ROW) {
        rc = sql_node_set_online(ls, id, 1, now);
        if (rc == 0) {
            *node_id = id;
            *is_new = 0;
        }
        return rc;
    }
    if (rc != SQLITE_DONE) {
        return db_fail(s, "looking up a node key");
    }
    st = s->st[S_NODE_INSERT];
    sqlite3_bind_int64(st, 1, i64(s->next_node_id));
    sqlite3_bind_blob(st, 2, key, (int)key_len, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now);
    rc = run_done(s, st, "registering a node");
    if (rc != 0) {
        return rc;
    }
    *node_id = s->next_node_id++;
    *is_new = 1;
    return 0;
}

static int64_t
sql_node_list(pt_linkstate_t *ls, pt_node_rec_t *out, uint64_t cap)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_NODE_LIST];
    uint64_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k < cap) {
            out[k].node_id = col_u64(st, 0);
            out[k].online = sqlite3_column_int(st, 1) ? 1 : 0;
            out[k].last_seen = sqlite3_column_double(st, 2);
        }
        k++;
    }
    int64_t ret = rc == SQLITE_DONE ? (int64_t)k : db_fail(s, "listing nodes");
    done(st);
    return ret;
}

/* ---- Runs -------------------------------------------------------------------------------------
 */

static void
run_free(sql_run_t *r)
{
    if (r == NULL) {
        return;
    }
    free(r->app_dir);
    free(r->bundle_hash);
    free(r->reason);
    petal_recorddict_free(r->config_holder);
    free(r);
}

static char *
col_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return strdup(t != NULL ? (const char *)t : "");
}

/* The cached run, reading it from the file on first use. */
static int
run_load(sql_linkstate_t *s, uint64_t run_id, sql_run_t **out)
{
    sql_run_t *r = run_id != 0 ? pt_u64map_get(&s->runs, run_id) : NULL;
    if (r != NULL) {
        *out = r;
        return 0;
    }
    if (run_id == 0 || run_id == UINT64_MAX) {
        return PETAL_ENOENT;
    }
    sqlite3_stmt *st = s->st[S_RUN_GET];
    sqlite3_bind_int64(st, 1, i64(run_id));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? PETAL_ENOENT : db_fail(s, "reading a run");
        done(st);
        return rc;
    }
    rc = PETAL_ENOMEM;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        goto fail;
    }
    r->rec.run_id = run_id;
    r->rec.status = sqlite3_column_int(st, 0);
    r->rec.result = sqlite3_column_int(st, 1);
    r->app_dir = col_strdup(st, 2);
    r->bundle_hash = col_strdup(st, 3);
    r->reason = col_strdup(st, 5);
    if (r->app_dir == NULL || r->bundle_hash == NULL || r->reason == NULL) {
        goto fail;
    }
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
        char why[256] = "";
        pt_buf_t *b = col_buf(st, 4);
        if (b == NULL) {
            goto fail;
        }
        rc = pt_codec_decode_recorddict(b, 0, pt_buf_len(b), &s->limits, &r->config_holder, why,
                                        sizeof(why));
        pt_buf_release(b);
        if (rc != 0) {
            PT_ERROR("LinkState database %s: the config of run %llu cannot be decoded (%s)",
                     s->path, (unsigned long long)run_id, why);
            rc = PETAL_EIO;
            goto fail;
        }
    }
    r->rec.created_at = sqlite3_column_double(st, 6);
    r->rec.started_at = sqlite3_column_double(st, 7);
    r->rec.finished_at = sqlite3_column_double(st, 8);
    r->num_lines = col_u64(st, 9);
    done(st);
    rc = pt_u64map_put(&s->runs, run_id, r);
    if (rc != 0) {
        run_free(r);
        return rc;
    }
    *out = r;
    return 0;
fail:
    done(st);
    run_free(r);
    return rc;
}

static int
sql_run_create(pt_linkstate_t *ls, const char *app_dir, const char *bundle_hash,
               petal_recorddict_t *config_holder, double now, uint64_t *run_id)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_RUN_INSERT];
    pt_encoded_t e = {0};
    pt_buf_t *flat = NULL;
    sql_run_t *r = NULL;
    int rc = PETAL_EINVAL;
    if (bundle_hash != NULL && !valid_hash(bundle_hash)) {
        goto fail;
    }
    if (config_holder != NULL) {
        rc = pt_codec_encode_recorddict(config_holder, &e);
        if (rc != 0) {
            goto fail;
        }
        rc = bind_encoded(s, st, 3, &e, &flat);
        if (rc != 0) {
            goto fail;
        }
    }
    sqlite3_bind_text(st, 1, app_dir ? app_dir : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, bundle_hash ? bundle_hash : "", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, now);
    rc = run_done(s, st, "creating a run");
    if (rc != 0) {
        goto fail;
    }
    uint64_t id = (uint64_t)sqlite3_last_insert_rowid(s->db);
    *run_id = id;
    /* Cache it (best effort: without memory, run_get reads it back from the file). */
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->rec.run_id = id;
        r->rec.status = PT_RUN_PENDING;
        r->rec.created_at = now;
        r->app_dir = strdup(app_dir ? app_dir : "");
        r->bundle_hash = strdup(bundle_hash ? bundle_hash : "");
        r->reason = strdup("");
        r->config_holder = config_holder;
        config_holder = NULL;
        if (r->app_dir == NULL || r->bundle_hash == NULL || r->reason == NULL ||
            pt_u64map_put(&s->runs, id, r) != 0) {
            run_free(r);
        }
    }
    rc = 0;
fail:
    done(st);
    if (flat != NULL) {
        pt_buf_release(flat);
    }
    if (e.internal != NULL || e.iov != NULL) {
        pt_encoded_fini(&e);
    }
    petal_recorddict_free(config_holder);
    return rc;
}

static int64_t
sql_run_ids(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_RUN_IDS];
    uint64_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k < cap) {
            ids[k] = col_u64(st, 0);
        }
        k++;
    }
    int64_t ret = rc == SQLITE_DONE ? (int64_t)k : db_fail(s, "listing runs");
    done(st);
    return ret;
}

static int
sql_run_get(pt_linkstate_t *ls, uint64_t run_id, pt_run_rec_t *out)
{
    sql_run_t *r;
    int rc = run_load((sql_linkstate_t *)ls, run_id, &r);
    if (rc != 0) {
        return rc;
    }
    *out = r->rec;
    out->app_dir = r->app_dir;
    out->reason = r->reason;
    out->bundle_hash = r->bundle_hash;
    out->run_config = r->config_holder ? petal_recorddict_config(r->config_holder, "config") : NULL;
    return 0;
}

static int
sql_run_set_status(pt_linkstate_t *ls, uint64_t run_id, int status, int result, const char *reason,
                   double now)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sql_run_t *r;
    int rc = run_load(s, run_id, &r);
    if (rc != 0) {
        return rc;
    }
    if (status < PT_RUN_PENDING || status > PT_RUN_FINISHED || result < PT_RUN_NONE ||
        result > PT_RUN_STOPPED) {
        return PETAL_EINVAL;
    }
    if (r->rec.status == PT_RUN_FINISHED) {
        return PETAL_ESTATE; /* finished is final */
    }
    char *copy = NULL;
    if (reason != NULL && (copy = strdup(reason)) == NULL) {
        return PETAL_ENOMEM;
    }
    pt_run_rec_t next = r->rec;
    next.status = status;
    next.result = status == PT_RUN_FINISHED ? result : PT_RUN_NONE;
    if (status == PT_RUN_RUNNING) {
        next.started_at = now;
    } else if (status == PT_RUN_FINISHED) {
        next.finished_at = now;
    }
    sqlite3_stmt *st = s->st[S_RUN_UPDATE];
    sqlite3_bind_int64(st, 1, i64(run_id));
    sqlite3_bind_int(st, 2, next.status);
    sqlite3_bind_int(st, 3, next.result);
    sqlite3_bind_text(st, 4, copy ? copy : r->reason, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, next.started_at);
    sqlite3_bind_double(st, 6, next.finished_at);
    rc = run_done(s, st, "updating a run");
    if (rc != 0) {
        free(copy);
        return rc;
    }
    r->rec = next;
    if (copy != NULL) {
        free(r->reason);
        r->reason = copy;
    }
    return 0;
}

/* ---- Messages ---------------------------------------------------------------------------------
 */

static int
sql_msg_put(pt_linkstate_t *ls, petal_message_t *m)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_MSG_INSERT];
    const petal_metadata_t *md = pt_message_md_const(m);
    if (md == NULL || md->message_id == 0) {
        return PETAL_EINVAL;
    }
    pt_encoded_t e;
    int rc = pt_codec_encode(m, &e);
    if (rc != 0) {
        return rc;
    }
    pt_buf_t *flat = NULL;
    rc = bind_encoded(s, st, 6, &e, &flat);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, i64(md->message_id));
        sqlite3_bind_int64(st, 2, i64(md->dst_node_id));
        sqlite3_bind_int64(st, 3, i64(md->run_id));
        sqlite3_bind_double(st, 4, md->created_at);
        sqlite3_bind_double(st, 5, md->ttl);
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE) {
            s->pending++;
        } else if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
            rc = PETAL_EEXIST;
        } else {
            rc = db_fail(s, "storing a message");
        }
    }
    done(st);
    if (flat != NULL) {
        pt_buf_release(flat);
    }
    pt_encoded_fini(&e);
    return rc;
}

/* Deletes one message row; 0 or PETAL_EIO. */
static int
msg_delete(sql_linkstate_t *s, uint64_t message_id)
{
    sqlite3_stmt *st = s->st[S_MSG_DELETE];
    sqlite3_bind_int64(st, 1, i64(message_id));
    int rc = run_done(s, st, "deleting a message");
    if (rc == 0 && sqlite3_changes(s->db) > 0 && s->pending > 0) {
        s->pending--;
    }
    return rc;
}

static petal_message_t *
sql_msg_take(pt_linkstate_t *ls, uint64_t message_id)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_MSG_GET];
    if (message_id == 0) {
        return NULL;
    }
    sqlite3_bind_int64(st, 1, i64(message_id));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE) {
            db_fail(s, "reading a message");
        }
        done(st);
        return NULL;
    }
    petal_message_t *m = decode_msg(s, st, 0, message_id);
    done(st);
    /* If the delete fails the caller still gets the message; the row expires later. */
    msg_delete(s, message_id);
    return m;
}

/* A growing list of decoded messages. */
typedef struct msg_list {
    petal_message_t **v;
    size_t n, cap;
} msg_list_t;

static int
list_push(msg_list_t *l, petal_message_t *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        petal_message_t **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            return PETAL_ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = m;
    return 0;
}

static void
list_clear(msg_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        pt_message_release(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int64_t
sql_msg_expire(pt_linkstate_t *ls, double now, void (*expired)(void *ctx, petal_message_t *m),
               void *ctx)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_MSG_EXPIRED];
    msg_list_t list = {0};
    int rc = tx_begin(s);
    if (rc != 0) {
        return rc;
    }
    sqlite3_bind_double(st, 1, now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        petal_message_t *m = decode_msg(s, st, 1, col_u64(st, 0));
        if (m != NULL && list_push(&list, m) != 0) {
            pt_message_release(m);
            break; /* out of memory: delete only the rows we hold, the rest on the next sweep */
        }
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    int64_t ret = ok ? 0 : db_fail(s, "finding expired messages");
    done(st);
    if (ok && rc == SQLITE_ROW) {
        for (size_t i = 0; i < list.n && ret == 0; i++) {
            ret = msg_delete(s, pt_message_md(list.v[i])->message_id);
        }
    } else if (ok) {
        st = s->st[S_MSG_DELETE_EXPIRED];
        sqlite3_bind_double(st, 1, now);
        ret = run_done(s, st, "deleting expired messages");
        if (ret == 0) {
            uint64_t gone = (uint64_t)sqlite3_changes64(s->db);
            s->pending = gone < s->pending ? s->pending - gone : 0;
        }
    }
    if (ret == 0) {
        ret = tx_commit(s);
    } else {
        tx_rollback(s);
    }
    if (ret != 0) {
        /* nothing was removed; the pending count is recounted from the file */
        sqlite3_stmt *cnt = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM messages", -1, &cnt, NULL) ==
                SQLITE_OK &&
            sqlite3_step(cnt) == SQLITE_ROW) {
            s->pending = col_u64(cnt, 0);
        }
        sqlite3_finalize(cnt);
        list_clear(&list);
        return ret;
    }
    int64_t n = (int64_t)list.n;
    for (size_t i = 0; i < list.n; i++) {
        expired(ctx, list.v[i]); /* the callback owns it */
    }
    free(list.v);
    return n;
}

static uint64_t
sql_msg_pending(pt_linkstate_t *ls)
{
    return ((sql_linkstate_t *)ls)->pending;
}

static int64_t
sql_msg_for_node(pt_linkstate_t *ls, uint64_t node_id, void (*cb)(void *ctx, petal_message_t *m),
                 void *ctx)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sqlite3_stmt *st = s->st[S_MSG_FOR_NODE];
    msg_list_t list = {0};
    int rc;
    /* decode all first, so the callback may call back into the LinkState */
    sqlite3_bind_int64(st, 1, i64(node_id));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        petal_message_t *m = decode_msg(s, st, 1, col_u64(st, 0));
        if (m != NULL && list_push(&list, m) != 0) {
            pt_message_release(m);
            rc = SQLITE_NOMEM;
            break;
        }
    }
    int64_t ret = 0;
    if (rc == SQLITE_NOMEM) {
        ret = PETAL_ENOMEM;
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, "reading a node's messages");
    }
    done(st);
    if (ret != 0) {
        list_clear(&list);
        return ret;
    }
    for (size_t i = 0; i < list.n; i++) {
        cb(ctx, list.v[i]);
    }
    ret = (int64_t)list.n;
    list_clear(&list);
    return ret;
}

/* ---- Logs -------------------------------------------------------------------------------------
 */

static int
sql_log_append(pt_linkstate_t *ls, uint64_t run_id, const char *line)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sql_run_t *r;
    if (line == NULL) {
        return PETAL_EINVAL;
    }
    int rc = run_load(s, run_id, &r);
    if (rc != 0) {
        return rc;
    }
    sqlite3_stmt *st = s->st[S_LOG_INSERT];
    sqlite3_bind_int64(st, 1, i64(run_id));
    sqlite3_bind_int64(st, 2, i64(r->num_lines));
    sqlite3_bind_text(st, 3, line, -1, SQLITE_STATIC);
    rc = run_done(s, st, "appending to a run log");
    if (rc == 0) {
        r->num_lines++;
    }
    return rc;
}

typedef struct log_line {
    uint64_t index;
    char *text;
} log_line_t;

static int64_t
sql_log_read(pt_linkstate_t *ls, uint64_t run_id, uint64_t from,
             void (*cb)(void *ctx, uint64_t index, const char *line), void *ctx)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    sql_run_t *r;
    int rc = run_load(s, run_id, &r);
    if (rc != 0) {
        return rc;
    }
    if (from > INT64_MAX) {
        return PETAL_EINVAL;
    }
    sqlite3_stmt *st = s->st[S_LOG_READ];
    log_line_t *lines = NULL;
    size_t n = 0, cap = 0;
    int64_t ret = 0;
    sqlite3_bind_int64(st, 1, i64(run_id));
    sqlite3_bind_int64(st, 2, i64(from));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            log_line_t *nl = realloc(lines, ncap * sizeof(*nl));
            if (nl == NULL) {
                ret = PETAL_ENOMEM;
                break;
            }
            lines = nl;
            cap = ncap;
        }
        lines[n].index = col_u64(st, 0);
        lines[n].text = col_strdup(st, 1);
        if (lines[n].text == NULL) {
            ret = PETAL_ENOMEM;
            break;
        }
        n++;
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        ret = db_fail(s, "reading a run log");
    }
    done(st);
    uint64_t next = from;
    for (size_t i = 0; i < n; i++) {
        if (ret == 0) {
            cb(ctx, lines[i].index, lines[i].text);
            next = lines[i].index + 1;
        }
        free(lines[i].text);
    }
    free(lines);
    return ret != 0 ? ret : (int64_t)next;
}

/* ---- Bundles ----------------------------------------------------------------------------------
 */

static int
sql_bundle_put(pt_linkstate_t *ls, const char *hash, const void *data, size_t len)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    if (hash == NULL || !valid_hash(hash) || data == NULL || len == 0) {
        return PETAL_EINVAL;
    }
    sqlite3_stmt *st = s->st[S_BUNDLE_INSERT];
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    int rc = bind_blob(s, st, 2, data, len);
    if (rc != 0) {
        done(st);
        return rc;
    }
    return run_done(s, st, "storing a bundle");
}

static int
sql_bundle_get(pt_linkstate_t *ls, const char *hash, pt_buf_t **out)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    if (hash == NULL || !valid_hash(hash)) {
        return PETAL_EINVAL;
    }
    sqlite3_stmt *st = s->st[S_BUNDLE_GET];
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        pt_buf_t *b = col_buf(st, 0);
        if (b == NULL) {
            ret = PETAL_ENOMEM;
        } else {
            *out = b;
        }
    } else {
        ret = rc == SQLITE_DONE ? PETAL_ENOENT : db_fail(s, "reading a bundle");
    }
    done(st);
    return ret;
}

/* ---- Open and close ---------------------------------------------------------------------------
 */

static void
sql_free(pt_linkstate_t *ls)
{
    sql_linkstate_t *s = (sql_linkstate_t *)ls;
    if (s == NULL) {
        return;
    }
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    if (s->db != NULL && sqlite3_close(s->db) != SQLITE_OK) {
        PT_ERROR("LinkState database %s: close failed: %s", s->path, sqlite3_errmsg(s->db));
        sqlite3_close_v2(s->db);
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd); /* after SQLite closed its descriptors (POSIX lock semantics) */
    }
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&s->runs, &it, &key, &val);) {
        run_free(val);
    }
    pt_u64map_fini(&s->runs);
    free(s->path);
    free(s);
}

static const pt_linkstate_ops_t sqlite_ops = {
    .free = sql_free,
    .nodes_create = sql_nodes_create,
    .node_get = sql_node_get,
    .node_set_online = sql_node_set_online,
    .node_ids_online = sql_node_ids_online,
    .node_register = sql_node_register,
    .node_list = sql_node_list,
    .run_create = sql_run_create,
    .run_ids = sql_run_ids,
    .run_get = sql_run_get,
    .run_set_status = sql_run_set_status,
    .msg_put = sql_msg_put,
    .msg_take = sql_msg_take,
    .msg_expire = sql_msg_expire,
    .msg_pending = sql_msg_pending,
    .msg_for_node = sql_msg_for_node,
    .log_append = sql_log_append,
    .log_read = sql_log_read,
    .bundle_put = sql_bundle_put,
    .bundle_get = sql_bundle_get,
};

/* One integer from a one-off query; SQLITE_OK or the SQLite error (message on the connection). */
static int
query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* The file's schema version (0 for a new, empty database) after checking it is ours. */
static int
read_schema_version(sql_linkstate_t *s, int64_t *version, char *err, size_t err_cap)
{
    sqlite3_int64 tables = 0, ours = 0, v = 0;
    int rc = query_int(s->db, "SELECT count(*) FROM sqlite_master", &tables);
    if (rc == SQLITE_OK) {
        rc = query_int(s->db,
                       "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                       " AND name = 'schema_version'",
                       &ours);
    }
    if (rc != SQLITE_OK) {
        set_err(err, err_cap,
                "cannot use %s as the SuperLink database: %s (is it a file written by "
                "`petal-superlink --database`?)",
                s->path, sqlite3_errmsg(s->db));
        return PETAL_EIO;
    }
    if (tables == 0) {
        *version = 0;
        return 0;
    }
    if (ours == 0) {
        set_err(err, err_cap,
                "%s is a SQLite database but not a Petal SuperLink database (it has no "
                "schema_version table); give --database a new file name",
                s->path);
        return PETAL_EIO;
    }
    rc = query_int(s->db, "SELECT max(version) FROM schema_version", &v);
    if (rc != SQLITE_OK) {
        set_err(err, err_cap, "cannot read the schema version of %s: %s", s->path,
                sqlite3_errmsg(s->db));
        return PETAL_EIO;
    }
    if (v > SCHEMA_VERSION) {
        set_err(err, err_cap,
                "%s has SuperLink database schema version %lld, newer than this Petal "
                "understands (%d); use the newer Petal that wrote it, or another --database file",
                s->path, (long long)v, SCHEMA_VERSION);
        return PETAL_EVERSION;
    }
    if (v < 1) {
        set_err(err, err_cap, "%s has an invalid SuperLink database schema version (%lld)", s->path,
                (long long)v);
        return PETAL_EIO;
    }
    *version = v;
    return 0;
}

/* Creates the tables or upgrades them, and settles what a restart leaves behind. */
static int
prepare_file(sql_linkstate_t *s, int64_t version, char *err, size_t err_cap)
{
    char *msg = NULL;
    char sql[256];
    double now = pt_now_seconds();
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc == SQLITE_OK && version == 0) {
        rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, &msg);
    }
    /* (version 1 is the only one so far: upgrades from older versions go here) */
    int64_t failed = 0;
    if (rc == SQLITE_OK) {
        snprintf(sql, sizeof(sql),
                 "UPDATE runs SET status = %d, result = %d, reason = '%s', finished_at = %.6f"
                 " WHERE status <> %d",
                 PT_RUN_FINISHED, PT_RUN_FAILED, RESTART_REASON, now, PT_RUN_FINISHED);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        failed = sqlite3_changes(s->db);
    }
    if (rc == SQLITE_OK) {
        /* nobody is connected to a SuperLink that just started */
        rc = sqlite3_exec(s->db, "UPDATE nodes SET online = 0 WHERE online <> 0", NULL, NULL, &msg);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK) {
        set_err(err, err_cap, "cannot prepare the SuperLink database %s: %s", s->path,
                msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return PETAL_EIO;
    }
    if (failed > 0) {
        PT_WARN("LinkState database %s: %lld run(s) were not finished when the SuperLink "
                "stopped; marked finished:failed",
                s->path, (long long)failed);
    }
    return 0;
}

int
pt_linkstate_sqlite_open(const char *path, pt_linkstate_t **out, char *err, size_t err_cap)
{
    sql_linkstate_t *s = NULL;
    int64_t version = 0;
    sqlite3_int64 v = 0;
    int rc = PETAL_ENOMEM;
    if (path == NULL || path[0] == '\0' || out == NULL) {
        set_err(err, err_cap, "no SuperLink database file name given");
        return PETAL_EINVAL;
    }
    if (strcmp(path, ":memory:") == 0) {
        set_err(err, err_cap, "%s is not a file: leave out --database for in-memory state", path);
        return PETAL_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        set_err(err, err_cap, "out of memory opening %s", path);
        return PETAL_ENOMEM;
    }
    s->lock_fd = -1;
    if ((s->path = strdup(path)) == NULL) {
        set_err(err, err_cap, "out of memory opening %s", path);
        goto fail;
    }
    s->base.ops = &sqlite_ops;
    pt_u64map_init(&s->runs);
    pt_codec_limits_default(&s->limits);
    /* our own bytes: only the structure is checked, not the sizes a network peer may send */
    s->limits.max_frame_bytes = UINT64_MAX;
    s->limits.max_records = UINT32_MAX;
    s->limits.max_array_elements = UINT64_MAX;
    s->limits.max_string_bytes = UINT64_MAX;
    s->limits.max_list_elements = UINT64_MAX;

    rc = PETAL_EIO;
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        set_err(err, err_cap, "cannot open the SuperLink database %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        set_err(err, err_cap,
                errno == EWOULDBLOCK
                    ? "the SuperLink database %s is in use by another SuperLink (one process "
                      "per file)"
                    : "cannot lock the SuperLink database %s",
                path);
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        set_err(err, err_cap, "cannot open the SuperLink database %s: %s", path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 2000); /* a backup may hold a lock for a moment */

    rc = read_schema_version(s, &version, err, err_cap);
    if (rc != 0) {
        goto fail;
    }
    rc = PETAL_EIO;
    char mode[16] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (strcmp(mode, "wal") != 0) {
        set_err(err, err_cap, "cannot switch the SuperLink database %s to WAL mode: %s", path,
                sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(err, err_cap, "cannot configure the SuperLink database %s: %s", path,
                sqlite3_errmsg(s->db));
        goto fail;
    }
    rc = prepare_file(s, version, err, err_cap);
    if (rc != 0) {
        goto fail;
    }
    rc = PETAL_EIO;
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            set_err(err, err_cap, "cannot prepare statements on the SuperLink database %s: %s",
                    path, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    if (query_int(s->db, "SELECT coalesce(max(node_id), 0) FROM nodes", &v) != SQLITE_OK) {
        set_err(err, err_cap, "cannot read nodes from %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    s->next_node_id = (uint64_t)v + 1;
    if (query_int(s->db, "SELECT count(*) FROM messages", &v) != SQLITE_OK) {
        set_err(err, err_cap, "cannot read messages from %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    s->pending = (uint64_t)v;
    *out = &s->base;
    return 0;
fail:
    sql_free(&s->base);
    return rc;
}
