/* kernels_half.h: float16 and bfloat16 <-> float conversions in portable C, one element at a time.
 *
 * The scalar path's loads and stores of half rows, and the SIMD paths' element-by-element ones
 * (short rows, the dominant entry): bit for bit what F16C's vcvtph2ps / vcvtps2ph (AVX2,
 * AVX-512F) and the SIMD bfloat16 shifts give, so every path stores the same bits.
 *   float16 -> float: exact; a NaN keeps its payload and gets the quiet bit, as vcvtph2ps.
 *   float -> float16: rounded to nearest, ties to even, overflow to inf, gradual underflow; a
 *     NaN keeps its payload's top bits and gets the quiet bit, as vcvtps2ph.
 *   bfloat16 -> float: the 16 bits become the top of the float (exact).
 *   float -> bfloat16: rounded to nearest, ties to even (the bias trick: add 0x7fff plus the
 *     result's lowest bit, keep the top 16 bits), overflow to inf; a NaN keeps its top bits and
 *     gets the quiet bit (the bias would otherwise carry into the sign).
 * Internal: included by the kernel files.
 */
#ifndef SG_KERNELS_HALF_H
#define SG_KERNELS_HALF_H

#include <stdint.h>
#include <string.h>

static inline float sg_bits_f32(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline uint32_t sg_f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static inline float sg_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) /* inf, or NaN made quiet */
        return sg_bits_f32(sign | 0x7f800000u | (m ? 0x400000u : 0) | (m << 13));
    if (e == 0) /* zero or subnormal: m * 2^-24, exact in float */
        return sg_bits_f32(sign | sg_f32_bits((float)m * 0x1p-24f));
    return sg_bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

static inline uint16_t sg_f32_to_f16(float f)
{
    const uint32_t b = sg_f32_bits(f), sign = (b >> 16) & 0x8000u, a = b & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x47800000u) /* >= 2^16 or inf: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero. Adding 0.5 puts the bits of
                            * 2^-24 at the float's last place, rounded to nearest even by the
                            * addition itself; what is left above 0.5 is the result. */
        const float s = sg_bits_f32(a) + 0.5f;
        return (uint16_t)(sign | (sg_f32_bits(s) - 0x3f000000u));
    }
    /* normal: rebias the exponent, round at bit 13 (a carry may reach the exponent, and past
     * 65504 it reaches inf) */
    const uint32_t r = a + 0xc8000fffu + ((a >> 13) & 1u); /* 0xc8000000 = (15 - 127) << 23 */
    return (uint16_t)(sign | (r >> 13));
}

static inline float sg_bf16_to_f32(uint16_t h) { return sg_bits_f32((uint32_t)h << 16); }

static inline uint16_t sg_f32_to_bf16(float f)
{
    const uint32_t b = sg_f32_bits(f);
    if ((b & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

#endif /* SG_KERNELS_HALF_H */
