/* history.h - a run's per-round metrics and final arrays, written as JSON, CSV or msgpack. */
#ifndef PT_HISTORY_H
#define PT_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

/*
 * Collected from a run observer (ServerApp thread) and read after the run (any one thread at a
 * time; the history has no lock of its own).
 */
typedef struct pt_history pt_history_t;

pt_history_t *pt_history_alloc(void);
void pt_history_free(pt_history_t *h);
/* Copies the run config (for the JSON). */
int pt_history_set_config(pt_history_t *h, const petal_configrecord_t *config);
/* Copies the metrics of one phase ("train", "evaluate", "server", ...) of round >= 1. */
int pt_history_add(pt_history_t *h, uint32_t round, const char *phase,
                   const petal_metricrecord_t *m);
/* Seconds since the start of the run when the round's last metrics came in. */
void pt_history_set_round_time(pt_history_t *h, uint32_t round, double seconds);
/* Keeps a reference to the final arrays (no copy of their bytes). */
int pt_history_set_final_arrays(pt_history_t *h, const petal_arrayrecord_t *arrays);

uint32_t pt_history_rounds(const pt_history_t *h);
/* The metrics of a round's phase, or NULL. */
const petal_metricrecord_t *pt_history_get(const pt_history_t *h, uint32_t round,
                                           const char *phase);
double pt_history_round_time(const pt_history_t *h, uint32_t round);
const petal_arrayrecord_t *pt_history_final_arrays(const pt_history_t *h);
/* Lower-case hex SHA-256 of the final arrays' encoding (65 bytes with the NUL); "" if none. */
int pt_history_arrays_sha256(const pt_history_t *h, char out[65]);

/* The one-line summary of a round that petal sim prints and a run's log carries:
 * "round 3/5  num-replies 10  num-failures 0  train-loss 0.5451  eval-loss ...  0.40s". */
void pt_history_format_round(const pt_history_t *h, uint32_t round, int64_t total_rounds, char *buf,
                             size_t cap);

/* Writers; 0, or a negative error with a sentence in err naming the path. */
int pt_history_write_json(const pt_history_t *h, const char *path, char *err, size_t cap);
int pt_history_write_csv(const pt_history_t *h, const char *path, char *err, size_t cap);
/* The JSON of pt_history_write_json as a malloc'd string; NULL when out of memory. */
char *pt_history_json(const pt_history_t *h);
/* The final ArrayRecord as a RecordDict {"arrays": ...} in Petal's msgpack encoding. */
int pt_history_save_arrays(const pt_history_t *h, const char *path, char *err, size_t cap);

#endif
