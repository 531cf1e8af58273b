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
};

#define PT_PARAMS "params"     /* the ConfigRecord holding a frame's parameters */
#define PT_RUN_CONFIG "config" /* the ConfigRecord holding a run config in PT_FLEET_RUN */

#endif
