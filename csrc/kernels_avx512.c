/* kernels_avx512.c: AVX-512F kernels (16 floats / 8 doubles per vector, mask-register tails).
 *
 * Every function carries __attribute__((target(...))), so this file compiles with the default
 * x86-64 flags and its code only runs after dispatch.c has checked the CPU and OS. Only AVX-512F
 * instructions are used (no DQ/BW/VL), plus AVX2/FMA, which every AVX-512F CPU has.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"

#define SG_TARGET __attribute__((target("avx512f,avx2,fma")))
#define VPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define VSFENCE() _mm_sfence()

/* ---- exp(x + nm) for 16 floats ------------------------------------------------------------------
 * s = x + nm is rounded; TwoSum gives its exact error err (|err| <= ulp(s)/2), folded into the
 * reduced argument, so exp sees x - m exactly: without it the relative error would reach
 * |x - m| * 2^-24 = 5e-6 near the underflow threshold. Then k = round(s / ln2), r = s - k ln2
 * (ln2 split in two, Cody-Waite), exp(r) by the Cephes expf polynomial (|rel. error| < 2e-7 on
 * |r| <= ln2/2), and scalef multiplies by 2^k with correct overflow to inf and gradual underflow.
 * s is clamped to [-104, 89] first: exp(-104) rounds to 0 and exp(89) overflows, in float, so the
 * clamp changes no result, and max(lo, s)/min(hi, .) return s when it is NaN, so NaN propagates.
 * err is clamped to +-2^-10 (it is at most 2^-18 where it matters), which also maps the NaN that
 * TwoSum produces for s = +-inf to a harmless finite value. */
SG_TARGET static inline __m512 sg_exp_f32x16(__m512 x, __m512 nm)
{
    const __m512 s = _mm512_add_ps(x, nm);
    const __m512 bp = _mm512_sub_ps(s, x);
    const __m512 ap = _mm512_sub_ps(s, bp);
    __m512 err = _mm512_add_ps(_mm512_sub_ps(x, ap), _mm512_sub_ps(nm, bp));
    err = _mm512_min_ps(_mm512_max_ps(err, _mm512_set1_ps(-0x1p-10f)), _mm512_set1_ps(0x1p-10f));
    const __m512 sc =
        _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), s));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(sc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), sc);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    r = _mm512_add_ps(r, err);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/* ---- exp(x + nm) for 8 doubles: the same steps; clamp [-746, 710]; Taylor polynomial of degree
 * 12 (truncation error < 2e-16 on |r| <= ln2/2); ln2 = hi + lo with hi the double nearest ln2. */
SG_TARGET static inline __m512d sg_exp_f64x8(__m512d x, __m512d nm)
{
    const __m512d s = _mm512_add_pd(x, nm);
    const __m512d bp = _mm512_sub_pd(s, x);
    const __m512d ap = _mm512_sub_pd(s, bp);
    __m512d err = _mm512_add_pd(_mm512_sub_pd(x, ap), _mm512_sub_pd(nm, bp));
    err = _mm512_min_pd(_mm512_max_pd(err, _mm512_set1_pd(-0x1p-10)), _mm512_set1_pd(0x1p-10));
    const __m512d sc =
        _mm512_min_pd(_mm512_set1_pd(710.0), _mm512_max_pd(_mm512_set1_pd(-746.0), s));
    const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(sc, _mm512_set1_pd(1.4426950408889634)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.62e42fefa39efp-1), sc);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
    r = _mm512_add_pd(r, err);
    __m512d p = _mm512_set1_pd(1.0 / 479001600.0);
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 39916800.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 3628800.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 362880.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 40320.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 5040.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 720.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 120.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 24.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 6.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    return _mm512_scalef_pd(p, k);
}

/* The float forward pass sums in double: 16 floats become two vectors of 8 doubles. */
typedef struct {
    __m512d lo, hi;
} sg_acc_f32x16;

