/* mlp.c - the quickstart model: 784-128-10 perceptron, minibatch SGD/FedProx on OpenBLAS sgemm. */
#include "mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN_FLOATS 16 /* 64 bytes */

static size_t
round_up(size_t n)
{
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

size_t
pt_mlp_num_params(uint32_t in, uint32_t hidden, uint32_t out)
{
    return round_up((size_t)hidden * in) + round_up(hidden) + round_up((size_t)out * hidden) +
           round_up(out);
}

void
pt_mlp_view(pt_mlp_t *m, uint32_t in, uint32_t hidden, uint32_t out, float *params)
{
    m->in = in;
    m->hidden = hidden;
    m->out = out;
    m->w1 = params;
    m->b1 = m->w1 + round_up((size_t)hidden * in);
    m->w2 = m->b1 + round_up(hidden);
    m->b2 = m->w2 + round_up((size_t)out * hidden);
}

static void
fill_uniform(float *a, size_t n, double limit, petal_rng_t *r)
{
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)((2.0 * petal_rng_uniform(r) - 1.0) * limit);
    }
}

void
pt_mlp_init(pt_mlp_t *m, uint64_t seed)
{
    petal_rng_t r;
    petal_rng_seed(&r, seed);
    fill_uniform(m->w1, (size_t)m->hidden * m->in, sqrt(6.0 / m->in), &r);
    memset(m->b1, 0, sizeof(float) * m->hidden);
    fill_uniform(m->w2, (size_t)m->out * m->hidden, sqrt(6.0 / (m->hidden + m->out)), &r);
    memset(m->b2, 0, sizeof(float) * m->out);
}

void
pt_mlp_copy(pt_mlp_t *dst, const pt_mlp_t *src)
{
    memcpy(dst->w1, src->w1, sizeof(float) * src->hidden * src->in);
    memcpy(dst->b1, src->b1, sizeof(float) * src->hidden);
    memcpy(dst->w2, src->w2, sizeof(float) * src->out * src->hidden);
    memcpy(dst->b2, src->b2, sizeof(float) * src->out);
}

int
pt_mlp_work_alloc(pt_mlp_work_t *w, const pt_mlp_t *shape, uint32_t batch)
{
    memset(w, 0, sizeof(*w));
    if (batch == 0 || shape->in == 0 || shape->hidden == 0 || shape->out == 0) {
        return PETAL_EINVAL;
    }
    size_t nx = round_up((size_t)batch * shape->in);
    size_t nh = round_up((size_t)batch * shape->hidden);
    size_t nz = round_up((size_t)batch * shape->out);
    size_t np = pt_mlp_num_params(shape->in, shape->hidden, shape->out);
    size_t total = nx + 2 * nh + nz + np;
    w->buf = aligned_alloc(64, total * sizeof(float));
    w->y = malloc(batch);
    if (w->buf == NULL || w->y == NULL) {
        pt_mlp_work_free(w);
        return PETAL_ENOMEM;
    }
    memset(w->buf, 0, total * sizeof(float)); /* the padding between tensors stays 0 */
    w->batch = batch;
    w->x = w->buf;
    w->h = w->x + nx;
    w->dh = w->h + nh;
    w->z = w->dh + nh;
    pt_mlp_view(&w->grad, shape->in, shape->hidden, shape->out, w->z + nz);
    return 0;
}

void
pt_mlp_work_free(pt_mlp_work_t *w)
{
    free(w->buf);
    free(w->y);
    memset(w, 0, sizeof(*w));
}

/* Forward pass on w->x (b rows): leaves activations in w->h and probabilities in w->z; returns
 * the summed cross-entropy against y and counts correct argmax predictions. */
static double
forward(const pt_mlp_t *m, pt_mlp_work_t *w, const uint8_t *y, uint32_t b, uint64_t *correct)
{
    const int in = (int)m->in, hid = (int)m->hidden, out = (int)m->out;
    /* h = relu(x w1^T + b1) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, hid, in, 1.0f, w->x, in, m->w1, in,
                0.0f, w->h, hid);
    for (uint32_t i = 0; i < b; i++) {
        float *row = w->h + (size_t)i * hid;
        for (int j = 0; j < hid; j++) {
            float v = row[j] + m->b1[j];
            row[j] = v > 0.0f ? v : 0.0f;
        }
    }
    /* z = h w2^T + b2, then softmax per row */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, out, hid, 1.0f, w->h, hid, m->w2,
                hid, 0.0f, w->z, out);
    double loss = 0.0;
    for (uint32_t i = 0; i < b; i++) {
        float *row = w->z + (size_t)i * out;
        int best = 0;
        float max = -INFINITY;
        for (int j = 0; j < out; j++) {
            row[j] += m->b2[j];
            if (row[j] > max) {
                max = row[j];
                best = j;
            }
        }
        double sum = 0.0;
        for (int j = 0; j < out; j++) {
            sum += exp((double)(row[j] - max));
        }
        loss += log(sum) - (double)(row[y[i]] - max);
        for (int j = 0; j < out; j++) {
            row[j] = (float)(exp((double)(row[j] - max)) / sum);
        }
        if (correct != NULL && best == y[i]) {
            (*correct)++;
        }
    }
    return loss;
}

