/* sg_check.c: a stand-alone C test of the native kernels (csrc/), for builds the Python package
 * cannot be imported in -- chiefly AArch64 cross-compiled and run under qemu user-mode emulation
 * (tests/test_native_aarch64.py).
 *
 * For every ISA path sg_available_isas() reports, every dtype (float32, float64, float16,
 * bfloat16) and the four row kernels (the VJP in its plain and accurate forms, the forward
 * softmax, multipass and online), and for float32 and float64 also logsumexp and the fused
 * cross-entropy (with grad and without, an ignored row, labels at the last class, at a dominant
 * logit and at the special), over n = 1 .. 33 (2 * 16 + 1, past two vectors of every path's
 * width) and longer rows (the online kernels' up to 8195, two blocks of 4096 and a tail),
 * inputs at offsets of 0 .. 3 elements from an aligned address, and rows with NaN and infinities:
 *   - each output is checked against a long double reference computed here from the definition,
 *     within a bound of its rounding error (NaN where the reference is NaN, equal infinities);
 *   - the elements around every output are guard values that must stay untouched;
 *   - every path's output equals the scalar path's bit for bit (a NaN's sign and payload
 *     excepted: x86's AVX2 path and the scalar path differ there too), at every offset, with 1
 *     and 2 threads; a call large enough for the streaming variant (the VJP's, the online
 *     softmax's non-temporal stores) equals its rows computed one by one; a row of one block
 *     (n <= 4096) gets the same bits from the online softmax as from the multipass one;
 *   - a label outside [0, n) that is not ignore_index returns SG_BAD_LABEL, outputs untouched.
 * Inputs come from a fixed-seed generator by exact operations only (no libm, no long double), so
 * they are the same bits on every architecture; the program prints a hash of all the scalar
 * outputs ("hash <strict> <nan-canonical>") that an x86-64 build and an AArch64 build must share.
 * The strict hash covers NaN signs and payloads, which the hardware chooses (AArch64's default
 * NaN is positive, x86's negative); the canonical one maps every NaN to one pattern.
 * logsumexp and the cross-entropy's loss are rounded from the C library's log and log1p, whose
 * last bit is the platform libm's, not the kernels' (every other output, dlogits included, uses
 * the kernels' own exp only): they are checked against the reference and across paths like the
 * rest, and hashed apart ("libm-hash <strict> <nan-canonical>"), so that a libm that rounds one
 * log differently shows as that, not as a kernel difference. glibc's x86-64 and AArch64 builds
 * agree on every one of them (test_native_aarch64.py compares both hashes).
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
WRAP1(sg_softmax_online_f32, float)
WRAP1(sg_softmax_online_f64, double)
WRAP1(sg_softmax_online_f16, uint16_t)
WRAP1(sg_softmax_online_bf16, uint16_t)
WRAP1(sg_logsumexp_f32, float) /* the same signature: out has one element per row */
WRAP1(sg_logsumexp_f64, double)

typedef int (*ce_fn)(const void *, const int64_t *, const void *, void *, void *, size_t, size_t,
                     int64_t, int, int);
#define WRAPCE(NAME, TY)                                                                           \
    static int w_##NAME(const void *x, const int64_t *k, const void *g, void *lo, void *o,         \
                        size_t r, size_t n, int64_t ig, int i, int t)                              \
    {                                                                                              \
        return NAME((const TY *)x, k, (const TY *)g, (TY *)lo, (TY *)o, r, n, ig, i, t);           \
    }
WRAPCE(sg_softmax_cross_entropy_f32, float)
WRAPCE(sg_softmax_cross_entropy_f64, double)

struct dtype {
    const char *name;
    size_t size;
    long double ut;   /* unit roundoff of the compute type */
    long double su;   /* unit roundoff of the storage type */
    long double tiny; /* smallest positive subnormal of the storage type */
    vjp_fn vjp, vjp_accurate;
    fwd_fn softmax, softmax_online;
    fwd_fn logsumexp; /* NULL: no such kernel for the dtype (half rows) */
    ce_fn cross_entropy;
};

