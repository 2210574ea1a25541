/* kernels_avx512.c: AVX-512F kernels (16 floats / 8 doubles per vector, mask-register tails),
 * and float16 / bfloat16 rows computed in float (AVX-512F's vcvtph2ps / vcvtps2ph for float16,
 * integer shifts for bfloat16).
 *
 * Every function carries __attribute__((target(...))), so this file compiles with the default
 * x86-64 flags and its code only runs after dispatch.c has checked the CPU and OS. Only AVX-512F
 * instructions are used (no DQ/BW/VL), plus AVX2/FMA/F16C, which every AVX-512F CPU has. Not
 * AVX512-BF16's vcvtneps2bf16: it treats subnormal inputs as zero, so its bits would differ
 * from the other paths' (and it would need a fallback for CPUs without it).
 *
 * Built with SG_NO_AVX512 defined (SG_NO_AVX512=1 in the environment of the build, see
 * _native_build.py), for compilers without AVX-512 intrinsics, the file compiles to nothing and
 * dispatch.c never offers the path.
 */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(SG_NO_AVX512)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define SG_TARGET __attribute__((target("avx512f,avx2,fma")))
#define VPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define VSFENCE() _mm_sfence()
#define SG_KEEP(v) __asm__("" : "+x"(v)) /* v stays in an XMM/YMM/ZMM register */

#include "kernels_half.h"
#include "kernels_x86.h"

/* Horizontal sums by the halving tree (kernels_x86.h): the upper 256 bits onto the lower, then
 * the AVX2 steps; the same lanes in the same order as on the AVX2 and scalar paths (the
 * compiler's _mm512_reduce_add_* promise no order). */
SG_TARGET static inline float sg_hsum_f32x16(__m512 v)
{
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return sg_hsum_f32x8(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

SG_TARGET static inline double sg_hsum_f64x8(__m512d v)
{
    return sg_hsum_f64x4(_mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1)));
}

/* The first r < 8 floats at p, widened to doubles (the float forward pass sums in double). */
SG_TARGET static inline __m512d sg_mloadz_f32x8_pd(const float *p, size_t r)
{
    const __m512 x = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1u), p);
    return _mm512_cvtps_pd(_mm512_castps512_ps256(x));
}

/* VLOADV, the in-cache VJP's load: a 512-bit vector as two 256-bit halves, the same 16 floats /
 * 8 doubles, so the same results bit for bit. On a CPU that executes 512-bit operations as two
 * 256-bit halves, full-width loads of rows coming from L2/L3 made this VJP slower than the AVX2
 * one, more so when y, dy and out are not equally aligned (each full-width load of a misaligned
 * stream splits a cache line, a 256-bit load at most every other one). The streaming VJP keeps
 * full-width loads, which were faster there (bench/README.md, "Design measurements"). */
SG_TARGET static inline __m512d sg_loadv_f64x8(const double *p)
{
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(p)), _mm256_loadu_pd(p + 4),
                              1);
}

/* The sums of the forward pass, in double vectors for both instances (kernels_simd.h). */
#define ACC_T double
#define ACC_V __m512d
#define ACC_W 8
#define ACC_ZERO _mm512_setzero_pd()
#define ACC_ADD _mm512_add_pd
#define ACC_MUL _mm512_mul_pd
#define ACC_SUB _mm512_sub_pd
#define ACC_MAX _mm512_max_pd
#define ACC_HSUM(v) sg_hsum_f64x8(v)

