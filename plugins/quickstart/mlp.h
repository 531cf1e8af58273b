/* mlp.h - a two-layer perceptron (in-hidden-out, ReLU, softmax cross-entropy) on OpenBLAS. */
#ifndef PT_QUICKSTART_MLP_H
#define PT_QUICKSTART_MLP_H

#include <stddef.h>
#include <stdint.h>

#include <petal/data.h>

/*
 * The model is four float tensors in PyTorch's layout (weights are out x in, row-major):
 * w1 [hidden, in], b1 [hidden], w2 [out, hidden], b2 [out]. A pt_mlp_t only points at them;
 * the caller owns the memory (a contiguous buffer through pt_mlp_view, or four arrays of a
 * message). Nothing here is global: two threads may train two models at once.
 */
typedef struct pt_mlp {
    uint32_t in;
    uint32_t hidden;
    uint32_t out;
    float *w1;
    float *b1;
    float *w2;
    float *b2;
} pt_mlp_t;

/* Per-thread scratch for batches of up to `batch` examples, and a gradient of the model's shape. */
typedef struct pt_mlp_work {
    uint32_t batch;
    float *x;   /* batch x in: the gathered inputs */
    float *h;   /* batch x hidden: ReLU activations */
    float *z;   /* batch x out: logits, then probabilities */
    float *dh;  /* batch x hidden */
    uint8_t *y; /* batch: the gathered labels */
    float *buf;
    pt_mlp_t grad; /* points into buf */
} pt_mlp_work_t;

/* Floats in the contiguous layout w1 | b1 | w2 | b2 (each tensor starts 64-byte aligned). */
size_t pt_mlp_num_params(uint32_t in, uint32_t hidden, uint32_t out);
/* Points m's tensors into params (pt_mlp_num_params floats). */
void pt_mlp_view(pt_mlp_t *m, uint32_t in, uint32_t hidden, uint32_t out, float *params);
/* Deterministic from seed: w1 He-uniform U(+-sqrt(6/in)), w2 Glorot-uniform
 * U(+-sqrt(6/(hidden+out))), biases 0; drawn with petal_rng (xoshiro256**). */
void pt_mlp_init(pt_mlp_t *m, uint64_t seed);
/* Copies every tensor of src into dst (same shape). */
void pt_mlp_copy(pt_mlp_t *dst, const pt_mlp_t *src);

/* Returns 0 or PETAL_ENOMEM / PETAL_EINVAL. */
int pt_mlp_work_alloc(pt_mlp_work_t *w, const pt_mlp_t *shape, uint32_t batch);
void pt_mlp_work_free(pt_mlp_work_t *w);

/* Forward and backward on b <= w->batch examples (x: b x in, y: b labels < out): the gradient of
 * the mean cross-entropy goes into w->grad; returns that mean loss. */
double pt_mlp_grad(const pt_mlp_t *m, pt_mlp_work_t *w, const float *x, const uint8_t *y,
                   uint32_t b);

/* m -= lr * (grad + mu * (m - global)); global may be NULL when mu == 0 (plain SGD). */
void pt_mlp_sgd_step(pt_mlp_t *m, const pt_mlp_t *grad, float lr, float mu, const pt_mlp_t *global);

/*
 * One epoch of minibatch SGD over ds examples idx[0..count), visited in an order shuffled with
 * rng (the last batch may be smaller). With mu > 0 it is FedProx's local objective, the
 * proximal term pulling towards `global`. *mean_loss is the mean cross-entropy of the epoch
 * (without the proximal term). Returns 0, PETAL_EINVAL or PETAL_ENOMEM.
 */
int pt_mlp_train_epoch(pt_mlp_t *m, pt_mlp_work_t *w, const petal_dataset_t *ds,
                       const uint64_t *idx, uint64_t count, float lr, float mu,
                       const pt_mlp_t *global, petal_rng_t *rng, double *mean_loss);

/* Mean cross-entropy and accuracy over ds examples idx[0..count) (all of ds if idx is NULL).
 * Returns 0 or PETAL_EINVAL. */
int pt_mlp_evaluate(const pt_mlp_t *m, pt_mlp_work_t *w, const petal_dataset_t *ds,
                    const uint64_t *idx, uint64_t count, double *loss, double *acc);

#endif
