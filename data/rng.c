/* rng.c - the data module's fixed PRNG: xoshiro256** seeded through splitmix64. */
#include <math.h>

#include <petal/data.h>

/*
 * splitmix64 (Steele, Lea, Flood 2014) and xoshiro256** (Blackman, Vigna 2018), written from
 * their published definitions. Both use only 64-bit integer arithmetic, so a seed gives the
 * same stream on every machine and compiler.
 */

uint64_t
petal_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t
petal_seed_combine(uint64_t seed, uint64_t value)
{
    uint64_t st = seed;
    uint64_t h = petal_splitmix64(&st);
    st = h ^ value;
    return petal_splitmix64(&st);
}

void
petal_rng_seed(petal_rng_t *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++) {
        r->s[i] = petal_splitmix64(&st);
    }
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
petal_rng_next(petal_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t
petal_rng_below(petal_rng_t *r, uint64_t bound)
{
    if (bound == 0) {
        return 0;
    }
    /* Reject the top partial block so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound + 1) % bound;
    uint64_t v;
    do {
        v = petal_rng_next(r);
    } while (v > limit);
    return v % bound;
}

double
petal_rng_uniform(petal_rng_t *r)
{
    return (double)(petal_rng_next(r) >> 11) * 0x1.0p-53;
}

double
petal_rng_normal(petal_rng_t *r)
{
    double u1 = 1.0 - petal_rng_uniform(r); /* (0, 1]: log() stays finite */
    double u2 = petal_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void
petal_rng_shuffle_u64(petal_rng_t *r, uint64_t *a, uint64_t n)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = petal_rng_below(r, i);
        uint64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
