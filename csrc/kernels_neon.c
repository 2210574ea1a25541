/* kernels_neon.c: AArch64 NEON kernels (4 floats / 2 doubles per 128-bit vector), and float16 /
 * bfloat16 rows computed in float (vcvt conversions for float16, integer shifts for bfloat16).
 *
 * NEON is part of every AArch64 CPU, so no function attribute and no detection are needed. NEON
 * has no masked loads or stores: a tail of r < W elements goes through a small buffer on the
 * stack (memcpy of exactly r elements), so no byte outside the row is read or written.
 *
 * The results are bitwise those of the scalar and x86 paths: the exp's multiply-adds are
 * vfmaq/vfmsq, fused and rounded once like VFMADD; VMAX and VMIN are built from a comparison and
 * a select, because vmaxq/vminq return NaN for a NaN operand where x86's maxps/minps (and the
 * scalar path's a > b ? a : b) return the second operand; the horizontal sums follow the halving
 * tree of kernels_x86.h. The bits of a NaN the hardware generates (inf - inf, 0 * inf) differ from
 * x86's: AArch64's default NaN is positive (0x7fc00000), x86's negative (0xffc00000); NaN
 * payloads propagate by the same first-operand rule on both.
 */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define SG_TARGET
#define VPREFETCH(p) __builtin_prefetch((const void *)(p), 0, 2)
#define VSFENCE() ((void)0) /* plain stores: NEON has no non-temporal store intrinsic */
#define SG_KEEP(v) __asm__("" : "+w"(v)) /* v stays in a SIMD register */

#include "kernels_half.h" /* one element at a time, the same bits */

/* ---- lane-wise max and min with x86's (and the scalar path's) NaN rule ----------------------- */
static inline float32x4_t sg_max_f32x4(float32x4_t a, float32x4_t b)
{
    return vbslq_f32(vcgtq_f32(a, b), a, b);
}
static inline float32x4_t sg_min_f32x4(float32x4_t a, float32x4_t b)
{
    return vbslq_f32(vcltq_f32(a, b), a, b);
}
static inline float64x2_t sg_max_f64x2(float64x2_t a, float64x2_t b)
{
    return vbslq_f64(vcgtq_f64(a, b), a, b);
}
static inline float64x2_t sg_min_f64x2(float64x2_t a, float64x2_t b)
{
    return vbslq_f64(vcltq_f64(a, b), a, b);
}

/* ---- horizontal sums and maxima: kernels_x86.h's halving tree (lane w += lane w + W/2, ...) -- */
static inline float sg_hsum_f32x4(float32x4_t v)
{
    const float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
}
static inline float sg_hmax_f32x4(float32x4_t v)
{
    const float32x4_t s = sg_max_f32x4(v, vcombine_f32(vget_high_f32(v), vget_high_f32(v)));
    const float a = vgetq_lane_f32(s, 0), b = vgetq_lane_f32(s, 1);
    return a > b ? a : b;
}
static inline double sg_hsum_f64x2(float64x2_t v) { return vgetq_lane_f64(v, 0) + vgetq_lane_f64(v, 1); }
static inline double sg_hmax_f64x2(float64x2_t v)
{
    const double a = vgetq_lane_f64(v, 0), b = vgetq_lane_f64(v, 1);
    return a > b ? a : b;
}

/* ---- 2^k for the exp in kernels_simd.h: kernels_avx2.c's two halves
 * 2^(k>>1) * 2^(k - (k>>1)), each a normal number over the exp's range of k, the second product
 * rounded once (correct gradual underflow and overflow). */
static inline float32x4_t sg_ldexp_f32x4(float32x4_t p, float32x4_t k)
{
    const int32x4_t ki = vcvtnq_s32_f32(k); /* exact: k is an integer */
    const int32x4_t k1 = vshrq_n_s32(ki, 1);
    const int32x4_t k2 = vsubq_s32(ki, k1);
    const int32x4_t bias = vdupq_n_s32(127);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k1, bias), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k2, bias), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

