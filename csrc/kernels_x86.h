/* kernels_x86.h: horizontal sums and maxima of 256-bit vectors, for kernels_avx2.c and
 * kernels_avx512.c (whose 512-bit ones add their two halves first).
 *
 * Each sum is the halving tree kernels_sum.h relies on: lane w += lane w + W/2 (the upper 128
 * bits onto the lower), then + W/4, ..., so every path combines the same lanes in the same order.
 * Internal: included after <immintrin.h>; AVX2 instructions only, so an AVX-512 function may
 * inline them.
 */
#ifndef SG_KERNELS_X86_H
#define SG_KERNELS_X86_H

#define SG_TARGET_AVX2 __attribute__((target("avx2,fma")))

SG_TARGET_AVX2 static inline float sg_hsum_f32x8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SG_TARGET_AVX2 static inline float sg_hmax_f32x8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SG_TARGET_AVX2 static inline double sg_hsum_f64x4(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

SG_TARGET_AVX2 static inline double sg_hmax_f64x4(__m256d v)
{
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

#endif /* SG_KERNELS_X86_H */