static const struct dtype DTYPES[] = {
    {"float32", 4, 0x1p-24L, 0x1p-24L, 0x1p-149L, w_sg_softmax_vjp_f32,
     w_sg_softmax_vjp_accurate_f32, w_sg_softmax_f32, w_sg_softmax_online_f32, w_sg_logsumexp_f32,
     w_sg_softmax_cross_entropy_f32},
    {"float64", 8, 0x1p-53L, 0x1p-53L, 0x1p-1074L, w_sg_softmax_vjp_f64,
     w_sg_softmax_vjp_accurate_f64, w_sg_softmax_f64, w_sg_softmax_online_f64, w_sg_logsumexp_f64,
     w_sg_softmax_cross_entropy_f64},
    {"float16", 2, 0x1p-24L, 0x1p-11L, 0x1p-24L, w_sg_softmax_vjp_f16,
     w_sg_softmax_vjp_accurate_f16, w_sg_softmax_f16, w_sg_softmax_online_f16, NULL, NULL},
    {"bfloat16", 2, 0x1p-24L, 0x1p-8L, 0x1p-133L, w_sg_softmax_vjp_bf16,
     w_sg_softmax_vjp_accurate_bf16, w_sg_softmax_bf16, w_sg_softmax_online_bf16, NULL, NULL},
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
struct hash {
    uint64_t strict, canon;
};
/* every output computed by the kernels' own arithmetic; and the outputs rounded from libm's log
 * and log1p (logsumexp, the cross-entropy's loss), whose last bit is the platform's libm's */
#define FNV_OFFSET 0xcbf29ce484222325u
static struct hash hash_bits = {FNV_OFFSET, FNV_OFFSET}, hash_libm = {FNV_OFFSET, FNV_OFFSET};
static void fnv(uint64_t *h, const unsigned char *p, size_t k)
{
    for (size_t i = 0; i < k; ++i)
        *h = (*h ^ p[i]) * 0x100000001b3u;
}
static void hash_into(struct hash *h, const struct dtype *d, const void *out, size_t count)
{
    fnv(&h->strict, out, count * d->size);
    static const unsigned char nan_bytes[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    for (size_t i = 0; i < count; ++i) {
        const long double v = get(d, out, i);
        fnv(&h->canon, v != v ? nan_bytes : (const unsigned char *)out + i * d->size, d->size);
    }
}


/* Whether p and q hold the same bits, any NaN counting as equal to any NaN: the sign and payload
 * of a NaN the hardware generates or propagates are not part of the promise (the x86 paths
 * already differ there from the scalar path). */
static int same_bits(const struct dtype *d, const void *p, const void *q, size_t count)
{
    if (!memcmp(p, q, count * d->size)) /* the common case, without long double (software on
                                         * AArch64) */
        return 1;
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
/* Elements per block of the online kernels (SG_EXP_CHUNK, native.ONLINE_BLOCK): a row of at
 * most this many is one block. */
enum { ONLINE_BLOCK = 4096 };
enum { K_VJP, K_ACCURATE, K_SOFTMAX, K_ONLINE };
static const char *KERNEL_NAMES[] = {"vjp", "vjp_accurate", "softmax", "softmax_online"};
#define FORWARD(kernel) ((kernel) == K_SOFTMAX || (kernel) == K_ONLINE)

/* Row r of a case: r = 0 random probabilities, r = 1 a confident row (one y near 1), r = 2 the
 * special: 0 random, 1 a NaN, 2 an infinity (+inf in dy, +inf logit), 3 a -inf logit / a zero
 * probability, 4 an all -inf row / dy of huge finite values. */
static void make_inputs(const struct dtype *d, int kernel, size_t n, int special, void *a, void *b)
{
    double *w = malloc(n * sizeof *w);
    for (size_t r = 0; r < ROWS; ++r) {
        const size_t o = r * n;
        if (FORWARD(kernel)) {
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

/* Whether got is want within tol: a NaN where want is NaN, the same infinity where it is one. */
static int close_to(long double got, long double want, long double tol)
{
    if (want != want)
        return got != got;
    if (isinf(want))
        return got == want;
    return fabsl(got - want) <= tol;
}

/* The reference of the row at element o of a and b, computed in long double from the definition
 * and the stored inputs, into ref[0 .. n), and a bound of each element's rounding error into tol
 * (inf: only where NaN and inf land is checked). Computed once per case, since every run of a
 * case has the same inputs (long double is software quad precision on AArch64: slow under
 * qemu). */
static void reference_row(const struct dtype *d, int kernel, size_t n, const void *a,
                          const void *b, size_t o, long double *ref, long double *tol)
{
    const long double ut = d->ut, su = d->su, abs_tiny = 2 * d->tiny + 2 * 0x1p-149L;
    if (FORWARD(kernel)) {
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
}

/* count outputs of out against ref within tol (see reference_row). */
static void compare(const char *what, const char *isa, const struct dtype *d, const char *kernel,
                    size_t n, size_t off, int special, const void *out, const long double *ref,
                    const long double *tol, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        const long double got = get(d, out, i);
        ++checks;
        const int ok = isinf(tol[i]) && isfinite(ref[i]) ? 1 : close_to(got, ref[i], tol[i]);
        if (!ok)
            fail(what, isa, d, kernel, n, off, special, i, got, ref[i], tol[i]);
    }
}

/* ---- one case --------------------------------------------------------------------------------- */
static const unsigned char GUARD_BYTE = 0xa5;

static unsigned char *block_of(size_t bytes) /* 64-byte aligned */
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Every byte of [O, O + bytes) outside [out, out + out_bytes) must still be GUARD_BYTE. */
static void check_guards(const unsigned char *O, size_t bytes, const unsigned char *out,
                         size_t out_bytes, const char *isa, const struct dtype *d,
                         const char *kernel, size_t n, size_t off, int special)
{
    for (size_t k = 0; k < bytes; ++k)
        if ((O + k < out || O + k >= out + out_bytes) && O[k] != GUARD_BYTE) {
            fail("guard", isa, d, kernel, n, off, special, k, O[k], GUARD_BYTE, 0);
            return;
        }
}

/* The scalar path's output at offset 0 with one thread (first): kept in ref and hashed into h;
 * every other run's out must have its bits. */
static void check_bits(struct hash *h, int first, unsigned char *ref, const unsigned char *out,
                       size_t count, const char *isa, const struct dtype *d, const char *kernel,
                       size_t n, size_t off, int special)
{
    const size_t es = d->size;
    if (first) {
        memcpy(ref, out, count * es);
        hash_into(h, d, out, count);
    } else if (!same_bits(d, ref, out, count)) {
        size_t i = 0;
        while (same_bits(d, ref + i * es, out + i * es, 1))
            ++i;
        fail("bits differ from the scalar path's", isa, d, kernel, n, off, special, i,
             get(d, out, i), get(d, ref, i), 0);
    }
}

static int run(const struct dtype *d, int kernel, const void *a, const void *b, void *out,
               size_t rows, size_t n, int isa, int threads)
{
    return kernel == K_SOFTMAX  ? d->softmax(a, out, rows, n, isa, threads)
           : kernel == K_ONLINE ? d->softmax_online(a, out, rows, n, isa, threads)
           : kernel == K_VJP    ? d->vjp(a, b, out, rows, n, isa, threads)
                                : d->vjp_accurate(a, b, out, rows, n, isa, threads);
}

static void check_case(const struct dtype *d, int kernel, size_t n, int special, int mask)
{
    const size_t count = ROWS * n, es = d->size;
    /* 64-byte aligned blocks with room for the offsets and the guards */
    const size_t bytes = (count + 2 * GUARD + MAXOFF) * es + 64;
    unsigned char *A = block_of(bytes), *B = block_of(bytes), *O = block_of(bytes);
    unsigned char *ref_out = malloc(count * es), *multipass = malloc(count * es);
    unsigned char *a0 = malloc(count * es), *b0 = malloc(count * es);
    long double *ref = malloc(count * sizeof *ref), *tol = malloc(count * sizeof *tol);
    make_inputs(d, kernel, n, special, a0, b0);
    for (size_t r = 0; r < ROWS; ++r)
        reference_row(d, kernel, n, a0, b0, r * n, ref + r * n, tol + r * n);
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
                const char *name = KERNEL_NAMES[kernel];
                check_guards(O, bytes, out, count * es, ISA_NAMES[isa], d, name, n, off, special);
                check_bits(&hash_bits, isa == SG_ISA_SCALAR && threads == 1 && off == 0, ref_out,
                           out, count, ISA_NAMES[isa], d, name, n, off, special);
                /* a row of one block: the online pass gives the multipass kernel's bits */
                if (kernel == K_ONLINE && n <= ONLINE_BLOCK && threads == 1) {
                    d->softmax(a, multipass, ROWS, n, isa, 1);
                    ++checks;
                    if (!same_bits(d, multipass, out, count))
                        fail("online bits differ from the multipass kernel's", ISA_NAMES[isa], d,
                             name, n, off, special, 0, 0, 0, 0);
                }
                /* the reference at one offset per path and special row, each offset in turn
                 * (comparisons in long double are software too on AArch64) */
                if (threads == 1 && (int)off == (isa + special) % 4)
                    compare("reference", ISA_NAMES[isa], d, name, n, off, special, out, ref, tol,
                            count);
            }
        }
    }
    free(A);
    free(B);
    free(O);
    free(ref_out);
    free(multipass);
    free(a0);
    free(b0);
    free(ref);
    free(tol);
}

/* A VJP call above the streaming threshold (dispatch.c's 16 MiB of three arrays), and an online
 * softmax call above its own (4 MiB of output for one thread: non-temporal stores), against
 * their rows computed one at a time (in cache), for each path. */
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
    for (int kernel = K_VJP; kernel <= K_ONLINE; ++kernel)
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1) || kernel == K_SOFTMAX)
                continue;
            run(d, kernel, a, b, o, rows, n, isa, kernel == K_ONLINE ? 1 : 2);
            for (size_t r = 0; r < rows; ++r)
                run(d, kernel, a + r * n * es, b + r * n * es, o1 + r * n * es, 1, n, isa, 1);
            ++checks;
            if (!same_bits(d, o, o1, count))
                fail("streamed bits differ from the in-cache rows'", ISA_NAMES[isa], d,
                     KERNEL_NAMES[kernel], n, 0, 0, 0, 0, 0, 0);
            if (isa == SG_ISA_SCALAR)
                hash_into(&hash_bits, d, o, count);
        }
    free(a);
    free(b);
    free(o);
    free(o1);
}

