/* protocol.h - frame kinds of the Fleet, Grid and Control protocols (see docs/protocol.md). */
#ifndef PT_PROTOCOL_H
#define PT_PROTOCOL_H

/*
 * Every frame carries PT_PROTOCOL_VERSION and one of these kinds; a frame of an unknown kind
 * or version is refused with a logged reason. Parameters travel in the frame's message: a
 * ConfigRecord named PT_PARAMS in its content, and the Message itself for instructions and
 * replies. The numbers are on the wire: never renumber.
 */
enum pt_frame_kind {
    /* Fleet: SuperNode (or the simulation's virtual nodes) <-> SuperLink */
    PT_FLEET_HELLO = 0x0101,       /* node -> link: params node-key?, node-config, virtual-nodes? */
    PT_FLEET_WELCOME = 0x0102,     /* link -> node: params node-id, count, heartbeat-interval */
    PT_FLEET_HEARTBEAT = 0x0103,   /* both ways; ack carries the last seq received */
    PT_FLEET_INSTRUCTION = 0x0104, /* link -> node: the Message to run */
    PT_FLEET_REPLY = 0x0105,       /* node -> link: the reply Message */
    PT_FLEET_GET_RUN = 0x0106,     /* node -> link: params run-id */
    PT_FLEET_RUN = 0x0107,         /* link -> node: params run-id, app-dir, run config */
    PT_FLEET_GOODBYE = 0x0108,     /* node -> link: clean disconnect */
    PT_FLEET_ERROR = 0x0109,       /* either way: params code, reason; then the sender closes */
    PT_FLEET_ACK = 0x010a,         /* link -> node: params message-id (a reply was stored) */
    PT_FLEET_GET_BUNDLE = 0x010b,  /* node -> link: params bundle-hash */
    PT_FLEET_BUNDLE = 0x010c,      /* link -> node: params bundle-hash; ArrayRecord "bundle" */

    /* Control: CLI (petal run/ls/log/stop/nodes) <-> SuperLink */
    PT_CONTROL_START_RUN = 0x0301,   /* ArrayRecord "bundle" (uint8 bytes), ConfigRecord "config" */
    PT_CONTROL_RUN_STARTED = 0x0302, /* params run-id, bundle-hash */
    PT_CONTROL_LIST_RUNS = 0x0303,   /* no params */
    PT_CONTROL_RUNS = 0x0304,        /* one ConfigRecord per run, named by run id */
    PT_CONTROL_STREAM_LOG = 0x0305,  /* params run-id, from, follow */
    PT_CONTROL_LOG = 0x0306,         /* params run-id, from, lines (string list), finished */
    PT_CONTROL_STOP_RUN = 0x0307,    /* params run-id */
    PT_CONTROL_STOPPED = 0x0308,     /* params run-id, status */
    PT_CONTROL_LIST_NODES = 0x0309,  /* no params */
    PT_CONTROL_NODES = 0x030a,       /* one ConfigRecord per node, named by node id */
    PT_CONTROL_ERROR = 0x030b,       /* params code, reason */
    PT_CONTROL_GET_RESULT = 0x030c,  /* params run-id */
    PT_CONTROL_RESULT = 0x030d,      /* params run-id, history-json; ArrayRecord "arrays" */

    /* Exec: a SuperNode <-> its ClientApp child process (process isolation), over ipc */
    PT_EXEC_INIT = 0x0401,        /* parent -> child: params app-dir; ConfigRecord "config" */
    PT_EXEC_INIT_FAILED = 0x0402, /* child -> parent: params reason */
    PT_EXEC_RUN = 0x0403,         /* parent -> child: the instruction; params node-id, run-id;
                                   * ConfigRecord "node-config" (the message rides in the frame) */
    PT_EXEC_REPLY = 0x0404,       /* child -> parent: the reply Message */
};

#define PT_PARAMS "params"        /* the ConfigRecord holding a frame's parameters */
#define PT_RUN_CONFIG "config"    /* the ConfigRecord holding a run config in PT_FLEET_RUN */
#define PT_BUNDLE_RECORD "bundle" /* ArrayRecord with one uint8 array "bytes": a bundle */

#endif
