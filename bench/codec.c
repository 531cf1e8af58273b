/* codec.c - bench: encode + decode of a 256 MiB float32 array message vs one memcpy of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/codec.h"
#include "runtime/message.h"

#define PAYLOAD_BYTES ((uint64_t)256 << 20)
#define REPEAT 5

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
main(void)
{
    uint64_t n = PAYLOAD_BYTES / sizeof(float);
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "params");
    petal_array_t *a = petal_arrayrecord_add(r, "w", PETAL_DTYPE_FLOAT32, 1, &n);
    petal_message_t *m;
    pt_encoded_t e;
    pt_buf_t *frame;
    char *dst;
    const char *src;
    size_t data_at = 0;
    double encode_ms = 1e30;
    double decode_ms = 1e30;
    double memcpy_ms = 1e30;
    uint64_t copied_decode = 0;
    char err[256];
    float *f;

    if (a == NULL) {
        fprintf(stderr, "bench_codec: out of memory\n");
        return 1;
    }
    f = petal_array_data_mut(a);
    for (uint64_t i = 0; i < n; i++) {
        f[i] = (float)(i % 1000) * 0.001f;
    }
    m = petal_message_alloc(d, "train", 1, NULL, 0);

    for (int i = 0; i < REPEAT; i++) {
        double t0 = now_ms();
        if (pt_codec_encode(m, &e) != 0) {
            fprintf(stderr, "bench_codec: encoding failed\n");
            return 1;
        }
        double t1 = now_ms();
        encode_ms = t1 - t0 < encode_ms ? t1 - t0 : encode_ms;
        if (i + 1 < REPEAT) {
            pt_encoded_fini(&e);
        }
    }

    /* Assemble the frame a transport would receive (not timed): a 64-aligned buffer that is
     * the concatenation of the iovecs. The payload copy here is the memcpy baseline's source. */
    frame = pt_buf_alloc(e.total, 1);
    if (frame == NULL) {
        fprintf(stderr, "bench_codec: out of memory\n");
        return 1;
    }
    dst = pt_buf_data(frame);
    src = petal_array_data(a);
    for (size_t i = 0, pos = 0; i < e.niov; pos += e.iov[i].len, i++) {
        if (e.iov[i].base == src) {
            data_at = pos;
        }
        memcpy(dst + pos, e.iov[i].base, e.iov[i].len);
    }

    /* Baseline: one memcpy of the payload into already-faulted memory. */
    for (int i = 0; i < 3; i++) {
        double t0 = now_ms();
        memcpy(dst + data_at, src, (size_t)PAYLOAD_BYTES);
        double t1 = now_ms();
        memcpy_ms = t1 - t0 < memcpy_ms ? t1 - t0 : memcpy_ms;
    }

    for (int i = 0; i < REPEAT; i++) {
        petal_message_t *back = NULL;
        uint64_t copied = 0;
        double t0 = now_ms();
        int rc = pt_codec_decode(frame, 0, e.total, NULL, &back, &copied, err, sizeof(err));
        double t1 = now_ms();
        const petal_array_t *w;

        if (rc != 0) {
            fprintf(stderr, "bench_codec: decoding failed: %s\n", err);
            return 1;
        }
        decode_ms = t1 - t0 < decode_ms ? t1 - t0 : decode_ms;
        copied_decode = copied;
        w = petal_arrayrecord_get(petal_recorddict_arrays(petal_message_content(back), "params"),
                                  "w");
        if (w == NULL || petal_array_numel(w) != n || petal_array_data(w) != dst + data_at) {
            fprintf(stderr, "bench_codec: decoded array is not a view into the frame\n");
            return 1;
        }
        petal_message_free(back);
    }

    double codec_ms = encode_ms + decode_ms;
    uint64_t copied = e.copied + copied_decode;
    double ratio = codec_ms > 0 ? memcpy_ms / codec_ms : 0;

    printf("payload      %.1f MiB float32 in one ArrayRecord; frame %zu bytes in %zu iovecs\n",
           (double)PAYLOAD_BYTES / (1 << 20), e.total, e.niov);
    printf("encode       %.4f ms (best of %d)\n", encode_ms, REPEAT);
    printf("decode       %.4f ms (best of %d)\n", decode_ms, REPEAT);
    printf("codec        %.4f ms (encode + decode)\n", codec_ms);
    printf("memcpy       %.3f ms (one copy of the payload, best of 3)\n", memcpy_ms);
    printf("ratio        %.0f (memcpy / codec; target >= 10) %s\n", ratio,
           ratio >= 10 ? "ok" : "BELOW TARGET");
    printf("copied       %llu payload bytes (encode + decode; target 0) %s\n",
           (unsigned long long)copied, copied == 0 ? "ok" : "ABOVE TARGET");

    pt_encoded_fini(&e);
    pt_buf_release(frame);
    petal_message_free(m);
    return copied == 0 ? 0 : 1;
}
