/* kernels_scalar.c: portable C kernels, the reference path that builds on every CPU.
 *
 * Compiled with -ffp-contract=off (see _native_build.py): a * b + c is never fused behind our
 * back, so NaN and infinity propagate exactly as the NumPy formula's separate operations do.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kernels_half.h"

/* ---- the VJP and the forward pass: kernels_simd.h with vectors of one element -----------------
 * The same algorithm as the SIMD paths, written once there; these definitions make its vectors
 * scalars. The results are bitwise those of the SIMD paths: the same sums in the same order
 * (kernels_sum.h), the same elementwise operations, and the exp's fused multiply-adds are
 * C99's fma(), rounded once like VFMADD (on x86-64 glibc runs it as one instruction on CPUs with
 * FMA, in software elsewhere; on AArch64 it is an instruction). */
#define SG_TARGET
#define SG_ROWS_ONLY 1 /* the thread's O(n^2) loop and the floor below are this file's own */
#define VPREFETCH(p) ((void)(p))
#define VSFENCE() ((void)0)
/* round to nearest, ties to even, for |v| < 2^22: adding and removing 1.5 * 2^23 leaves no
 * fraction bits (the rounding mode is the default one; no -ffast-math removes the pair) */
static inline float sg_round_f32(float v) { return (v + 0x1.8p23f) - 0x1.8p23f; }
static inline double sg_round_f64(double v) { return (v + 0x1.8p52) - 0x1.8p52; }

/* p * 2^k as kernels_avx2.c computes it, 2^(k>>1) * 2^(k - (k>>1)), each a normal number, the
 * second product rounded once (correct gradual underflow and overflow); k NaN gives NaN. For T
 * with integer types I and U of its width, MANT mantissa bits and exponent bias BIAS. */
#define SG_SCALAR_LDEXP(NAME, T, I, U, MANT, BIAS)                                                 \
    static inline T NAME(T p, T k)                                                                 \
    {                                                                                              \
        if (!(k == k))                                                                             \
            return p + k;                                                                          \
        const I ki = (I)k, k1 = ki >> 1, k2 = ki - k1;                                             \
        const U b1 = (U)(k1 + (BIAS)) << (MANT), b2 = (U)(k2 + (BIAS)) << (MANT);                 \
        T s1, s2;                                                                                  \
        memcpy(&s1, &b1, sizeof s1);                                                               \
        memcpy(&s2, &b2, sizeof s2);                                                               \
        return (p * s1) * s2;                                                                      \
    }

SG_SCALAR_LDEXP(sg_ldexp_f32, float, int32_t, uint32_t, 23, 127)
SG_SCALAR_LDEXP(sg_ldexp_f64, double, int64_t, uint64_t, 52, 1023)

#include "kernels_scalar_vocab.h"
#define FN(name) sg_scalar_##name##_f32
#define T float
#define V float
#define VFMADD(a, b, c) fmaf(a, b, c)
#define VFNMADD(a, b, c) fmaf(-(a), b, c)
#define VROUND(v) sg_round_f32(v)
#define VLDEXP(p, k) sg_ldexp_f32(p, k)
#include "kernels_simd.h"

#include "kernels_scalar_vocab.h"
#define FN(name) sg_scalar_##name##_f64
#define T double
#define V double
#define VFMADD(a, b, c) fma(a, b, c)
#define VFNMADD(a, b, c) fma(-(a), b, c)
#define VROUND(v) sg_round_f64(v)
#define VLDEXP(p, k) sg_ldexp_f64(p, k)
#include "kernels_simd.h"

/* The online kernels' rescaling exp, shared by every ISA (kernels.h). */
double sg_exp1(double x, double nm) { return sg_scalar_exp_f64(x, nm); }

/* float16 and bfloat16 rows, computed in float: the float instance's operations, converted on
 * load and rounded once on store by kernels_half.h. */
#define FN(name) sg_scalar_##name##_f16
#define T float
#define V float
#define S uint16_t
#define SU 0x1p-11
#define STOT1(h) sg_f16_to_f32(h)
#define TTOS1(x) sg_f32_to_f16(x)
#include "kernels_scalar_vocab.h"
#define VFMADD(a, b, c) fmaf(a, b, c)
#define VFNMADD(a, b, c) fmaf(-(a), b, c)
#define VROUND(v) sg_round_f32(v)
#define VLDEXP(p, k) sg_ldexp_f32(p, k)
#include "kernels_simd.h"

#define FN(name) sg_scalar_##name##_bf16
#define T float
#define V float
#define S uint16_t
#define SU 0x1p-8
#define STOT1(h) sg_bf16_to_f32(h)
#define TTOS1(x) sg_f32_to_bf16(x)
#include "kernels_scalar_vocab.h"
#define VFMADD(a, b, c) fmaf(a, b, c)
#define VFNMADD(a, b, c) fmaf(-(a), b, c)
#define VROUND(v) sg_round_f32(v)
#define VLDEXP(p, k) sg_ldexp_f32(p, k)
#include "kernels_simd.h"

/* ---- the source thread's O(n^2) Jacobian-times-vector, as posted (non-SSE version) ------------ */

#define SG_SCALAR_QUADRATIC(T, NAME)                                                               \
    static void NAME(const void *a, const void *b, void *o, size_t rows, size_t n)                 \
    {                                                                                              \
        const T *SG_RESTRICT y = a;                                                                \
        const T *SG_RESTRICT dy = b;                                                               \
        T *SG_RESTRICT out = o;                                                                    \
        for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n) {                             \
            for (size_t i = 0; i < n; ++i) {                                                       \
                T sum = 0;                                                                         \
                const T neg_y_i = -y[i];                                                           \
                for (size_t j = 0; j < n; ++j)                                                     \
                    sum += dy[j] * y[j] * neg_y_i;                                                 \
                out[i] = sum;                                                                      \
            }                                                                                      \
            for (size_t i = 0; i < n; ++i)                                                         \
                out[i] += y[i] * dy[i];                                                            \
        }                                                                                          \
    }

SG_SCALAR_QUADRATIC(float, quadratic_f32)
SG_SCALAR_QUADRATIC(double, quadratic_f64)

/* ---- bandwidth floor: out = a + b --------------------------------------------------------------- */

#define SG_SCALAR_ADD(T, NAME)                                                                     \
    static void NAME(const void *a_, const void *b_, void *o, size_t rows, size_t n)               \
    {                                                                                              \
        const T *SG_RESTRICT a = a_;                                                               \
        const T *SG_RESTRICT b = b_;                                                               \
        T *SG_RESTRICT out = o;                                                                    \
        const size_t count = rows * n;                                                             \
        for (size_t i = 0; i < count; ++i)                                                         \
            out[i] = a[i] + b[i];                                                                  \
    }

SG_SCALAR_ADD(float, add_f32)
SG_SCALAR_ADD(double, add_f64)

const struct sg_kernels sg_kernels_scalar = {
    SG_VJP_FIELDS(scalar), /* the streaming VJP pipelined, with ordinary stores */
    SG_ONLINE_FIELDS(scalar),
    .softmax_f32 = sg_scalar_softmax_f32,
    .softmax_f64 = sg_scalar_softmax_f64,
    .quadratic_f32 = quadratic_f32,
    .quadratic_f64 = quadratic_f64,
    .add_f32 = add_f32,
    .add_f64 = add_f64,
    .add_stream_f32 = add_f32,
    .add_stream_f64 = add_f64,
    .softmax_f16 = sg_scalar_softmax_f16,
    .softmax_bf16 = sg_scalar_softmax_bf16,
};