/* ---- logsumexp and the fused cross-entropy (float32 and float64) ---------------------------- */

/* log sum_j exp(x_j) of row o of x from the definition, in long double, with *m the row's
 * maximum: NaN with a NaN, +inf with a +inf, -inf for a row of only -inf. */
static long double lse_ref(const struct dtype *d, const void *x, size_t o, size_t n,
                           long double *m)
{
    long double mx = -INFINITY, s = 0;
    int nan = 0;
    for (size_t i = 0; i < n; ++i) {
        const long double v = get(d, x, o + i);
        nan |= v != v;
        if (v > mx)
            mx = v;
    }
    *m = mx;
    if (nan || !isfinite(mx))
        return nan ? NAN : mx;
    for (size_t i = 0; i < n; ++i)
        s += expl(get(d, x, o + i) - mx);
    return mx + logl(s);
}

/* Each path, offset and thread count against the scalar path's bits and the reference, with
 * guards around out (one element per row); the rows of check_case's forward kernels. */
static void check_lse(const struct dtype *d, size_t n, int special, int mask)
{
    const size_t count = ROWS * n, es = d->size;
    const size_t abytes = (count + 2 * GUARD + MAXOFF) * es;
    const size_t obytes = (ROWS + 2 * GUARD + MAXOFF) * es;
    unsigned char *A = block_of(abytes), *O = block_of(obytes);
    unsigned char *ref_out = malloc(ROWS * es), *a0 = malloc(count * es);
    long double ref[ROWS], tol[ROWS];
    make_inputs(d, K_SOFTMAX, n, special, a0, NULL);
    for (size_t r = 0; r < ROWS; ++r) {
        long double m;
        ref[r] = lse_ref(d, a0, r * n, n, &m);
        /* the sum's error as the softmax check allows it, and the roundings of h + log Z */
        tol[r] = (long double)(n + 16) * d->ut +
                 4 * d->ut * (fabsl(ref[r]) + (isfinite(m) ? fabsl(m) : 0));
    }
    for (size_t off = 0; off <= MAXOFF; ++off) {
        unsigned char *a = A + (GUARD + off) * es, *out = O + (GUARD + off) * es;
        memcpy(a, a0, count * es);
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1))
                continue;
            for (int threads = 1; threads <= 2; ++threads) {
                memset(O, GUARD_BYTE, obytes);
                const int status = d->logsumexp(a, out, ROWS, n, isa, threads);
                if (status != SG_OK) {
                    fail("status", ISA_NAMES[isa], d, "logsumexp", n, off, special, 0, status, 0,
                         0);
                    continue;
                }
                check_guards(O, obytes, out, ROWS * es, ISA_NAMES[isa], d, "logsumexp", n, off,
                             special);
                check_bits(&hash_libm, isa == SG_ISA_SCALAR && threads == 1 && off == 0, ref_out,
                           out, ROWS, ISA_NAMES[isa], d, "logsumexp", n, off, special);
                if (threads == 1 && (int)off == (isa + special) % 4)
                    compare("reference", ISA_NAMES[isa], d, "logsumexp", n, off, special, out,
                            ref, tol, ROWS);
            }
        }
    }
    free(A);
    free(O);
    free(ref_out);
    free(a0);
}

