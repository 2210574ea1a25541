/* sg_check.c: a stand-alone C test of the native kernels (csrc/), for builds the Python package
 * cannot be imported in -- chiefly AArch64 cross-compiled and run under qemu user-mode emulation
 * (tests/test_native_aarch64.py).
 *
 * For every ISA path sg_available_isas() reports, every dtype (float32, float64, float16,
 * bfloat16) and the three row kernels (the VJP in its plain and accurate forms, the forward
 * softmax), over n = 1 .. 33 (2 * 16 + 1, past two vectors of every path's width) and longer rows,
 * inputs at offsets of 0 .. 3 elements from an aligned address, and rows with NaN and infinities:
 *   - each output is checked against a long double reference computed here from the definition,
 *     within a bound of its rounding error (NaN where the reference is NaN, equal infinities);
 *   - the elements around out are guard values that must stay untouched;
 *   - every path's output equals the scalar path's bit for bit (a NaN's sign and payload
 *     excepted: x86's AVX2 path and the scalar path differ there too), at every offset, with 1
 *     and 2 threads, and a call large enough for the streaming variant equals its rows computed one by
 *     one.
 * Inputs come from a fixed-seed generator by exact operations only (no libm, no long double), so
 * they are the same bits on every architecture; the program prints a hash of all the scalar
 * outputs ("hash <strict> <nan-canonical>") that an x86-64 build and an AArch64 build must share.
 * The strict hash covers NaN signs and payloads, which the hardware chooses (AArch64's default
 * NaN is positive, x86's negative); the canonical one maps every NaN to one pattern.
 *
 * Exit status 0 when every check passed; failures are printed (the first few in full).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_half.h"
#include "softmax_grad.h"

/* ---- deterministic inputs --------------------------------------------------------------------- */
static uint64_t rng_state = 0x5eed5eed12345678u;
static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; } /* [0, 1), exact */

/* ---- dtypes ------------------------------------------------------------------------------------ */
typedef int (*vjp_fn)(const void *, const void *, void *, size_t, size_t, int, int);
typedef int (*fwd_fn)(const void *, void *, size_t, size_t, int, int);

#define WRAP2(NAME, TY)                                                                            \
    static int w_##NAME(const void *a, const void *b, void *o, size_t r, size_t n, int i, int t)   \
    {                                                                                              \
        return NAME((const TY *)a, (const TY *)b, (TY *)o, r, n, i, t);                            \
    }
#define WRAP1(NAME, TY)                                                                            \
    static int w_##NAME(const void *a, void *o, size_t r, size_t n, int i, int t)                  \
    {                                                                                              \
        return NAME((const TY *)a, (TY *)o, r, n, i, t);                                           \
    }
WRAP2(sg_softmax_vjp_f32, float)
WRAP2(sg_softmax_vjp_f64, double)
WRAP2(sg_softmax_vjp_f16, uint16_t)
WRAP2(sg_softmax_vjp_bf16, uint16_t)
WRAP2(sg_softmax_vjp_accurate_f32, float)
WRAP2(sg_softmax_vjp_accurate_f64, double)
WRAP2(sg_softmax_vjp_accurate_f16, uint16_t)
WRAP2(sg_softmax_vjp_accurate_bf16, uint16_t)
WRAP1(sg_softmax_f32, float)
WRAP1(sg_softmax_f64, double)
WRAP1(sg_softmax_f16, uint16_t)
WRAP1(sg_softmax_bf16, uint16_t)

struct dtype {
    const char *name;
    size_t size;
    long double ut;   /* unit roundoff of the compute type */
    long double su;   /* unit roundoff of the storage type */
    long double tiny; /* smallest positive subnormal of the storage type */
    vjp_fn vjp, vjp_accurate;
    fwd_fn softmax;
};

