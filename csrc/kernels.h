/* kernels.h: what each ISA file (kernels_scalar.c, kernels_avx2.c, kernels_avx512.c,
 * kernels_neon.c) gives
 * dispatch.c -- one table of row-block kernels per ISA. Internal: cffi never sees this file.
 *
 * A row kernel processes `rows` consecutive rows of `n` elements starting at the given pointers.
 * Pointers are void so one thread-splitting routine in dispatch.c serves every kernel; each kernel
 * casts them back to its element type. `b` is unused by the one-input kernels (softmax).
 */
#ifndef SG_KERNELS_H
#define SG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "softmax_grad.h" /* SG_SUM_BYTES, SG_SUM_ROUNDS */

#if defined(__GNUC__) || defined(__clang__)
#define SG_RESTRICT __restrict__
/* Loops over a constant number of accumulator vectors must be unrolled for the accumulators to
 * live in registers; -O3 alone leaves some as loops over an array in memory. */
#define SG_UNROLL _Pragma("GCC unroll 64")
#define SG_ALWAYS_INLINE __attribute__((always_inline))
#else
#define SG_RESTRICT
#define SG_UNROLL
#define SG_ALWAYS_INLINE
#endif

typedef void (*sg_rows_fn)(const void *a, const void *b, void *out, size_t rows, size_t n);

/* The fused softmax cross-entropy: rows of x with their labels and optional upstream gradients
 * (grad may be NULL: ones), writing one loss per row and the rows of dx. */
typedef void (*sg_ce_fn)(const void *x, const int64_t *labels, const void *grad, void *loss,
                         void *dx, size_t rows, size_t n, int64_t ignore_index);

/* exp(x + nm) in double, by the scalar path's float64 exp (kernels_scalar.c): the one exp the
 * online kernels of every ISA rescale their running sums with, so they agree bit for bit. */
double sg_exp1(double x, double nm);

struct sg_kernels {
    /* The VJP in the plain form (vjp_*) and with confident rows in the accurate form
     * (vjp_accurate_*), per dtype: float32, float64, and float16 and bfloat16 rows (uint16_t
     * storage) computed in float, the float kernels' operations rounded once on store. */
    sg_rows_fn vjp_f32, vjp_f64, vjp_f16, vjp_bf16;
    sg_rows_fn vjp_accurate_f32, vjp_accurate_f64, vjp_accurate_f16, vjp_accurate_bf16;
    /* The same results as vjp_* and vjp_accurate_*, organised for blocks too large for the
     * caches. */
    sg_rows_fn vjp_stream_f32, vjp_stream_f64, vjp_stream_f16, vjp_stream_bf16;
    sg_rows_fn vjp_stream_accurate_f32, vjp_stream_accurate_f64, vjp_stream_accurate_f16,
        vjp_stream_accurate_bf16;
    sg_rows_fn softmax_f32, softmax_f64;
    sg_rows_fn quadratic_f32, quadratic_f64;
    /* Elementwise: called with rows = 1 and n = the element count of the block. */
    sg_rows_fn add_f32, add_f64;
    /* The same results as add_*, with the memory techniques of vjp_stream_*. */
    sg_rows_fn add_stream_f32, add_stream_f64;
    sg_rows_fn softmax_f16, softmax_bf16;
    /* The online forward pass (x read once for its max and sum, then y written), every dtype;
     * the log-sum-exp of each row into out[r] (one element per row); the fused cross-entropy. */
    sg_rows_fn softmax_online_f32, softmax_online_f64, softmax_online_f16, softmax_online_bf16;
    sg_rows_fn logsumexp_f32, logsumexp_f64;
    sg_ce_fn cross_entropy_f32, cross_entropy_f64;
};

/* The VJP fields of an ISA's table, whose kernels_simd.h instances are named sg_<ISA>_<kernel>_<dtype>. */
#define SG_VJP_FIELD(ISA, K, D) .K##_##D = sg_##ISA##_##K##_##D
#define SG_VJP_FIELDS_OF(ISA, K)                                                                   \
    SG_VJP_FIELD(ISA, K, f32), SG_VJP_FIELD(ISA, K, f64), SG_VJP_FIELD(ISA, K, f16),             \
        SG_VJP_FIELD(ISA, K, bf16)
#define SG_VJP_FIELDS(ISA)                                                                         \
    SG_VJP_FIELDS_OF(ISA, vjp), SG_VJP_FIELDS_OF(ISA, vjp_accurate),                              \
        SG_VJP_FIELDS_OF(ISA, vjp_stream), SG_VJP_FIELDS_OF(ISA, vjp_stream_accurate)

/* The online kernels' fields of an ISA's table. */
#define SG_ONLINE_FIELDS(ISA)                                                                      \
    SG_VJP_FIELDS_OF(ISA, softmax_online), SG_VJP_FIELD(ISA, logsumexp, f32),                    \
        SG_VJP_FIELD(ISA, logsumexp, f64), SG_VJP_FIELD(ISA, cross_entropy, f32),                \
        SG_VJP_FIELD(ISA, cross_entropy, f64)

extern const struct sg_kernels sg_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
#define SG_X86_64 1
extern const struct sg_kernels sg_kernels_avx2;
#ifndef SG_NO_AVX512
#define SG_HAVE_AVX512 1
extern const struct sg_kernels sg_kernels_avx512;
#endif
#endif

#if defined(__aarch64__)
extern const struct sg_kernels sg_kernels_neon;
#endif

#endif /* SG_KERNELS_H */
