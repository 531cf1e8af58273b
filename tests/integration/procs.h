/* procs.h - integration test helpers: petal daemons and CLI runs as child processes. */
#ifndef PETAL_TEST_PROCS_H
#define PETAL_TEST_PROCS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The approach of test_deploy.c, shared by test_deploy, test_signed and test_security: every
 * test starts build/bin/petal-superlink, petal-supernode and petal as child processes on
 * 127.0.0.1 (ports from port 0; insecure, or with keys), with stdout and stderr captured in
 * files of a fresh temporary directory. No process outlives its test:
 *   - every child gets its own process group, dies with the test process (PR_SET_PDEATHSIG),
 *     and carries PROCS_TAG_VAR=<the suite's directory> in its environment;
 *   - procs_teardown (and an atexit handler, for tests that fail) SIGKILLs every daemon's group
 *     and then every process that carries the tag;
 *   - procs_suite_teardown, in the runner process, sweeps the tag once more.
 * Register procs_suite_setup/teardown as an unchecked fixture and procs_setup/teardown as a
 * checked one, and call procs_main_init() first thing in main(). Every wait has a deadline.
 */

#define PROCS_BIN_DIR PETAL_BUILD_DIR "/bin"
#define PETAL_BIN PROCS_BIN_DIR "/petal"
#define SUPERLINK_BIN PROCS_BIN_DIR "/petal-superlink"
#define SUPERNODE_BIN PROCS_BIN_DIR "/petal-supernode"
#define TESTKIT_DIR PETAL_BUILD_DIR "/plugins/testkit"
#define PROCS_TAG_VAR "PETAL_PROCS_TEST_TAG"
#define CLI_TIMEOUT 30.0   /* one petal ls/nodes/log/stop/build call */
#define START_TIMEOUT 15.0 /* a daemon's first sign of life */
#define RUN_TIMEOUT 90.0   /* a whole run */
#define PROCS_MAX_DAEMONS 16
#define PROCS_MAX_ARGS 48
#define PATH_CAP 1200

typedef struct proc {
    pid_t pid;
    int reaped;
    int status;
    char name[32];
    char out[PATH_CAP];
    char err[PATH_CAP];
} proc_t;

typedef struct tool_result {
    int code;  /* exit status, -1 when it ended by a signal */
    int signo; /* the signal that ended it, 0 if none */
    char *out;
    char *err;
} tool_result_t;

typedef struct superlink {
    proc_t *p;
    char fleet[96];   /* "127.0.0.1:PORT" */
    char control[96]; /* "127.0.0.1:PORT" */
    /* How the helpers' own CLI calls (nodes_json, run_status, ...) authenticate: NULL keys means
     * --insecure, otherwise --keys cli_keys --superlink-key cli_pin. */
    const char *cli_keys;
    const char *cli_pin;
} superlink_t;

/* A NULL-terminated argument vector being built (v is always NULL-terminated). */
typedef struct args {
    const char *v[PROCS_MAX_ARGS];
    int n;
} args_t;

/* ---- Fixtures -------------------------------------------------------------------------------- */

/* `suite` names the temporary directory (petal-<suite>-XXXXXX). Call before srunner_run_all. */
void procs_main_init(const char *suite);
void procs_suite_setup(void);
void procs_suite_teardown(void);
void procs_setup(void);
void procs_teardown(void);

/* ---- Time, files -------------------------------------------------------------------------- */

double now_s(void);
void nap_ms(long ms);
/* A file's bytes with a NUL after them (NULL when it cannot be read). */
char *read_all(const char *path, size_t *len_out);
/* A file's text, "" when it cannot be read (for failure messages). */
char *text_of(const char *path);
/* <this test's directory>/<name>. */
void work_path(char *buf, size_t cap, const char *name);
int count_text(const char *hay, const char *needle);

/* ---- Argument vectors --------------------------------------------------------------------- */