/* The cross-entropy's rows: check_case's forward rows (random, a dominant logit, the special),
 * then a row whose label is ignored (with a NaN nobody may read). Labels: the last class, the
 * dominant one (a confident row), the special's position (its -inf at 0 for special 3), ignored. */
enum { CE_ROWS = ROWS + 1, IGNORE = -100 };
static const double CE_GRAD[CE_ROWS] = {1.5, -0.5, 2.0, 0.75};

static void make_ce_inputs(const struct dtype *d, size_t n, int special, void *x, int64_t *labels,
                           void *grad)
{
    make_inputs(d, K_SOFTMAX, n, special, x, NULL);
    for (size_t i = 0; i < n; ++i)
        put(d, x, ROWS * n + i, i == n / 2 ? NAN : 4.0 * rng_unit() - 2.0);
    labels[0] = (int64_t)n - 1;
    labels[1] = (int64_t)(n - 1) / 2;
    labels[2] = special == 3 ? 0 : (int64_t)(n / 2);
    labels[3] = IGNORE;
    for (size_t r = 0; r < CE_ROWS; ++r)
        put(d, grad, r, CE_GRAD[r]);
}

/* Row r's reference from the definition in long double (computed once per case): e_j =
 * exp(x_j - m), Z' = sum_{j != k} e_j, loss = log(1 + Z'/e_k) (lse - x_k without its cancellation
 * in a confident row), dx_j = g e_j / Z and dx_k = -g Z'/Z (Z = Z' + e_k); NaN throughout without
 * a softmax (a NaN or +inf logit, or only -inf); loss 0 and dx 0 exactly for an ignored row. The
 * bounds: two sums and an exp, each within the softmax check's (n + 16) ut, and the roundings. */