static const struct dtype DTYPES[] = {
    {"float32", 4, 0x1p-24L, 0x1p-24L, 0x1p-149L, w_sg_softmax_vjp_f32,
     w_sg_softmax_vjp_accurate_f32, w_sg_softmax_f32},
    {"float64", 8, 0x1p-53L, 0x1p-53L, 0x1p-1074L, w_sg_softmax_vjp_f64,
     w_sg_softmax_vjp_accurate_f64, w_sg_softmax_f64},
    {"float16", 2, 0x1p-24L, 0x1p-11L, 0x1p-24L, w_sg_softmax_vjp_f16,
     w_sg_softmax_vjp_accurate_f16, w_sg_softmax_f16},
    {"bfloat16", 2, 0x1p-24L, 0x1p-8L, 0x1p-133L, w_sg_softmax_vjp_bf16,
     w_sg_softmax_vjp_accurate_bf16, w_sg_softmax_bf16},
};

/* element i of buffer p (dtype d) as long double, and a double stored rounded to nearest */
static long double get(const struct dtype *d, const void *p, size_t i)
{
    switch (d->size) {
    case 4:
        return ((const float *)p)[i];
    case 8:
        return ((const double *)p)[i];
    default: {
        const uint16_t h = ((const uint16_t *)p)[i];
        return d->su == 0x1p-11L ? sg_f16_to_f32(h) : sg_bf16_to_f32(h);
    }
    }
}
static void put(const struct dtype *d, void *p, size_t i, double v)
{
    switch (d->size) {
    case 4:
        ((float *)p)[i] = (float)v;
        break;
    case 8:
        ((double *)p)[i] = v;
        break;
    default:
        ((uint16_t *)p)[i] = d->su == 0x1p-11L ? sg_f32_to_f16((float)v) : sg_f32_to_bf16((float)v);
    }
}

/* ---- hashes of the outputs --------------------------------------------------------------------- */
static uint64_t hash_strict = 0xcbf29ce484222325u, hash_canon = 0xcbf29ce484222325u;
static void fnv(uint64_t *h, const unsigned char *p, size_t k)
{
    for (size_t i = 0; i < k; ++i)
        *h = (*h ^ p[i]) * 0x100000001b3u;
}
static void hash_out(const struct dtype *d, const void *out, size_t count)
{
    fnv(&hash_strict, out, count * d->size);
    static const unsigned char nan_bytes[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    for (size_t i = 0; i < count; ++i) {
        const long double v = get(d, out, i);
        fnv(&hash_canon, v != v ? nan_bytes : (const unsigned char *)out + i * d->size, d->size);
    }
}

/* Whether p and q hold the same bits, any NaN counting as equal to any NaN: the sign and payload
 * of a NaN the hardware generates or propagates are not part of the promise (the x86 paths
 * already differ there from the scalar path). */
static int same_bits(const struct dtype *d, const void *p, const void *q, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        const long double x = get(d, p, i), y = get(d, q, i);
        if (x != x ? y == y : memcmp((const char *)p + i * d->size, (const char *)q + i * d->size, d->size))
            return 0;
    }
    return 1;
}

/* ---- reporting ----------------------------------------------------------------------------------- */
static long failures, checks;
static void fail(const char *what, const char *isa, const struct dtype *d, const char *kernel,
                 size_t n, size_t off, int special, size_t i, long double got, long double want,
                 long double tol)
{
    if (++failures <= 20)
        fprintf(stderr,
                "FAIL %s: isa=%s dtype=%s kernel=%s n=%zu offset=%zu special=%d element=%zu "
                "got=%.21Lg want=%.21Lg tol=%.3Lg\n",
                what, isa, d->name, kernel, n, off, special, i, got, want, tol);
}

static const char *ISA_NAMES[] = {"scalar", "avx2", "avx512", "neon"};

/* ---- inputs and references ---------------------------------------------------------------------- */
enum { ROWS = 3, GUARD = 8, MAXOFF = 3 };
enum { K_VJP, K_ACCURATE, K_SOFTMAX };
static const char *KERNEL_NAMES[] = {"vjp", "vjp_accurate", "softmax"};

/* Row r of a case: r = 0 random probabilities, r = 1 a confident row (one y near 1), r = 2 the
 * special: 0 random, 1 a NaN, 2 an infinity (+inf in dy, +inf logit), 3 a -inf logit / a zero
 * probability, 4 an all -inf row / dy of huge finite values. */