/* Appends s (the test fails when the vector is full). */
void args_add(args_t *a, const char *s);
/* Appends the NULL-terminated arguments of ap. */
void args_add_va(args_t *a, va_list ap);

/* ---- Processes ---------------------------------------------------------------------------- */

int proc_exited(proc_t *p);
int proc_wait(proc_t *p, double timeout);
void proc_kill_group(proc_t *p);
/* A long-lived child (argv NULL-terminated), killed in the teardown whatever happens. */
proc_t *daemon_spawn(const char *name, const char *const *argv);
/* Runs bin with the NULL-terminated arguments and waits for it, at most `timeout` seconds. */
void run_tool(tool_result_t *r, double timeout, const char *bin, ...) __attribute__((sentinel));
/* Runs a->v (a->v[0] is the binary) the same way. */
void run_args(tool_result_t *r, double timeout, const args_t *a);
void tool_free(tool_result_t *r);
void assert_ok(const tool_result_t *r, const char *what);
/* A refusal: exit status `code` (-2: any non-zero) and every needle (NULL-terminated) on
 * stderr. */
void assert_refused(const tool_result_t *r, int code, ...) __attribute__((sentinel));
/* Waits until `needle` shows up in p's stdout (which = 1) or stderr (2); 1 if it did. */
int wait_text(proc_t *p, int which, const char *needle, double timeout);
/* Waits for a daemon to exit by itself; returns its exit status (the test fails otherwise). */
int daemon_exit(proc_t *p, double timeout);
/* Fails the test unless the file at `path` (called `what` in the message) contains `needle`. */
void assert_file_has(const char *path, const char *what, const char *needle);

/* ---- The daemons and the CLI -------------------------------------------------------------- */

/* petal-superlink --insecure with the extra arguments (NULL-terminated), ports 127.0.0.1:0,
 * cache <workdir>/superlink-cache. Returns once it printed where it listens. */
void superlink_start(superlink_t *l, ...) __attribute__((sentinel));
/* petal-superlink secured with --keys `keys` (--allow-nodes `allow_nodes`, --operators
 * `operators` unless NULL), or --insecure when `keys` is NULL, with the extra arguments (NULL:
 * none); otherwise as superlink_start. l->cli_keys/cli_pin start NULL: set them for a secure one.
 */
void superlink_start_keys(superlink_t *l, const char *keys, const char *allow_nodes,
                          const char *operators, const args_t *extra);
/* A SuperNode for partition `partition` of `partitions` (--node-key `key` unless NULL), cache
 * <workdir>/node<partition>-cache, with the extra arguments (NULL-terminated). */
proc_t *supernode_start(const superlink_t *l, int partition, int partitions, const char *key, ...)
    __attribute__((sentinel));
/* A SuperNode called `name` (cache <workdir>/<name>-cache) for partition `partition` of
 * `partitions`, with the arguments `a` (which say --insecure or give its keys). */
proc_t *supernode_start_args(const superlink_t *l, const char *name, int partition, int partitions,
                             const args_t *a);
/* The node id from the SuperNode's latest "registered ... as node N" line. */
uint64_t supernode_id(proc_t *p);
/* Appends how the CLI reaches l: --superlink CONTROL, then --insecure or l's CLI keys. */
void superlink_cli_args(const superlink_t *l, args_t *a);
/* `petal nodes --format json`. */
char *nodes_json(const superlink_t *l);
/* Waits until `want` nodes are online; returns the listing. */
char *wait_online(const superlink_t *l, int want, double timeout);
/* The status and reason `petal ls --format json` gives run `run_id`; 0, or -1 if unlisted. */
int run_status(const superlink_t *l, int64_t run_id, char *status, size_t scap, char *reason,
               size_t rcap);
/* Waits until run `run_id` has status `want` (reason in `reason`); the seconds it took. */
double wait_run_status(const superlink_t *l, int64_t run_id, const char *want, char *reason,
                       size_t rcap, double timeout);

#endif