static inline float64x2_t sg_ldexp_f64x2(float64x2_t p, float64x2_t k)
{
    const int64x2_t ki = vcvtnq_s64_f64(k);
    const int64x2_t k1 = vshrq_n_s64(ki, 1);
    const int64x2_t k2 = vsubq_s64(ki, k1);
    const int64x2_t bias = vdupq_n_s64(1023);
    const float64x2_t s1 = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(k1, bias), 52));
    const float64x2_t s2 = vreinterpretq_f64_s64(vshlq_n_s64(vaddq_s64(k2, bias), 52));
    return vmulq_f64(vmulq_f64(p, s1), s2);
}

/* ---- tails: the first r < W elements through a stack buffer ---------------------------------
 * LOADZ(p, r): the first r elements at p, 0 in the other lanes; STORE(p, r, v): v's first r
 * lanes to p. For element type E, vector type VT of K lanes, and NEON's LD and ST. */
#define SG_NEON_TAIL(LOADZ, STORE, E, VT, K, LD, ST)                                               \
    static inline VT LOADZ(const E *p, size_t r)                                                   \
    {                                                                                              \
        E b[K] = {0};                                                                              \
        memcpy(b, p, r * sizeof *p);                                                               \
        return LD(b);                                                                              \
    }                                                                                              \
    static inline void STORE(E *p, size_t r, VT v)                                                 \
    {                                                                                              \
        E b[K];                                                                                    \
        ST(b, v);                                                                                  \
        memcpy(p, b, r * sizeof *p);                                                               \
    }

SG_NEON_TAIL(sg_mloadz_f32x4, sg_mstore_f32x4, float, float32x4_t, 4, vld1q_f32, vst1q_f32)
SG_NEON_TAIL(sg_mloadz_f64x2, sg_mstore_f64x2, double, float64x2_t, 2, vld1q_f64, vst1q_f64)
SG_NEON_TAIL(sg_mload_u16x4, sg_mstore_u16x4, uint16_t, uint16x4_t, 4, vld1_u16, vst1_u16)

/* the first r < 2 floats at p, widened to doubles (the float forward pass sums in double) */
static inline float64x2_t sg_mloadz_f32x2_pd(const float *p, size_t r)
{
    return vcvt_f64_f32(vset_lane_f32(r ? p[0] : 0.0f, vdup_n_f32(0.0f), 0));
}

/* the first r lanes of a float vector, and of a double vector */
static inline uint32x4_t sg_fmask(size_t r)
{
    static const uint32_t lane[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(lane), vdupq_n_u32((uint32_t)r));
}
static inline uint64x2_t sg_dmask(size_t r)
{
    static const uint64_t lane[2] = {0, 1};
    return vcltq_u64(vld1q_u64(lane), vdupq_n_u64((uint64_t)r));
}
#define SG_FMASK(r) sg_fmask(r)

/* The sums of the forward pass, in double vectors for both instances (kernels_simd.h). */
#define ACC_T double
#define ACC_V float64x2_t
#define ACC_W 2
#define ACC_ZERO vdupq_n_f64(0.0)
#define ACC_ADD vaddq_f64
#define ACC_MUL vmulq_f64
#define ACC_SUB vsubq_f64
#define ACC_MAX sg_max_f64x2
#define ACC_HSUM(v) sg_hsum_f64x2(v)

/* ---- float instance ---------------------------------------------------------------------------- */
#define FN(name) sg_neon_##name##_f32
#define M size_t /* a tail is its length */
#define MTAIL(r) ((size_t)(r))
#define VLOADU(p) vld1q_f32(p)
#define VLOADV VLOADU
#define VSTOREU(p, v) vst1q_f32(p, v)
#define VSTREAM VSTOREU
#define VMLOADZ(p, m) sg_mloadz_f32x4(p, m)
#define VMLOAD_OR(p, m, fill) vbslq_f32(SG_FMASK(m), sg_mloadz_f32x4(p, m), fill)
#define VMSTORE(p, m, v) sg_mstore_f32x4(p, m, v)
#include "kernels_neon_ps.h"
#include "kernels_simd.h"