/* ---- float instance ---------------------------------------------------------------------------- */
#define FN(name) sg_avx512_##name##_f32
#define M __mmask16
#define MTAIL(r) ((__mmask16)((1u << (r)) - 1u))
#define VLOADU(p) _mm512_loadu_ps(p)
#define VLOADV(p) _mm512_castpd_ps(sg_loadv_f64x8((const double *)(p)))
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VSTREAM(p, v) _mm512_stream_ps(p, v)
#define VMLOADZ(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMLOAD_OR(p, m, fill) _mm512_mask_loadu_ps(fill, m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#include "kernels_avx512_ps.h"
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
#define VFNMADD _mm512_fnmadd_pd
#define VMAX _mm512_max_pd
#define VMIN _mm512_min_pd
#define VROUND(v) _mm512_roundscale_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLDEXP _mm512_scalef_pd
#define MTAIL(r) ((__mmask8)((1u << (r)) - 1u))
#define VMLOADZ(p, m) _mm512_maskz_loadu_pd(m, p)
#define VMLOAD_OR(p, m, fill) _mm512_mask_loadu_pd(fill, m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VHSUM(v) sg_hsum_f64x8(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) _mm512_reduce_max_pd(v)
#define VANYGE(v, x) (_mm512_cmp_pd_mask(v, VSET1(x), _CMP_GE_OQ) != 0)
#define ACC_LOAD(p) _mm512_loadu_pd(p)
#define ACC_MLOADZ(p, r) VMLOADZ(p, MTAIL(r))
#include "kernels_simd.h"

/* ---- float16 and bfloat16 rows: 16 elements (256 bits) per float vector ----------------------
 * Loads widen to float, stores round once (to nearest even). Tails of r < 16 elements go
 * through a small buffer: 16-bit masked loads and stores need AVX512BW. */
SG_TARGET static inline __m256i sg_mload_u16x16(const uint16_t *p, size_t r)
{
    uint16_t b[16] = {0};
    memcpy(b, p, r * sizeof *p);
    return _mm256_loadu_si256((const __m256i *)b);
}

SG_TARGET static inline void sg_mstore_u16x16(uint16_t *p, size_t r, __m256i v)
{
    uint16_t b[16];
    _mm256_storeu_si256((__m256i *)b, v);
    memcpy(p, b, r * sizeof *p);
}

SG_TARGET static inline __m512 sg_bf16x16_to_ps(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* kernels_half.h's sg_f32_to_bf16 on 16 lanes */
SG_TARGET static inline __m256i sg_ps_to_bf16x16(__m512 v)
{
    const __m512i b = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), odd), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40));
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

/* ---- float16 instance -------------------------------------------------------------------------- */
#define FN(name) sg_avx512_##name##_f16
#define SU 0x1p-11
#define STOT1(h) sg_f16_to_f32(h)
#define TTOS1(x) sg_f32_to_f16(x)
#define SG_HL(h) _mm512_cvtph_ps(h)
#define SG_HS(v) _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#include "kernels_avx512_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

/* ---- bfloat16 instance ------------------------------------------------------------------------- */
#define FN(name) sg_avx512_##name##_bf16
#define SU 0x1p-8
#define STOT1(h) sg_bf16_to_f32(h)
#define TTOS1(x) sg_f32_to_bf16(x)
#define SG_HL(h) sg_bf16x16_to_ps(h)
#define SG_HS(v) sg_ps_to_bf16x16(v)
#include "kernels_avx512_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

const struct sg_kernels sg_kernels_avx512 = {
    SG_VJP_FIELDS(avx512),
    SG_ONLINE_FIELDS(avx512),
    .softmax_f32 = sg_avx512_softmax_f32,
    .softmax_f64 = sg_avx512_softmax_f64,
    .quadratic_f32 = sg_avx512_quadratic_f32,
    .quadratic_f64 = sg_avx512_quadratic_f64,
    .add_f32 = sg_avx512_add_f32,
    .add_f64 = sg_avx512_add_f64,
    .add_stream_f32 = sg_avx512_add_stream_f32,
    .add_stream_f64 = sg_avx512_add_stream_f64,
    .softmax_f16 = sg_avx512_softmax_f16,
    .softmax_bf16 = sg_avx512_softmax_bf16,
};

#endif /* x86-64 and not SG_NO_AVX512 */