SG_TARGET static inline sg_acc_f32x16 sg_acc_add_f32x16(sg_acc_f32x16 acc, __m512 v)
{
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    acc.lo = _mm512_add_pd(acc.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc.hi = _mm512_add_pd(acc.hi, _mm512_cvtps_pd(hi));
    return acc;
}

/* VLOADV, the in-cache VJP's load: a 512-bit vector as two 256-bit halves, the same 16 floats /
 * 8 doubles, so the same results bit for bit. On Zen 4, which executes 512-bit operations as two
 * 256-bit halves, full-width loads of rows coming from L2/L3 made this VJP 5-15% slower than the
 * AVX2 one (64x1000 and 1024x1024, float32 worst), up to 20% when y, dy and out are not equally
 * aligned (each full-width load of a misaligned stream splits a cache line, a 256-bit load at
 * most every other one). With the halves it is within a few percent of AVX2 in float32 and
 * faster in float64. The streaming VJP keeps full-width loads: there they were 10-15% faster. */
SG_TARGET static inline __m512d sg_loadv_f64x8(const double *p)
{
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(p)), _mm256_loadu_pd(p + 4),
                              1);
}

/* ---- float instance ---------------------------------------------------------------------------- */
#define FN(name) sg_avx512_##name##_f32
#define T float
#define V __m512
#define M __mmask16
#define W 16
#define VLOADU(p) _mm512_loadu_ps(p)
#define VLOADV(p) _mm512_castpd_ps(sg_loadv_f64x8((const double *)(p)))
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VSTREAM(p, v) _mm512_stream_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO _mm512_setzero_ps()
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VFMADD _mm512_fmadd_ps
#define VMAX _mm512_max_ps
#define MTAIL(r) ((__mmask16)((1u << (r)) - 1u))
#define VMLOADZ(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMLOAD_OR(p, m, fill) _mm512_mask_loadu_ps(fill, m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VHMAX(v) _mm512_reduce_max_ps(v)
#define VEXP sg_exp_f32x16
#define ACC_T sg_acc_f32x16
#define ACC_ZERO ((sg_acc_f32x16){_mm512_setzero_pd(), _mm512_setzero_pd()})
#define ACC_ADD sg_acc_add_f32x16
#define ACC_HSUM(acc) _mm512_reduce_add_pd(_mm512_add_pd((acc).lo, (acc).hi))
#include "kernels_simd.h"

/* ---- double instance --------------------------------------------------------------------------- */
#define FN(name) sg_avx512_##name##_f64
#define T double
#define V __m512d
#define M __mmask8
#define W 8
#define VLOADU(p) _mm512_loadu_pd(p)
#define VLOADV(p) sg_loadv_f64x8(p)
#define VSTOREU(p, v) _mm512_storeu_pd(p, v)
#define VSTREAM(p, v) _mm512_stream_pd(p, v)
#define VSET1(x) _mm512_set1_pd(x)
#define VZERO _mm512_setzero_pd()
#define VADD _mm512_add_pd
#define VSUB _mm512_sub_pd
#define VMUL _mm512_mul_pd
#define VFMADD _mm512_fmadd_pd
#define VMAX _mm512_max_pd
#define MTAIL(r) ((__mmask8)((1u << (r)) - 1u))
#define VMLOADZ(p, m) _mm512_maskz_loadu_pd(m, p)
#define VMLOAD_OR(p, m, fill) _mm512_mask_loadu_pd(fill, m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VHSUM(v) _mm512_reduce_add_pd(v)
#define VHMAX(v) _mm512_reduce_max_pd(v)
#define VEXP sg_exp_f64x8
#define ACC_T __m512d
#define ACC_ZERO _mm512_setzero_pd()
#define ACC_ADD _mm512_add_pd
#define ACC_HSUM(acc) _mm512_reduce_add_pd(acc)
#include "kernels_simd.h"

const struct sg_kernels sg_kernels_avx512 = {
    .vjp_f32 = sg_avx512_vjp_f32,
    .vjp_f64 = sg_avx512_vjp_f64,
    .vjp_stream_f32 = sg_avx512_vjp_stream_f32,
    .vjp_stream_f64 = sg_avx512_vjp_stream_f64,
    .softmax_f32 = sg_avx512_softmax_f32,
    .softmax_f64 = sg_avx512_softmax_f64,
    .quadratic_f32 = sg_avx512_quadratic_f32,
    .quadratic_f64 = sg_avx512_quadratic_f64,
    .add_f32 = sg_avx512_add_f32,
    .add_f64 = sg_avx512_add_f64,
    .add_stream_f32 = sg_avx512_add_stream_f32,
    .add_stream_f64 = sg_avx512_add_stream_f64,
};

#endif /* x86-64 */