static void ce_reference_row(const struct dtype *d, size_t n, const void *x, const int64_t *labels,
                             const void *grad, size_t r, long double *loss, long double *loss_tol,
                             long double *dx, long double *dx_tol)
{
    const long double g = grad ? get(d, grad, r) : 1, abs_tiny = 2 * d->tiny + 2 * 0x1p-149L;
    const int64_t k = labels[r];
    const size_t o = r * n;
    long double m = -INFINITY, zo = 0, rel = 0;
    int undefined = 0;
    for (size_t i = 0; i < n; ++i) {
        const long double v = get(d, x, o + i);
        undefined |= v != v || v == INFINITY;
        if (v > m)
            m = v;
        dx[i] = 0;
    }
    *loss = 0;
    if (k != IGNORE) {
        undefined |= m == -INFINITY;
        for (size_t i = 0; i < n; ++i)
            if (i != (size_t)k)
                zo += dx[i] = expl(get(d, x, o + i) - m);
        const long double ek = expl(get(d, x, o + (size_t)k) - m), z = zo + ek;
        *loss = undefined ? NAN : ek > 0 ? log1pl(zo / ek) : INFINITY;
        for (size_t i = 0; i < n; ++i)
            dx[i] = undefined ? NAN : i == (size_t)k ? -g * zo / z : g * dx[i] / z;
        rel = 2 * (long double)(n + 16) * d->ut + 8 * d->ut;
    }
    *loss_tol = rel * fabsl(*loss);
    for (size_t i = 0; i < n; ++i)
        dx_tol[i] = k == IGNORE ? 0 : rel * fabsl(dx[i]) + abs_tiny * (1 + fabsl(g));
}

