/* synthetic.c - the Synthetic(alpha, beta) federated dataset of FedProx (Li et al. 2020). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>

#include "idx.h"
#include "internal.h"

/*
 * Written from the paper's description (Section 5.1 and Appendix C.1 of "Federated Optimization
 * in Heterogeneous Networks"): device k draws u_k ~ N(0, alpha), B_k ~ N(0, beta) (standard
 * deviations), W_k ~ N(u_k, 1) (dim x classes), b_k ~ N(u_k, 1), v_k ~ N(B_k, 1) (dim), then
 * its examples x ~ N(v_k, Sigma) with Sigma diagonal, Sigma_jj = j^-1.2 (j = 1..dim), and
 * y = argmax(W_k^T x + b_k) (argmax of the softmax is argmax of the logits). Device sizes are
 * floor(exp(N(size_mu, size_sigma))) + min_size, a lognormal power law.
 *
 * Synthetic-IID (iid != 0): one W, b ~ N(0, 1) shared by all devices, and v_k = B_k in every
 * coordinate (so 0 with beta = 0, as the paper's IID setting).
 *
 * Streams: sizes from combine(seed, SEED_SIZES); device k from combine(seed, k), drawn in the
 * order u, B, v (not in IID), W (row-major dim x classes), b (not in IID), then per example
 * x_1..x_dim; Synthetic-IID's shared W, b from combine(seed, SEED_SHARED). So a device's data
 * depends only on the seed, its index and its size.
 */
#define SEED_SIZES UINT64_C(0x73697a6573000000)  /* "sizes" */
#define SEED_SHARED UINT64_C(0x7368617265640000) /* "shared" */
#define SYN_MAX_EXAMPLES (UINT64_C(1) << 31)
#define SYN_MAX_DIM 65536u
#define SYN_MAX_DEVICES (1u << 24)

void
petal_synthetic_params_init(petal_synthetic_params_t *p)
{
    if (p == NULL) {
        return;
    }
    memset(p, 0, sizeof(*p));
    p->alpha = 0.0;
    p->beta = 0.0;
    p->num_devices = 30;
    p->dim = 60;
    p->num_classes = 10;
    p->iid = 0;
    p->size_mu = 4.0;
    p->size_sigma = 2.0;
    p->min_size = 50;
    p->seed = 0;
}

static int
check_params(const petal_synthetic_params_t *p, char *err, size_t cap)
{
    if (!(p->alpha >= 0.0) || !isfinite(p->alpha)) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "synthetic: alpha must be >= 0 (got %g)",
                            p->alpha);
    }
    if (!(p->beta >= 0.0) || !isfinite(p->beta)) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "synthetic: beta must be >= 0 (got %g)",
                            p->beta);
    }
    if (p->num_devices == 0 || p->num_devices > SYN_MAX_DEVICES) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "synthetic: num_devices must be 1..%u (got %u)",
                            SYN_MAX_DEVICES, p->num_devices);
    }
    if (p->dim == 0 || p->dim > SYN_MAX_DIM) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "synthetic: dim must be 1..%u (got %u)",
                            SYN_MAX_DIM, p->dim);
    }
    if (p->num_classes < 2 || p->num_classes > 256) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "synthetic: num_classes must be 2..256 (got %u)", p->num_classes);
    }
    if (!isfinite(p->size_mu) || !(p->size_sigma >= 0.0) || !isfinite(p->size_sigma)) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "synthetic: size_mu must be finite and size_sigma >= 0 (got %g, %g)",
                            p->size_mu, p->size_sigma);
    }
    if (p->min_size > SYN_MAX_EXAMPLES) {
        return pt_data_errf(PETAL_EMSGSIZE, err, cap, "synthetic: min_size is too large");
    }
    return 0;
}

/* Device sizes into offsets[0..num_devices] (prefix sums). */
static int
device_offsets(const petal_synthetic_params_t *p, uint64_t *offsets, char *err, size_t cap)
{
    petal_rng_t r;
    petal_rng_seed(&r, petal_seed_combine(p->seed, SEED_SIZES));
    offsets[0] = 0;
    for (uint32_t k = 0; k < p->num_devices; k++) {
        double s = floor(exp(p->size_mu + p->size_sigma * petal_rng_normal(&r)));
        if (!(s < (double)SYN_MAX_EXAMPLES)) {
            return pt_data_errf(PETAL_EMSGSIZE, err, cap,
                                "synthetic: device %u would hold %g examples (more than 2^31; "
                                "lower size_mu or size_sigma)",
                                k, s);
        }
        offsets[k + 1] = offsets[k] + (uint64_t)s + p->min_size;
        if (offsets[k + 1] > SYN_MAX_EXAMPLES) {
            return pt_data_errf(PETAL_EMSGSIZE, err, cap,
                                "synthetic: more than 2^31 examples in all (lower num_devices, "
                                "size_mu or size_sigma)");
        }
    }
    if (offsets[p->num_devices] == 0) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "synthetic: no examples (raise min_size or size_mu)");
    }
    return 0;
}

