/* kernels_avx2.c: AVX2 + FMA kernels (8 floats / 4 doubles per vector, maskload/maskstore tails),
 * and float16 / bfloat16 rows computed in float (F16C conversions for float16, integer shifts
 * for bfloat16).
 *
 * Every function carries __attribute__((target("avx2,fma,f16c"))), so this file compiles with
 * the default x86-64 flags and its code only runs after dispatch.c has checked the CPU and OS.
 */
#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define SG_TARGET __attribute__((target("avx2,fma,f16c")))
#define VPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define VSFENCE() _mm_sfence()
#define SG_KEEP(v) __asm__("" : "+x"(v)) /* v stays in an XMM/YMM/ZMM register */

#include "kernels_half.h" /* one element at a time, the same bits */
#include "kernels_x86.h"  /* the horizontal sums and maxima */

/* ---- 2^k for the exp in kernels_simd.h ---------------------------------------------------------
 * AVX2 has no scalef, so 2^k is built in the exponent field, in two halves
 * 2^(k>>1) * 2^(k - (k>>1)): each stays a normal number over the exp's range of k, and the second
 * multiplication rounds once, giving correct gradual underflow and overflow. */
SG_TARGET static inline __m256 sg_ldexp_f32x8(__m256 p, __m256 k)
{
    const __m256i ki = _mm256_cvtps_epi32(k); /* exact: k is an integer */
    const __m256i k1 = _mm256_srai_epi32(ki, 1);
    const __m256i k2 = _mm256_sub_epi32(ki, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* AVX2 has no double-to-int64 conversion and no 64-bit arithmetic shift: k + 1.5 * 2^52 holds k
 * in its low mantissa bits, and floor(k/2) is taken on k + 2048 >= 0. */
SG_TARGET static inline __m256d sg_ldexp_f64x4(__m256d p, __m256d k)
{
    const __m256d magic = _mm256_set1_pd(0x1.8p52);
    const __m256i ki =
        _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)), _mm256_castpd_si256(magic));
    const __m256i k1b = _mm256_srli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(2048)), 1);
    /* k1b = floor(k/2) + 1024, so the biased exponents are k1 + 1023 = k1b - 1 and
     * k2 + 1023 = k - k1 + 1023 = ki - k1b + 2047. */
    const __m256i e1 = _mm256_sub_epi64(k1b, _mm256_set1_epi64x(1));
    const __m256i e2 = _mm256_add_epi64(_mm256_sub_epi64(ki, k1b), _mm256_set1_epi64x(2047));
    const __m256d s1 = _mm256_castsi256_pd(_mm256_slli_epi64(e1, 52));
    const __m256d s2 = _mm256_castsi256_pd(_mm256_slli_epi64(e2, 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
}

/* The first r < 4 floats at p, widened to doubles (the float forward pass sums in double). */
SG_TARGET static inline __m256d sg_mloadz_f32x4_pd(const float *p, size_t r)
{
    const __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32((int)r), _mm_setr_epi32(0, 1, 2, 3));
    return _mm256_cvtps_pd(_mm_maskload_ps(p, m));
}

/* The sums of the forward pass, in double vectors for both instances (kernels_simd.h). */
#define ACC_T double
#define ACC_V __m256d
#define ACC_W 4
#define ACC_ZERO _mm256_setzero_pd()
#define ACC_ADD _mm256_add_pd
#define ACC_MUL _mm256_mul_pd
#define ACC_SUB _mm256_sub_pd
#define ACC_MAX _mm256_max_pd
#define ACC_HSUM(v) sg_hsum_f64x4(v)

/* the first r lanes of a float vector */
#define SG_FMASK(r) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))

/* ---- float instance ---------------------------------------------------------------------------- */
#define FN(name) sg_avx2_##name##_f32
#define M __m256i
#define MTAIL(r) SG_FMASK(r)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VLOADV VLOADU
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VSTREAM(p, v) _mm256_stream_ps(p, v)
#define VMLOADZ(p, m) _mm256_maskload_ps(p, m)
#define VMLOAD_OR(p, m, fill) _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))
#define VMSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)
#include "kernels_avx2_ps.h"
#include "kernels_simd.h"