/* Each path, offset, thread count, with grad and without (NULL: ones), against the scalar path's
 * bits and the reference, with guards around loss and dlogits. */
static void check_ce(const struct dtype *d, size_t n, int special, int mask)
{
    const size_t count = CE_ROWS * n, es = d->size;
    const size_t xbytes = (count + 2 * GUARD + MAXOFF) * es;
    const size_t lbytes = (CE_ROWS + 2 * GUARD + MAXOFF) * es;
    unsigned char *X = block_of(xbytes), *G = block_of(lbytes), *L = block_of(lbytes);
    unsigned char *D = block_of(xbytes), *x0 = malloc(count * es), *g0 = malloc(CE_ROWS * es);
    unsigned char *ref_loss[2] = {malloc(CE_ROWS * es), malloc(CE_ROWS * es)};
    unsigned char *ref_dx[2] = {malloc(count * es), malloc(count * es)};
    int64_t labels0[CE_ROWS], lab[CE_ROWS + MAXOFF];
    long double lref[2][CE_ROWS], ltol[2][CE_ROWS], *dref[2], *dtol[2];
    make_ce_inputs(d, n, special, x0, labels0, g0);
    for (int w = 0; w < 2; ++w) { /* without grad, with grad */
        dref[w] = malloc(count * sizeof **dref);
        dtol[w] = malloc(count * sizeof **dtol);
        for (size_t r = 0; r < CE_ROWS; ++r)
            ce_reference_row(d, n, x0, labels0, w ? g0 : NULL, r, &lref[w][r], &ltol[w][r],
                             dref[w] + r * n, dtol[w] + r * n);
    }
    for (size_t off = 0; off <= MAXOFF; ++off) {
        unsigned char *x = X + (GUARD + off) * es, *grad = G + (GUARD + off) * es;
        unsigned char *loss = L + (GUARD + off) * es, *dx = D + (GUARD + off) * es;
        int64_t *labels = lab + off;
        memcpy(x, x0, count * es);
        memcpy(grad, g0, CE_ROWS * es);
        memcpy(labels, labels0, sizeof labels0);
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1))
                continue;
            for (int threads = 1; threads <= 2; ++threads)
                for (int with_grad = threads - 1; with_grad <= 1; ++with_grad) {
                    /* one thread without grad and with, two threads with */
                    const void *g = with_grad ? grad : NULL;
                    memset(L, GUARD_BYTE, lbytes);
                    memset(D, GUARD_BYTE, xbytes);
                    const int status =
                        d->cross_entropy(x, labels, g, loss, dx, CE_ROWS, n, IGNORE, isa, threads);
                    const char *name = with_grad ? "cross_entropy(grad)" : "cross_entropy";
                    if (status != SG_OK) {
                        fail("status", ISA_NAMES[isa], d, name, n, off, special, 0, status, 0, 0);
                        continue;
                    }
                    check_guards(L, lbytes, loss, CE_ROWS * es, ISA_NAMES[isa], d, name, n, off,
                                 special);
                    check_guards(D, xbytes, dx, count * es, ISA_NAMES[isa], d, name, n, off,
                                 special);
                    const int first = isa == SG_ISA_SCALAR && threads == 1 && off == 0;
                    check_bits(&hash_libm, first, ref_loss[with_grad], loss, CE_ROWS,
                               ISA_NAMES[isa], d, name, n, off, special);
                    check_bits(&hash_bits, first, ref_dx[with_grad], dx, count, ISA_NAMES[isa], d,
                               name, n, off, special);
                    if (threads == 1 && (int)off == (isa + special + with_grad) % 4) {
                        compare("loss", ISA_NAMES[isa], d, name, n, off, special, loss,
                                lref[with_grad], ltol[with_grad], CE_ROWS);
                        compare("dlogits", ISA_NAMES[isa], d, name, n, off, special, dx,
                                dref[with_grad], dtol[with_grad], count);
                    }
                }
        }
    }
    free(X);
    free(G);
    free(L);
    free(D);
    free(x0);
    free(g0);
    for (int w = 0; w < 2; ++w) {
        free(ref_loss[w]);
        free(ref_dx[w]);
        free(dref[w]);
        free(dtol[w]);
    }
}