static void
draw_model(petal_rng_t *r, double mean, uint32_t dim, uint32_t classes, double *w, double *b)
{
    for (uint64_t i = 0; i < (uint64_t)dim * classes; i++) {
        w[i] = mean + petal_rng_normal(r);
    }
    for (uint32_t c = 0; c < classes; c++) {
        b[c] = mean + petal_rng_normal(r);
    }
}

static int
synthetic_load(void *arg, pt_dataset_body_t *body, char *err, size_t cap)
{
    const petal_synthetic_params_t *p = arg;
    uint32_t dim = p->dim;
    uint32_t classes = p->num_classes;
    int rc = PETAL_ENOMEM;
    uint64_t *offsets = malloc(sizeof(uint64_t) * ((size_t)p->num_devices + 1));
    double *w = malloc(sizeof(double) * dim * classes);
    double *b = malloc(sizeof(double) * classes);
    double *v = malloc(sizeof(double) * dim);
    double *sd = malloc(sizeof(double) * dim);
    double *logit = malloc(sizeof(double) * classes);
    if (offsets == NULL || w == NULL || b == NULL || v == NULL || sd == NULL || logit == NULL) {
        pt_data_errf(rc, err, cap, "synthetic: out of memory");
        goto fail;
    }
    rc = device_offsets(p, offsets, err, cap);
    if (rc < 0) {
        goto fail;
    }
    uint64_t n = offsets[p->num_devices];
    body->x = pt_data_alloc_floats(n * dim);
    body->y = malloc((size_t)n);
    if (body->x == NULL || body->y == NULL) {
        rc = pt_data_errf(PETAL_ENOMEM, err, cap,
                          "synthetic: out of memory for %llu examples of %u features",
                          (unsigned long long)n, dim);
        goto fail;
    }
    for (uint32_t j = 0; j < dim; j++) {
        sd[j] = sqrt(pow((double)j + 1.0, -1.2));
    }
    if (p->iid) {
        petal_rng_t shared;
        petal_rng_seed(&shared, petal_seed_combine(p->seed, SEED_SHARED));
        draw_model(&shared, 0.0, dim, classes, w, b);
    }
    for (uint32_t k = 0; k < p->num_devices; k++) {
        petal_rng_t r;
        petal_rng_seed(&r, petal_seed_combine(p->seed, k));
        double u = p->alpha * petal_rng_normal(&r);
        double bk = p->beta * petal_rng_normal(&r);
        for (uint32_t j = 0; j < dim; j++) {
            v[j] = p->iid ? bk : bk + petal_rng_normal(&r);
        }
        if (!p->iid) {
            draw_model(&r, u, dim, classes, w, b);
        }
        for (uint64_t i = offsets[k]; i < offsets[k + 1]; i++) {
            float *x = body->x + i * dim;
            for (uint32_t j = 0; j < dim; j++) {
                x[j] = (float)(v[j] + sd[j] * petal_rng_normal(&r));
            }
            memcpy(logit, b, sizeof(double) * classes);
            for (uint32_t j = 0; j < dim; j++) {
                const double *wj = w + (uint64_t)j * classes;
                double xj = x[j];
                for (uint32_t c = 0; c < classes; c++) {
                    logit[c] += xj * wj[c];
                }
            }
            uint32_t best = 0;
            for (uint32_t c = 1; c < classes; c++) {
                if (logit[c] > logit[best]) {
                    best = c;
                }
            }
            body->y[i] = (uint8_t)best;
        }
    }
    body->n = n;
    body->dim = dim;
    body->num_classes = classes;
    body->offsets = offsets;
    offsets = NULL;
    rc = 0;

fail:
    free(offsets);
    free(w);
    free(b);
    free(v);
    free(sd);
    free(logit);
    return rc;
}

int
petal_dataset_synthetic(const petal_synthetic_params_t *p, const petal_dataset_t **out,
                        const uint64_t **device_offsets_out, char *err, size_t cap)
{
    if (p == NULL || out == NULL) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "synthetic: NULL params or output");
    }
    if (err != NULL && cap > 0) {
        err[0] = '\0';
    }
    int rc = check_params(p, err, cap);
    if (rc < 0) {
        return rc;
    }
    char key[512];
    snprintf(key, sizeof(key), "synthetic\n%a %a %u %u %u %d %a %a %llu %llu", p->alpha, p->beta,
             p->num_devices, p->dim, p->num_classes, p->iid != 0, p->size_mu, p->size_sigma,
             (unsigned long long)p->min_size, (unsigned long long)p->seed);
    petal_synthetic_params_t copy = *p;
    return pt_dataset_cache_get(key, synthetic_load, &copy, out, device_offsets_out, err, cap);
}