double
pt_mlp_grad(const pt_mlp_t *m, pt_mlp_work_t *w, const float *x, const uint8_t *y, uint32_t b)
{
    const int in = (int)m->in, hid = (int)m->hidden, out = (int)m->out;
    if (x != w->x) {
        memcpy(w->x, x, sizeof(float) * b * m->in);
    }
    double loss = forward(m, w, y, b, NULL);
    /* dz = (p - onehot(y)) / b, in place in w->z */
    const float inv_b = 1.0f / (float)b;
    for (uint32_t i = 0; i < b; i++) {
        float *row = w->z + (size_t)i * out;
        row[y[i]] -= 1.0f;
        for (int j = 0; j < out; j++) {
            row[j] *= inv_b;
        }
    }
    pt_mlp_t *g = &w->grad;
    /* dw2 = dz^T h ; db2 = column sums of dz */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, hid, (int)b, 1.0f, w->z, out, w->h,
                hid, 0.0f, g->w2, hid);
    memset(g->b2, 0, sizeof(float) * m->out);
    for (uint32_t i = 0; i < b; i++) {
        for (int j = 0; j < out; j++) {
            g->b2[j] += w->z[(size_t)i * out + j];
        }
    }
    /* dh = (dz w2) * relu'(h) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, hid, out, 1.0f, w->z, out, m->w2,
                hid, 0.0f, w->dh, hid);
    memset(g->b1, 0, sizeof(float) * m->hidden);
    for (uint32_t i = 0; i < b; i++) {
        float *drow = w->dh + (size_t)i * hid;
        const float *hrow = w->h + (size_t)i * hid;
        for (int j = 0; j < hid; j++) {
            if (hrow[j] <= 0.0f) {
                drow[j] = 0.0f;
            }
            g->b1[j] += drow[j];
        }
    }
    /* dw1 = dh^T x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hid, in, (int)b, 1.0f, w->dh, hid, w->x,
                in, 0.0f, g->w1, in);
    return loss / b;
}

static void
step_tensor(float *p, const float *g, const float *pg, size_t n, float lr, float mu)
{
    if (mu > 0.0f && pg != NULL) {
        /* p - lr*(g + mu*(p - pg)) = (1 - lr*mu) p - lr g + lr*mu pg */
        cblas_sscal((int)n, 1.0f - lr * mu, p, 1);
        cblas_saxpy((int)n, lr * mu, pg, 1, p, 1);
    }
    cblas_saxpy((int)n, -lr, g, 1, p, 1);
}

void
pt_mlp_sgd_step(pt_mlp_t *m, const pt_mlp_t *grad, float lr, float mu, const pt_mlp_t *global)
{
    int prox = mu > 0.0f && global != NULL;
    step_tensor(m->w1, grad->w1, prox ? global->w1 : NULL, (size_t)m->hidden * m->in, lr, mu);
    step_tensor(m->b1, grad->b1, prox ? global->b1 : NULL, m->hidden, lr, mu);
    step_tensor(m->w2, grad->w2, prox ? global->w2 : NULL, (size_t)m->out * m->hidden, lr, mu);
    step_tensor(m->b2, grad->b2, prox ? global->b2 : NULL, m->out, lr, mu);
}

/* Copies examples idx[0..b) of ds into w->x / w->y; 0 or PETAL_EINVAL on a bad index/label. */
static int
gather(const pt_mlp_t *m, pt_mlp_work_t *w, const petal_dataset_t *ds, const uint64_t *idx,
       uint64_t first, uint32_t b)
{
    for (uint32_t i = 0; i < b; i++) {
        uint64_t j = idx != NULL ? idx[first + i] : first + i;
        if (j >= ds->n || ds->y[j] >= m->out) {
            return PETAL_EINVAL;
        }
        memcpy(w->x + (size_t)i * m->in, ds->x + j * ds->dim, sizeof(float) * m->in);
        w->y[i] = ds->y[j];
    }
    return 0;
}

int
pt_mlp_train_epoch(pt_mlp_t *m, pt_mlp_work_t *w, const petal_dataset_t *ds, const uint64_t *idx,
                   uint64_t count, float lr, float mu, const pt_mlp_t *global, petal_rng_t *rng,
                   double *mean_loss)
{
    if (ds == NULL || ds->dim != m->in || idx == NULL || w->batch == 0) {
        return PETAL_EINVAL;
    }
    if (count == 0) {
        *mean_loss = 0.0;
        return 0;
    }
    uint64_t *order = malloc(sizeof(*order) * count);
    if (order == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(order, idx, sizeof(*order) * count);
    petal_rng_shuffle_u64(rng, order, count);
    double total = 0.0;
    int rc = 0;
    for (uint64_t first = 0; first < count; first += w->batch) {
        uint32_t b = count - first < w->batch ? (uint32_t)(count - first) : w->batch;
        rc = gather(m, w, ds, order, first, b);
        if (rc < 0) {
            break;
        }
        total += pt_mlp_grad(m, w, w->x, w->y, b) * b;
        pt_mlp_sgd_step(m, &w->grad, lr, mu, global);
    }
    free(order);
    if (rc == 0) {
        *mean_loss = total / (double)count;
    }
    return rc;
}

int
pt_mlp_evaluate(const pt_mlp_t *m, pt_mlp_work_t *w, const petal_dataset_t *ds, const uint64_t *idx,
                uint64_t count, double *loss, double *acc)
{
    if (ds == NULL || ds->dim != m->in || w->batch == 0) {
        return PETAL_EINVAL;
    }
    if (idx == NULL) {
        count = ds->n;
    }
    double total = 0.0;
    uint64_t correct = 0;
    for (uint64_t first = 0; first < count; first += w->batch) {
        uint32_t b = count - first < w->batch ? (uint32_t)(count - first) : w->batch;
        int rc = gather(m, w, ds, idx, first, b);
        if (rc < 0) {
            return rc;
        }
        total += forward(m, w, w->y, b, &correct);
    }
    *loss = count > 0 ? total / (double)count : 0.0;
    *acc = count > 0 ? (double)correct / (double)count : 0.0;
    return 0;
}