static void make_inputs(const struct dtype *d, int kernel, size_t n, int special, void *a, void *b)
{
    double *w = malloc(n * sizeof *w);
    for (size_t r = 0; r < ROWS; ++r) {
        const size_t o = r * n;
        if (kernel == K_SOFTMAX) {
            for (size_t i = 0; i < n; ++i)
                put(d, a, o + i, 20.0 * rng_unit() - 10.0);
            if (r == 1) /* a dominant logit */
                put(d, a, o + (n - 1) / 2, 30.0);
            if (r == 2 && special == 1)
                put(d, a, o + n / 2, NAN);
            if (r == 2 && special == 2)
                put(d, a, o + n / 2, INFINITY);
            if (r == 2 && special == 3)
                put(d, a, o, -INFINITY);
            if (r == 2 && special == 4)
                for (size_t i = 0; i < n; ++i)
                    put(d, a, o + i, -INFINITY);
            continue;
        }
        double s = 0;
        for (size_t i = 0; i < n; ++i)
            s += w[i] = 0.5 + rng_unit();
        if (r == 1) { /* y_c near 1 */
            const size_t c = (n - 1) / 2;
            s -= w[c];
            s += w[c] = 1e3 * (double)n;
        }
        for (size_t i = 0; i < n; ++i) {
            put(d, a, o + i, w[i] / s);
            put(d, b, o + i, 2.0 * rng_unit() - 1.0);
        }
        if (r == 2 && special == 1)
            put(d, a, o + n / 2, NAN);
        if (r == 2 && special == 2)
            put(d, b, o + n / 2, INFINITY);
        if (r == 2 && special == 3)
            put(d, a, o, 0.0);
        if (r == 2 && special == 4)
            for (size_t i = 0; i < n; ++i)
                put(d, b, o + i, 1e30 * (2.0 * rng_unit() - 1.0)); /* inf in the halves */
    }
    free(w);
}

/* Checks one row's output against the definition, computed in long double from the stored
 * inputs. */
static void check_row(const struct dtype *d, int kernel, const char *isa, size_t n, size_t off,
                      int special, const void *a, const void *b, const void *out, size_t o)
{
    long double *ref = malloc(n * sizeof *ref), *tol = malloc(n * sizeof *tol);
    const long double ut = d->ut, su = d->su, abs_tiny = 2 * d->tiny + 2 * 0x1p-149L;
    if (kernel == K_SOFTMAX) {
        long double m = -INFINITY;
        int undefined = 0;
        for (size_t i = 0; i < n; ++i) {
            const long double x = get(d, a, o + i);
            if (x != x || x == INFINITY)
                undefined = 1;
            if (x > m)
                m = x;
        }
        long double s = 0;
        for (size_t i = 0; i < n; ++i)
            s += ref[i] = expl(get(d, a, o + i) - m);
        undefined |= s == 0; /* an all -inf row */
        for (size_t i = 0; i < n; ++i) {
            ref[i] = undefined ? NAN : ref[i] / s;
            tol[i] = ref[i] * ((long double)(n + 16) * ut + su) + abs_tiny;
        }
    } else {
        long double dot = 0, sabs = 0, ysum = 0, ymax = -1;
        size_t c = 0;
        for (size_t j = 0; j < n; ++j) {
            const long double y = get(d, a, o + j), dy = get(d, b, o + j);
            dot += y * dy;
            sabs += fabsl(y * dy);
            ysum += y;
            if (y > ymax) {
                ymax = y;
                c = j;
            }
        }
        /* The accurate form's rows: y_c >= 1/2, a probability vector (sum_j y_j = 1 within
         * (n + 16) SU: this file's confident rows are within a few SU), every value finite. */
        const int finite = isfinite(dot) && isfinite(sabs);
        const int accurate = kernel == K_ACCURATE && finite && ymax >= 0.5L &&
                             fabsl(1 - ysum) <= (long double)(n + 16) * su;
        long double aa = dot, t = 0, tabs = sabs;
        if (accurate) {
            aa = get(d, b, o + c);
            tabs = 0;
            for (size_t j = 0; j < n; ++j) {
                const long double y = get(d, a, o + j), dy = get(d, b, o + j);
                t += y * (aa - dy);
                tabs += fabsl(y * (aa - dy));
            }
        }
        for (size_t i = 0; i < n; ++i) {
            const long double y = get(d, a, o + i), dy = get(d, b, o + i);
            ref[i] = accurate ? y * ((dy - aa) + t) : y * (dy - dot);
            /* each operation rounded (2 ut), the sum's error gamma_n * sum |terms|, then the
             * storage rounding (su) and an absolute subnormal allowance */
            tol[i] = fabsl(y) * (2 * ut * fabsl(dy - aa) + (long double)(n + 4) * ut * tabs) +
                     4 * ut * fabsl(ref[i]) + su * fabsl(ref[i]) + abs_tiny;
            if (!finite) /* NaN and inf land where the formula puts them; finite results are
                          * only the formula's when the dot product is */
                tol[i] = INFINITY;
        }
    }
    for (size_t i = 0; i < n; ++i) {
        const long double got = get(d, out, o + i);
        ++checks;
        int ok;
        if (ref[i] != ref[i])
            ok = got != got;
        else if (isinf(ref[i]))
            ok = got == ref[i];
        else if (isinf(tol[i]))
            ok = 1; /* a row with a non-finite dot product: only NaN/inf positions checked */
        else
            ok = fabsl(got - ref[i]) <= tol[i];
        if (!ok)
            fail("reference", isa, d, KERNEL_NAMES[kernel], n, off, special, i, got, ref[i], tol[i]);
    }
    free(ref);
    free(tol);
}

