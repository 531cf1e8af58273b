/* ctlclient.h - a blocking request/response client for the Control API (the CLI's side). */
#ifndef PT_CTLCLIENT_H
#define PT_CTLCLIENT_H

#include <stddef.h>

#include "transport/secure.h"
#include "transport/transport.h"

/*
 * Runs a private runtime on the calling thread: connects to `address` (over the secure channel
 * with `secure`, which must stay valid during the call; plain frames when NULL), sends `request`
 * (taken in every case) and hands each frame that comes back to on_frame until it returns
 * non-zero, the connection ends, or `timeout` seconds pass (0 = no limit). A CONTROL_ERROR
 * frame ends the exchange with its reason in err. Returns 0, or a negative error with err set
 * (PETAL_EPROTO when the secure handshake failed or the peer speaks the other mode).
 */
typedef int (*pt_ctl_frame_fn)(void *ctx, pt_frame_t *f);

int pt_ctl_exchange(const char *address, const pt_secure_opts_t *secure, pt_frame_t *request,
                    pt_ctl_frame_fn on_frame, void *ctx, double timeout, char *err, size_t err_cap);

/* "HOST:PORT" or "tcp://HOST:PORT" as a transport address in buf. */
int pt_ctl_address(const char *hostport, char *buf, size_t cap);

#endif