/* ---- double instance --------------------------------------------------------------------------- */
#define FN(name) sg_avx2_##name##_f64
#define T double
#define V __m256d
#define M __m256i
#define W 4
#define VLOADU(p) _mm256_loadu_pd(p)
#define VLOADV VLOADU
#define VSTOREU(p, v) _mm256_storeu_pd(p, v)
#define VSTREAM(p, v) _mm256_stream_pd(p, v)
#define VSET1(x) _mm256_set1_pd(x)
#define VZERO _mm256_setzero_pd()
#define VADD _mm256_add_pd
#define VSUB _mm256_sub_pd
#define VMUL _mm256_mul_pd
#define VFMADD _mm256_fmadd_pd
#define VFNMADD _mm256_fnmadd_pd
#define VMAX _mm256_max_pd
#define VMIN _mm256_min_pd
#define VROUND(v) _mm256_round_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLDEXP sg_ldexp_f64x4
#define MTAIL(r) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(r)), _mm256_setr_epi64x(0, 1, 2, 3))
#define VMLOADZ(p, m) _mm256_maskload_pd(p, m)
#define VMLOAD_OR(p, m, fill) _mm256_blendv_pd(fill, _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))
#define VMSTORE(p, m, v) _mm256_maskstore_pd(p, m, v)
#define VHSUM(v) sg_hsum_f64x4(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) sg_hmax_f64x4(v)
#define VANYGE(v, x) (_mm256_movemask_pd(_mm256_cmp_pd(v, VSET1(x), _CMP_GE_OQ)) != 0)
#define ACC_LOAD(p) _mm256_loadu_pd(p)
#define ACC_MLOADZ(p, r) VMLOADZ(p, MTAIL(r))
#include "kernels_simd.h"

/* ---- float16 and bfloat16 rows: 8 elements (128 bits) per float vector ------------------------
 * Loads widen to float, stores round once (to nearest even). Tails of r < 8 elements go through
 * a small buffer: AVX2 has no 16-bit masked load or store. */
SG_TARGET static inline __m128i sg_mload_u16x8(const uint16_t *p, size_t r)
{
    uint16_t b[8] = {0};
    memcpy(b, p, r * sizeof *p);
    return _mm_loadu_si128((const __m128i *)b);
}

SG_TARGET static inline void sg_mstore_u16x8(uint16_t *p, size_t r, __m128i v)
{
    uint16_t b[8];
    _mm_storeu_si128((__m128i *)b, v);
    memcpy(p, b, r * sizeof *p);
}

SG_TARGET static inline __m256 sg_bf16x8_to_ps(__m128i h)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* kernels_half.h's sg_f32_to_bf16 on 8 lanes */
SG_TARGET static inline __m128i sg_ps_to_bf16x8(__m256 v)
{
    const __m256i b = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i h = _mm256_blendv_epi8(rounded, quiet, nan); /* each lane < 2^16 */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08));
}

/* ---- float16 instance -------------------------------------------------------------------------- */
#define FN(name) sg_avx2_##name##_f16
#define SU 0x1p-11
#define STOT1(h) sg_f16_to_f32(h)
#define TTOS1(x) sg_f32_to_f16(x)
#define SG_HL(h) _mm256_cvtph_ps(h)
#define SG_HS(v) _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#include "kernels_avx2_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

/* ---- bfloat16 instance ------------------------------------------------------------------------- */
#define FN(name) sg_avx2_##name##_bf16
#define SU 0x1p-8
#define STOT1(h) sg_bf16_to_f32(h)
#define TTOS1(x) sg_f32_to_bf16(x)
#define SG_HL(h) sg_bf16x8_to_ps(h)
#define SG_HS(v) sg_ps_to_bf16x8(v)
#include "kernels_avx2_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

const struct sg_kernels sg_kernels_avx2 = {
    SG_VJP_FIELDS(avx2),
    SG_ONLINE_FIELDS(avx2),
    .softmax_f32 = sg_avx2_softmax_f32,
    .softmax_f64 = sg_avx2_softmax_f64,
    .quadratic_f32 = sg_avx2_quadratic_f32,
    .quadratic_f64 = sg_avx2_quadratic_f64,
    .add_f32 = sg_avx2_add_f32,
    .add_f64 = sg_avx2_add_f64,
    .add_stream_f32 = sg_avx2_add_stream_f32,
    .add_stream_f64 = sg_avx2_add_stream_f64,
    .softmax_f16 = sg_avx2_softmax_f16,
    .softmax_bf16 = sg_avx2_softmax_bf16,
};

#endif /* x86-64 */
