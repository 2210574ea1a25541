/* kernels_scalar.c: portable C kernels, the reference path that builds on every CPU.
 *
 * Compiled with -ffp-contract=off (see _native_build.py): a * b + c is never fused behind our
 * back, so NaN and infinity propagate exactly as the NumPy formula's separate operations do.
 */
#include <math.h>

#include "kernels.h"

/* ---- softmax VJP: dx = y * (dy - <y, dy>) ---------------------------------------------------- */

/* Four accumulators break the add-latency chain; the sum order depends only on n, never on the
 * thread split or the address, so each row's result is reproducible. */
#define SG_SCALAR_VJP(T, NAME)                                                                     \
    static void NAME(const void *a, const void *b, void *o, size_t rows, size_t n)                 \
    {                                                                                              \
        const T *SG_RESTRICT y = a;                                                                \
        const T *SG_RESTRICT dy = b;                                                               \
        T *SG_RESTRICT out = o;                                                                    \
        for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n) {                             \
            T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                      \
            size_t i = 0;                                                                          \
            for (; i + 4 <= n; i += 4) {                                                           \
                s0 += y[i] * dy[i];                                                                \
                s1 += y[i + 1] * dy[i + 1];                                                        \
                s2 += y[i + 2] * dy[i + 2];                                                        \
                s3 += y[i + 3] * dy[i + 3];                                                        \
            }                                                                                      \
            for (; i < n; ++i)                                                                     \
                s0 += y[i] * dy[i];                                                                \
            const T dot = (s0 + s1) + (s2 + s3);                                                   \
            for (i = 0; i < n; ++i)                                                                \
                out[i] = y[i] * (dy[i] - dot);                                                     \
        }                                                                                          \
    }

SG_SCALAR_VJP(float, vjp_f32)
SG_SCALAR_VJP(double, vjp_f64)

/* ---- forward softmax --------------------------------------------------------------------------- */

/* Row maximum ignoring NaN (a NaN never compares greater). A NaN anywhere still turns the row's
 * sum, hence the whole row, into NaN -- as in the NumPy formula. Non-finite maxima (+inf, or -inf
 * for an all -inf row) shift by 0, as softmax_grad.softmax does. */
#define SG_SCALAR_ROW_SHIFT(T, NAME)                                                               \
    static T NAME(const T *x, size_t n)                                                            \
    {                                                                                              \
        T m = -INFINITY;                                                                           \
        for (size_t i = 0; i < n; ++i)                                                             \
            if (x[i] > m)                                                                          \
                m = x[i];                                                                          \
        return isfinite(m) ? m : (T)0;                                                             \
    }

SG_SCALAR_ROW_SHIFT(float, row_shift_f32)
SG_SCALAR_ROW_SHIFT(double, row_shift_f64)

static void softmax_f32(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    (void)b;
    const float *SG_RESTRICT x = a;
    float *SG_RESTRICT out = o;
    for (size_t r = 0; r < rows; ++r, x += n, out += n) {
        const double m = row_shift_f32(x, n);
        /* float32 logits are exact in double, so x - m and exp are accurate to double precision
         * and the only float32 rounding is the final one; the sum is kept in double too. */
        double sum = 0;
        for (size_t i = 0; i < n; ++i) {
            const float e = (float)exp((double)x[i] - m);
            out[i] = e;
            sum += e;
        }
        /* sum = inf (a +inf logit): no defined softmax, NaN throughout as in softmax_grad.softmax;
         * sum = 0 (all -inf) -> inf -> 0 * inf = NaN, like 0/0 */
        const double inv = isinf(sum) ? NAN : 1.0 / sum;
        for (size_t i = 0; i < n; ++i)
            out[i] = (float)(out[i] * inv);
    }
}

static void softmax_f64(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    (void)b;
    const double *SG_RESTRICT x = a;
    double *SG_RESTRICT out = o;
    for (size_t r = 0; r < rows; ++r, x += n, out += n) {
        const double m = row_shift_f64(x, n);
        double s0 = 0, s1 = 0;
        for (size_t i = 0; i < n; ++i) {
            /* x - m is rounded; TwoSum recovers its exact error err, and
             * exp(s + err) = exp(s) * (1 + err) to first order. Without it the relative error
             * would reach |x - m| * 2^-53, about 8e-14 near the underflow threshold. */
            const double s = x[i] - m;
            const double bp = s - x[i];
            double err = (x[i] - (s - bp)) + (-m - bp);
            if (!(err == err))
                err = 0; /* s = +-inf or NaN: no correction (and no inf - inf) */
            const double e = exp(s) * (1.0 + err);
            out[i] = e;
            if (i & 1)
                s1 += e;
            else
                s0 += e;
        }
        const double inv = isinf(s0 + s1) ? NAN : 1.0 / (s0 + s1); /* as in softmax_f32 */
        for (size_t i = 0; i < n; ++i)
            out[i] = out[i] * inv;
    }
}

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
    .vjp_f32 = vjp_f32,
    .vjp_f64 = vjp_f64,
    .vjp_stream_f32 = vjp_f32,
    .vjp_stream_f64 = vjp_f64,
    .softmax_f32 = softmax_f32,
    .softmax_f64 = softmax_f64,
    .quadratic_f32 = quadratic_f32,
    .quadratic_f64 = quadratic_f64,
    .add_f32 = add_f32,
    .add_f64 = add_f64,
    .add_stream_f32 = add_f32,
    .add_stream_f64 = add_f64,
};
