/* supernode.h - the SuperNode actor: a data owner's agent that runs ClientApps for the SuperLink.
 */
#ifndef PT_SUPERNODE_H
#define PT_SUPERNODE_H

#include <stdint.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "runtime/keys.h"

/*
 * Connects out to the SuperLink (Fleet protocol), registers with its node key and node config,
 * receives instructions pushed to it, fetches the run and its app bundle when it does not have
 * them (verified by hash, cached on disk), runs the ClientApp and pushes the reply back. Replies
 * stay queued until the SuperLink acknowledges them, so none is lost across a reconnect; an
 * instruction delivered twice is answered once. After a fault it reconnects with exponential
 * backoff and jitter and keeps its node id (the key is the identity).
 */
typedef struct pt_supernode pt_supernode_t;

enum pt_isolation { PT_ISOLATION_THREAD = 0, PT_ISOLATION_PROCESS = 1 };

typedef struct pt_supernode_opts {
    const char *superlink_address;           /* "tcp://HOST:PORT" */
    const char *node_key;                    /* identity; NULL: a random one for this process */
    const petal_configrecord_t *node_config; /* copied; may be NULL */
    uint32_t max_retries;  /* reconnect attempts in a row before giving up; 0 = unlimited */
    double max_wait_time;  /* seconds of trying to reconnect before giving up; 0 = unlimited */
    const char *cache_dir; /* where bundles are unpacked; NULL: $XDG_CACHE_HOME/petal/bundles */
    int isolation;         /* pt_isolation */
    const char *self_exe;  /* this executable, for process isolation's children */
    /* The secure channel (transport/secure.h) when identity is set (borrowed; must outlive the
     * node): its public key is the node's identity (node_key is not used), and it talks only to
     * a SuperLink whose key is superlink_pk (required then; copied). A SuperLink with another
     * key is an error that stops the node (exit status 1). NULL identity: plain frames. */
    const pt_keypair_t *identity;
    const uint8_t *superlink_pk;
    const char *superlink_pk_source; /* where the pin came from, for messages ("FILE") */
    double handshake_timeout;        /* seconds; 0: the secure channel's default */
    unsigned ciphers;                /* record ciphers offered (transport/secure.h); 0: all */
    /* App publishers (borrowed; must outlive the node). NULL: bundles need no signature, but a
     * present one must verify. Set (even empty): only bundles signed by a key in the list run;
     * unsigned or untrusted bundles, and runs of a local app directory, fail before anything
     * is unpacked, and the run's instructions get PETAL_E_INVALID_BUNDLE error replies. */
    const pt_keylist_t *trusted_publishers;
} pt_supernode_opts_t;

/* Spawns the actor and dials. The runtime shuts down when the node gives up (see the opts) or
 * is stopped. Loop thread. */
int pt_supernode_start(pt_runtime_t *rt, const pt_supernode_opts_t *opts, pt_supernode_t **out);
/* Exit status for the daemon: 0 after a clean stop, 1 when it gave up reconnecting or the
 * SuperLink's key did not match the pinned one. */
int pt_supernode_exit_status(const pt_supernode_t *sn);
void pt_supernode_release(pt_supernode_t *sn);

#endif