/* ---- one case --------------------------------------------------------------------------------- */
static const unsigned char GUARD_BYTE = 0xa5;

static int run(const struct dtype *d, int kernel, const void *a, const void *b, void *out,
               size_t rows, size_t n, int isa, int threads)
{
    return kernel == K_SOFTMAX ? d->softmax(a, out, rows, n, isa, threads)
           : kernel == K_VJP   ? d->vjp(a, b, out, rows, n, isa, threads)
                               : d->vjp_accurate(a, b, out, rows, n, isa, threads);
}

static void check_case(const struct dtype *d, int kernel, size_t n, int special, int mask)
{
    const size_t count = ROWS * n, es = d->size;
    /* 64-byte aligned blocks with room for the offsets and the guards */
    const size_t bytes = (count + 2 * GUARD + MAXOFF) * es + 64;
    unsigned char *A = aligned_alloc(64, (bytes + 63) / 64 * 64);
    unsigned char *B = aligned_alloc(64, (bytes + 63) / 64 * 64);
    unsigned char *O = aligned_alloc(64, (bytes + 63) / 64 * 64);
    unsigned char *ref_out = malloc(count * es);
    unsigned char *a0 = malloc(count * es), *b0 = malloc(count * es);
    make_inputs(d, kernel, n, special, a0, b0);
    for (size_t off = 0; off <= MAXOFF; ++off) {
        unsigned char *a = A + (GUARD + off) * es, *b = B + (GUARD + off) * es;
        unsigned char *out = O + (GUARD + off) * es;
        memcpy(a, a0, count * es);
        memcpy(b, b0, count * es);
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1))
                continue;
            for (int threads = 1; threads <= 2; ++threads) {
                memset(O, GUARD_BYTE, bytes);
                const int status = run(d, kernel, a, b, out, ROWS, n, isa, threads);
                if (status != SG_OK) {
                    fail("status", ISA_NAMES[isa], d, KERNEL_NAMES[kernel], n, off, special, 0,
                         status, 0, 0);
                    continue;
                }
                for (size_t k = 0; k < bytes; ++k)
                    if ((O + k < out || O + k >= out + count * es) && O[k] != GUARD_BYTE) {
                        fail("guard", ISA_NAMES[isa], d, KERNEL_NAMES[kernel], n, off, special, k,
                             O[k], GUARD_BYTE, 0);
                        break;
                    }
                if (isa == SG_ISA_SCALAR && threads == 1 && off == 0) {
                    memcpy(ref_out, out, count * es);
                    hash_out(d, out, count);
                } else if (!same_bits(d, ref_out, out, count)) {
                    size_t i = 0;
                    while (same_bits(d, ref_out + i * es, out + i * es, 1))
                        ++i;
                    fail("bits differ from the scalar path's", ISA_NAMES[isa], d,
                         KERNEL_NAMES[kernel], n, off, special, i, get(d, out, i),
                         get(d, ref_out, i), 0);
                }
                /* the reference at one offset per path and special row, each offset in turn
                 * (long double is software quad precision on AArch64: slow under qemu) */
                if (threads == 1 && (int)off == (isa + special) % 4)
                    for (size_t r = 0; r < ROWS; ++r)
                        check_row(d, kernel, ISA_NAMES[isa], n, off, special, a, b, out, r * n);
            }
        }
    }
    free(A);
    free(B);
    free(O);
    free(ref_out);
    free(a0);
    free(b0);
}

