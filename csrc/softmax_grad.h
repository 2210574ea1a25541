/* softmax_grad.h: the whole C interface of the native kernels, and nothing else.
 *
 * lib/softmax_grad/_native_build.py feeds this file to cffi's cdef after dropping the lines that
 * start with '#', so everything between the include guard is plain declarations cffi can parse.
 *
 * Every array is a C-contiguous block of `rows` rows of `n` elements (the softmax axis is the last,
 * contiguous one); no alignment beyond the element type's is assumed. Inputs are only read, `out`
 * is written exactly at its rows * n elements and must not overlap an input. Rows are split into
 * contiguous blocks over up to `threads` threads (the caller and the workers of a persistent pool,
 * started on first need); every row is computed by the same code whatever the split, so the
 * result does not depend on `threads`.
 *
 * Each entry point checks its arguments before any kernel reads memory and returns a status
 * instead of running on bad ones. The Python layer (softmax_grad.native) turns a status into its
 * slow path, which validates every argument and raises the precise error: its fast path leaves
 * the two pointer-only checks, alignment and overlap, to C, where they cost a nanosecond.
 */
#ifndef SOFTMAX_GRAD_H
#define SOFTMAX_GRAD_H

#include <stddef.h>
#include <stdint.h>

/* Instruction-set paths. Bit (1 << SG_ISA_x) of sg_available_isas() says whether path x can run. */
enum sg_isa { SG_ISA_SCALAR = 0, SG_ISA_AVX2 = 1, SG_ISA_AVX512 = 2, SG_ISA_NEON = 3 };

/* The summation order of every sum in a row (csrc/kernels_sum.h), the same on every path:
 * SG_SUM_BYTES / sizeof(T) lanes (element j of a block in lane j mod that), blocks of
 * SG_SUM_ROUNDS times as many elements, combined by a fixed halving tree and a binary counter.
 * softmax_grad.native.summation_depth derives the error bound's depth from these. */
enum sg_summation { SG_SUM_BYTES = 256, SG_SUM_ROUNDS = 16 };

/* Return values of the entry points. */
enum sg_status {
    SG_OK = 0,
    SG_BAD_ISA = 1,       /* not one of sg_available_isas() */
    SG_BAD_THREADS = 2,   /* threads < 1 */
    SG_BAD_POINTER = 3,   /* NULL for a non-empty array */
    SG_BAD_ALIGNMENT = 4, /* a pointer not aligned to its element type */
    SG_OVERLAP = 5,       /* out overlaps an input */
    SG_BAD_LABEL = 6      /* a label outside [0, n) that is not ignore_index */
};

/* Bitmask of usable ISA paths: scalar always; AVX2 when the CPU has AVX2, FMA and F16C and the OS
 * saves the YMM state; AVX-512 when the CPU has AVX-512F (plus AVX2, FMA and F16C) and the OS
 * saves the ZMM state (cpuid + xgetbv); NEON on every AArch64 CPU. Read once and cached. */
int sg_available_isas(void);

/* Softmax VJP, the plain form: out[r, i] = y[r, i] * (dy[r, i] - sum_j y[r, j] * dy[r, j]) (the
 * sum in the one order above, the subtraction and the product each rounded). O(n) per row. */
int sg_softmax_vjp_f32(const float *y, const float *dy, float *out, size_t rows, size_t n,
                       int isa, int threads);
int sg_softmax_vjp_f64(const double *y, const double *dy, double *out, size_t rows, size_t n,
                       int isa, int threads);

/* Forward softmax: out[r, i] = exp(x[r, i] - m) / sum_j exp(x[r, j] - m), m = max_j x[r, j]
 * (m = 0 when it is not finite, as in softmax_grad.softmax). */
int sg_softmax_f32(const float *x, float *out, size_t rows, size_t n, int isa, int threads);
int sg_softmax_f64(const double *x, double *out, size_t rows, size_t n, int isa, int threads);

/* The same two for float16 (_f16) and bfloat16 (_bf16) arrays, as their 16-bit patterns:
 * converted to float on load, computed exactly as the float32 functions compute the converted
 * rows, and rounded once to nearest even on store (NaN stays NaN, overflow gives inf). */
int sg_softmax_vjp_f16(const uint16_t *y, const uint16_t *dy, uint16_t *out, size_t rows,
                       size_t n, int isa, int threads);
int sg_softmax_vjp_bf16(const uint16_t *y, const uint16_t *dy, uint16_t *out, size_t rows,
                        size_t n, int isa, int threads);