/* A label outside [0, n) that is not ignore_index -- n, -1, or -100 when ignore_index is -1 --
 * returns SG_BAD_LABEL from every path, with and without grad, before anything is written. */
static void check_ce_bad_label(const struct dtype *d, int mask)
{
    const size_t n = 37, count = CE_ROWS * n, es = d->size;
    static const int64_t BAD[][2] = {{37, IGNORE}, {-1, IGNORE}, {IGNORE, -1}}; /* label, ignore */
    unsigned char *x = malloc(count * es), *grad = malloc(CE_ROWS * es);
    unsigned char *loss = malloc(CE_ROWS * es), *dx = malloc(count * es);
    int64_t labels[CE_ROWS];
    make_ce_inputs(d, n, 0, x, labels, grad);
    for (size_t b = 0; b < sizeof BAD / sizeof *BAD; ++b) {
        labels[2] = BAD[b][0];
        for (int isa = 0; isa < 4; ++isa) {
            if (!((mask >> isa) & 1))
                continue;
            for (int threads = 1; threads <= 2; ++threads)
                for (int with_grad = 0; with_grad <= 1; ++with_grad) {
                    memset(loss, GUARD_BYTE, CE_ROWS * es);
                    memset(dx, GUARD_BYTE, count * es);
                    const int status = d->cross_entropy(x, labels, with_grad ? grad : NULL, loss,
                                                        dx, CE_ROWS, n, BAD[b][1], isa, threads);
                    ++checks;
                    if (status != SG_BAD_LABEL)
                        fail("status of a bad label", ISA_NAMES[isa], d, "cross_entropy", n, 0, 0,
                             b, status, SG_BAD_LABEL, 0);
                    size_t k = 0; /* the first byte of dx, or of loss, written */
                    while (k < count * es && dx[k] == GUARD_BYTE &&
                           (k >= CE_ROWS * es || loss[k] == GUARD_BYTE))
                        ++k;
                    if (k < count * es)
                        fail("written on a bad label", ISA_NAMES[isa], d, "cross_entropy", n, 0, 0,
                             k, 0, 0, 0);
                }
        }
    }
    free(x);
    free(grad);
    free(loss);
    free(dx);
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
    /* the online kernels' long rows: two blocks and three (n <= 4096 is checked above to give
     * the multipass kernel's bits) */
    static const size_t ONLINE_LONG[] = {ONLINE_BLOCK + 3, 2 * ONLINE_BLOCK + 3};
    const size_t longs = sizeof ONLINE_LONG / sizeof *ONLINE_LONG;
    for (size_t t = 0; t < sizeof DTYPES / sizeof *DTYPES; ++t) {
        const struct dtype *d = &DTYPES[t];
        for (int kernel = K_VJP; kernel <= K_ONLINE; ++kernel)
            for (int special = 0; special <= 4; ++special) {
                for (size_t n = 1; n <= 33; ++n)
                    check_case(d, kernel, n, special, mask);
                for (size_t k = 0; k < (kernel == K_ONLINE ? longs : sizeof LONG / sizeof *LONG);
                     ++k)
                    check_case(d, kernel, kernel == K_ONLINE ? ONLINE_LONG[k] : LONG[k], special,
                               mask);
            }
        if (d->logsumexp) /* and cross_entropy: float32 and float64 */
            for (int special = 0; special <= 4; ++special)
                for (size_t n = 1; n <= 33 + longs; ++n) {
                    const size_t len = n <= 33 ? n : ONLINE_LONG[n - 34];
                    check_lse(d, len, special, mask);
                    check_ce(d, len, special, mask);
                }
        if (d->cross_entropy)
            check_ce_bad_label(d, mask);
        if (d->size == 4)
            check_stream(d, mask);
    }
    printf("checks %ld failures %ld\n", checks, failures);
    printf("hash %016llx %016llx\n", (unsigned long long)hash_bits.strict,
           (unsigned long long)hash_bits.canon);
    printf("libm-hash %016llx %016llx\n", (unsigned long long)hash_libm.strict,
           (unsigned long long)hash_libm.canon);
    return failures != 0;
}