/* A VJP call above the streaming threshold (dispatch.c's 16 MiB of three arrays) against its
 * rows computed one at a time (the in-cache variant), for each path. */
static void check_stream(const struct dtype *d, int mask)
{
    const size_t n = 4099, rows = 350, count = rows * n, es = d->size;
    unsigned char *a = malloc(count * es), *b = malloc(count * es), *o = malloc(count * es),
                  *o1 = malloc(count * es);
    for (size_t r = 0; r < rows; r += ROWS) {
        const size_t k = rows - r < ROWS ? rows - r : ROWS;
        unsigned char *ta = malloc(ROWS * n * es), *tb = malloc(ROWS * n * es);
        make_inputs(d, K_VJP, n, 0, ta, tb);
        memcpy(a + r * n * es, ta, k * n * es);
        memcpy(b + r * n * es, tb, k * n * es);
        free(ta);
        free(tb);
    }
    for (int kernel = K_VJP; kernel <= K_ACCURATE; ++kernel)
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1))
                continue;
            run(d, kernel, a, b, o, rows, n, isa, 2);
            for (size_t r = 0; r < rows; ++r)
                run(d, kernel, a + r * n * es, b + r * n * es, o1 + r * n * es, 1, n, isa, 1);
            ++checks;
            if (!same_bits(d, o, o1, count))
                fail("streamed bits differ from the in-cache rows'", ISA_NAMES[isa], d,
                     KERNEL_NAMES[kernel], n, 0, 0, 0, 0, 0, 0);
            if (isa == SG_ISA_SCALAR)
                hash_out(d, o, count);
        }
    free(a);
    free(b);
    free(o);
    free(o1);
}

int main(void)
{
    const int mask = sg_available_isas();
    printf("isas:");
    for (int isa = 0; isa < 4; ++isa)
        if ((mask >> isa) & 1)
            printf(" %s", ISA_NAMES[isa]);
    printf("\n");
    static const size_t LONG[] = {100, 1000, 4099};
    for (size_t t = 0; t < sizeof DTYPES / sizeof *DTYPES; ++t) {
        const struct dtype *d = &DTYPES[t];
        for (int kernel = K_VJP; kernel <= K_SOFTMAX; ++kernel)
            for (int special = 0; special <= 4; ++special) {
                for (size_t n = 1; n <= 33; ++n)
                    check_case(d, kernel, n, special, mask);
                for (size_t k = 0; k < sizeof LONG / sizeof *LONG; ++k)
                    check_case(d, kernel, LONG[k], special, mask);
            }
        if (d->size == 4)
            check_stream(d, mask);
    }
    printf("checks %ld failures %ld\n", checks, failures);
    printf("hash %016llx %016llx\n", (unsigned long long)hash_strict,
           (unsigned long long)hash_canon);
    return failures != 0;
}
