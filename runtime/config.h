/* config.h - petal.toml manifests and "k=v" overrides, parsed into typed ConfigRecords. */
#ifndef PT_CONFIG_H
#define PT_CONFIG_H

#include <stddef.h>

#include <petal/petal.h>

/*
 * petal.toml is read with libinih plus a typed-value layer that accepts this TOML subset:
 *   [section] and [dotted.section] headers (bare key parts: A-Z a-z 0-9 _ -), comments with #,
 *   key = value and dotted.key = value, where value is one of
 *     "basic string" (escapes \" \\ \n \t \r \b \f \uXXXX \UXXXXXXXX), 'literal string',
 *     integer (sign, _ separators, 0x/0o/0b), float (fraction and/or exponent, inf, nan),
 *     true / false.
 * Everything else (arrays, inline tables, multi-line strings, dates, quoted keys, [[tables]],
 * bare words) is refused with "FILE:LINE: <what> is not supported (key 'k')"; a key or section
 * given twice is an error naming both lines.
 *
 * The manifest:
 *   [app]          name (required), version, description, client (required), server
 *                  -- all strings
 *   [app.config]   any keys: the run config; [app.config.sub] k = v becomes key "sub.k"
 *   [other]        any other top-level section is kept, typed, in `sections` (unknown
 *                  [app.*] sections and unknown [app] keys are errors, to catch typos)
 * Plugin paths are relative to the app directory and may not leave it (no "..", not absolute).
 */

#define PT_MANIFEST_FILE "petal.toml"
#define PT_CONFIG_MAX_KEY 128    /* longest key, dotted parts included */
#define PT_CONFIG_MAX_SECTION 49 /* longest [section] name (libinih keeps 50 bytes) */
#define PT_MANIFEST_MAX_BYTES (1u << 20)

typedef struct pt_manifest {
    char *name;
    char *version;     /* "" when absent */
    char *description; /* "" when absent */
    char *app_dir;     /* the directory, absolute when it exists */
    char *client_file; /* as written in petal.toml, relative to app_dir */
    char *server_file; /* NULL without `server`: the built-in default ServerApp runs */
    char *client_path; /* app_dir/client_file */
    char *server_path; /* app_dir/server_file, or NULL */
    /* [app.config] as a holder (a RecordDict with the ConfigRecord under "config", see
     * runtime/context.h); owned. Take it with pt_manifest_take_config(). */
    petal_recorddict_t *config_holder;
    /* Every other section as a ConfigRecord named after the section ("federations.local"). */
    petal_recorddict_t *sections;
} pt_manifest_t;

/* Reads APP_DIR/petal.toml. 0 and *out (caller frees with pt_manifest_free), or a negative
 * error with one line in err: -errno when the file cannot be read, PETAL_ECONFIG for
 * content errors ("/apps/q/petal.toml:7: arrays are not supported (key 'layers')"),
 * PETAL_ENOMEM. */
int pt_manifest_load(const char *app_dir, pt_manifest_t **out, char *err, size_t err_cap);
/* The same from memory: `label` names the file in messages, app_dir resolves plugin paths
 * (NULL: "."). `text` need not be NUL-terminated. */
int pt_manifest_parse(const char *text, size_t len, const char *label, const char *app_dir,
                      pt_manifest_t **out, char *err, size_t err_cap);
void pt_manifest_free(pt_manifest_t *m);
/* Moves the config holder out of the manifest (NULL if taken before); the caller owns it,
 * e.g. for pt_run_config_alloc(). */
petal_recorddict_t *pt_manifest_take_config(pt_manifest_t *m);

/*
 * Applies "k=v k2=v2 s='a b' t=\"x y\"" to `into` (a run config or node config), all or
 * nothing. `what` names the option in messages (NULL: "--run-config"). Keys are non-empty and
 * have no spaces, quotes or '='. Values:
 *   quoted ("..." with TOML escapes, or '...')  -> string
 *   unquoted true/false, integer, float         -> bool, int64, double (TOML syntax)
 *   any other unquoted word                     -> string
 * A key that exists keeps its type: an int64 key takes integers, a double key takes integers
 * and floats (converted), a bool key takes true/false, a string key takes any value as text.
 * Anything else is PETAL_ECONFIG: "--run-config: 'lr' expects a float, got 'abc'".
 * Returns 0, PETAL_ECONFIG or PETAL_ENOMEM (then `into` is unchanged) / PETAL_EINVAL.
 */
int pt_config_parse_overrides(const char *spec, const char *what, petal_configrecord_t *into,
                              char *err, size_t err_cap);

/*
 * Parses one complete TOML scalar ("x", 'x', 42, -1_000, 0x1f, 2.5e-3, inf, true) into *out.
 * For a string, *owned receives a malloc'd copy that out->as.str points into (free it when
 * done); otherwise *owned is NULL. PETAL_ECONFIG with the reason in err on failure.
 */
int pt_config_parse_value(const char *text, petal_value_t *out, char **owned, char *err,
                          size_t err_cap);

#endif