/* ---- double instance --------------------------------------------------------------------------- */
#define FN(name) sg_neon_##name##_f64
#define T double
#define V float64x2_t
#define M size_t
#define W 2
#define VLOADU(p) vld1q_f64(p)
#define VLOADV VLOADU
#define VSTOREU(p, v) vst1q_f64(p, v)
#define VSTREAM VSTOREU
#define VSET1(x) vdupq_n_f64(x)
#define VZERO vdupq_n_f64(0.0)
#define VADD vaddq_f64
#define VSUB vsubq_f64
#define VMUL vmulq_f64
#define VFMADD(a, b, c) vfmaq_f64(c, a, b)
#define VFNMADD(a, b, c) vfmsq_f64(c, a, b)
#define VMAX sg_max_f64x2
#define VMIN sg_min_f64x2
#define VROUND(v) vrndnq_f64(v)
#define VLDEXP sg_ldexp_f64x2
#define MTAIL(r) ((size_t)(r))
#define VMLOADZ(p, m) sg_mloadz_f64x2(p, m)
#define VMLOAD_OR(p, m, fill) vbslq_f64(sg_dmask(m), sg_mloadz_f64x2(p, m), fill)
#define VMSTORE(p, m, v) sg_mstore_f64x2(p, m, v)
#define VHSUM(v) sg_hsum_f64x2(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) sg_hmax_f64x2(v)
#define VANYGE(v, x) (vmaxvq_u32(vreinterpretq_u32_u64(vcgeq_f64(v, vdupq_n_f64(x)))) != 0)
#define ACC_LOAD(p) vld1q_f64(p)
#define ACC_MLOADZ(p, r) sg_mloadz_f64x2(p, r)
#include "kernels_simd.h"

/* ---- float16 and bfloat16 rows: 4 elements (64 bits) per float vector ------------------------
 * Loads widen to float, stores round once (to nearest even, the default FPCR mode; FPCR.AHP = 0
 * gives IEEE half precision). */
static inline float32x4_t sg_f16x4_to_ps(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
static inline uint16x4_t sg_ps_to_f16x4(float32x4_t v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }
static inline float32x4_t sg_bf16x4_to_ps(uint16x4_t h)
{
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* kernels_half.h's sg_f32_to_bf16 on 4 lanes */
static inline uint16x4_t sg_ps_to_bf16x4(float32x4_t v)
{
    const uint32x4_t b = vreinterpretq_u32_f32(v);
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(b, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(vaddq_u32(b, vdupq_n_u32(0x7fff)), odd), 16);
    const uint32x4_t quiet = vorrq_u32(vshrq_n_u32(b, 16), vdupq_n_u32(0x40));
    const uint32x4_t h = vbslq_u32(vceqq_f32(v, v), rounded, quiet); /* each lane < 2^16 */
    return vmovn_u32(h);
}

/* ---- float16 instance -------------------------------------------------------------------------- */
#define FN(name) sg_neon_##name##_f16
#define SU 0x1p-11
#define STOT1(h) sg_f16_to_f32(h)
#define TTOS1(x) sg_f32_to_f16(x)
#define SG_HL(h) sg_f16x4_to_ps(h)
#define SG_HS(v) sg_ps_to_f16x4(v)
#include "kernels_neon_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

/* ---- bfloat16 instance ------------------------------------------------------------------------- */
#define FN(name) sg_neon_##name##_bf16
#define SU 0x1p-8
#define STOT1(h) sg_bf16_to_f32(h)
#define TTOS1(x) sg_f32_to_bf16(x)
#define SG_HL(h) sg_bf16x4_to_ps(h)
#define SG_HS(v) sg_ps_to_bf16x4(v)
#include "kernels_neon_half.h"
#include "kernels_simd.h"
#undef SG_HL
#undef SG_HS

const struct sg_kernels sg_kernels_neon = {
    SG_VJP_FIELDS(neon),
    SG_ONLINE_FIELDS(neon),
    .softmax_f32 = sg_neon_softmax_f32,
    .softmax_f64 = sg_neon_softmax_f64,
    .quadratic_f32 = sg_neon_quadratic_f32,
    .quadratic_f64 = sg_neon_quadratic_f64,
    .add_f32 = sg_neon_add_f32,
    .add_f64 = sg_neon_add_f64,
    .add_stream_f32 = sg_neon_add_stream_f32,
    .add_stream_f64 = sg_neon_add_stream_f64,
    .softmax_f16 = sg_neon_softmax_f16,
    .softmax_bf16 = sg_neon_softmax_bf16,
};

#endif /* __aarch64__ */