int sg_softmax_f16(const uint16_t *x, uint16_t *out, size_t rows, size_t n, int isa, int threads);
int sg_softmax_bf16(const uint16_t *x, uint16_t *out, size_t rows, size_t n, int isa,
                    int threads);

/* The VJP with confident rows in the accurate form (softmax_grad.native.softmax_vjp's
 * accurate=True): a row whose first maximum y_c >= 1/2 and that sums to 1 within (n + 16) u takes
 * out[r, i] = y[r, i] * ((dy[r, i] - dy[r, c]) + sum_j y[r, j] * (dy[r, c] - dy[r, j])), every
 * other row the VJP above, bit for bit. The same four dtypes. */
int sg_softmax_vjp_accurate_f32(const float *y, const float *dy, float *out, size_t rows, size_t n,
                                int isa, int threads);
int sg_softmax_vjp_accurate_f64(const double *y, const double *dy, double *out, size_t rows,
                                size_t n, int isa, int threads);
int sg_softmax_vjp_accurate_f16(const uint16_t *y, const uint16_t *dy, uint16_t *out, size_t rows,
                                size_t n, int isa, int threads);
int sg_softmax_vjp_accurate_bf16(const uint16_t *y, const uint16_t *dy, uint16_t *out,
                                 size_t rows, size_t n, int isa, int threads);

/* The source thread's O(n^2) algorithm, per row: out[i] = sum_j dy[j] * y[j] * (-y[i]), then
 * out[i] += y[i] * dy[i]. Mathematically equal to the VJP; kept to measure it. */
int sg_jacobian_product_quadratic_f32(const float *y, const float *dy, float *out, size_t rows,
                                      size_t n, int isa, int threads);
int sg_jacobian_product_quadratic_f64(const double *y, const double *dy, double *out,
                                      size_t rows, size_t n, int isa, int threads);

/* Bandwidth floor: out[k] = a[k] + b[k] for k < rows * n (two streams read, one written, like the
 * VJP). Elementwise, so the rows * n elements are split into contiguous blocks over up to
 * `threads` threads at any element, not only at row boundaries. */
int sg_stream_add_f32(const float *a, const float *b, float *out, size_t rows, size_t n, int isa,
                      int threads);
int sg_stream_add_f64(const double *a, const double *b, double *out, size_t rows, size_t n,
                      int isa, int threads);

/* The online forward pass: the same function as sg_softmax_*, with each row read once from
 * memory for its maximum and its sum (merged block by block, Milakov and Gimelshein 2018), then
 * written once. A row of at most 4096 elements gets sg_softmax_*'s bits; a longer one differs
 * from them by rounding only (its sum is merged from blocks), the same bits on every path. */
int sg_softmax_online_f32(const float *x, float *out, size_t rows, size_t n, int isa, int threads);
int sg_softmax_online_f64(const double *x, double *out, size_t rows, size_t n, int isa,
                          int threads);
int sg_softmax_online_f16(const uint16_t *x, uint16_t *out, size_t rows, size_t n, int isa,
                          int threads);
int sg_softmax_online_bf16(const uint16_t *x, uint16_t *out, size_t rows, size_t n, int isa,
                           int threads);

/* out[r] = log sum_j exp(x[r, j]) (the same online pass; rows elements of out): -inf for a row of
 * only -inf or n = 0, +inf with a +inf logit, NaN with a NaN. */
int sg_logsumexp_f32(const float *x, float *out, size_t rows, size_t n, int isa, int threads);
int sg_logsumexp_f64(const double *x, double *out, size_t rows, size_t n, int isa, int threads);

/* The fused softmax cross-entropy of rows x[r] with labels[r]: loss[r] = logsumexp(x[r]) -
 * x[r, labels[r]] and dx[r] = g_r (softmax(x[r]) - e_{labels[r]}), g_r = grad[r], or 1 when grad is
 * NULL; a row with labels[r] == ignore_index gets loss 0 and dx 0. Any other label outside
 * [0, n) returns SG_BAD_LABEL before anything is read or written. */
int sg_softmax_cross_entropy_f32(const float *x, const int64_t *labels, const float *grad,
                                 float *loss, float *dx, size_t rows, size_t n,
                                 int64_t ignore_index, int isa, int threads);
int sg_softmax_cross_entropy_f64(const double *x, const int64_t *labels, const double *grad,
                                 double *loss, double *dx, size_t rows, size_t n,
                                 int64_t ignore_index, int isa, int threads);

/* Worker threads the pool holds now: 0 until a call first uses more than one thread, and 0 again
 * in the child of a fork(), which starts its own workers on first need. */
int sg_pool_workers(void);

#endif /* SOFTMAX_GRAD_H */
