/* kernels_avx512_half.h: kernels_simd.h's vocabulary for float16 and bfloat16 rows on AVX-512F,
 * for kernels_avx512.c, which includes it before each of the two instances after defining FN,
 * SU, STOT1, TTOS1 and the conversions SG_HL (__m256i of 16 halves -> __m512) and SG_HS
 * (__m512 -> __m256i, rounded once, to nearest even). Computed in float, 16 elements per
 * vector; the compute vocabulary is the float instance's, kernels_avx512_ps.h. Internal. */
#define M size_t /* a tail is its length */
#define S uint16_t
#define VLOADU(p) SG_HL(_mm256_loadu_si256((const __m256i *)(p)))
#define VLOADV VLOADU
#define VSTOREU(p, v) _mm256_storeu_si256((__m256i *)(p), SG_HS(v))
#define VSTREAM(p, v) _mm256_stream_si256((__m256i *)(p), SG_HS(v))
#define MTAIL(r) ((size_t)(r))
#define VMLOADZ(p, m) SG_HL(sg_mload_u16x16(p, m))
#define VMLOAD_OR(p, m, fill) _mm512_mask_blend_ps(MTAILT(m), fill, VMLOADZ(p, m))
#define VMSTORE(p, m, v) sg_mstore_u16x16(p, m, SG_HS(v))
#define MT __mmask16
#define MTAILT(r) ((__mmask16)((1u << (r)) - 1u))
#define VLOADT(p) _mm512_loadu_ps(p)
#define VSTORET(p, v) _mm512_storeu_ps(p, v)
#define VMLOADZT(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMSTORET(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#include "kernels_avx512_ps.h"
