/* kernels_avx2_half.h: kernels_simd.h's vocabulary for float16 and bfloat16 rows on AVX2, for
 * kernels_avx2.c, which includes it before each of the two instances after defining FN, SU,
 * STOT1, TTOS1 and the conversions SG_HL (__m128i of 8 halves -> __m256) and SG_HS (__m256 ->
 * __m128i, rounded once, to nearest even). Computed in float, 8 elements per vector; the
 * compute vocabulary is the float instance's, kernels_avx2_ps.h. Internal. */
#define M size_t /* a tail is its length */
#define S uint16_t
#define VLOADU(p) SG_HL(_mm_loadu_si128((const __m128i *)(p)))
#define VLOADV VLOADU
#define VSTOREU(p, v) _mm_storeu_si128((__m128i *)(p), SG_HS(v))
#define VSTREAM(p, v) _mm_stream_si128((__m128i *)(p), SG_HS(v))
#define MTAIL(r) ((size_t)(r))
#define VMLOADZ(p, m) SG_HL(sg_mload_u16x8(p, m))
#define VMLOAD_OR(p, m, fill) _mm256_blendv_ps(fill, VMLOADZ(p, m), _mm256_castsi256_ps(SG_FMASK(m)))
#define VMSTORE(p, m, v) sg_mstore_u16x8(p, m, SG_HS(v))
#define MT __m256i
#define MTAILT(r) SG_FMASK(r)
#define VLOADT(p) _mm256_loadu_ps(p)
#define VSTORET(p, v) _mm256_storeu_ps(p, v)
#define VMLOADZT(p, m) _mm256_maskload_ps(p, m)
#define VMSTORET(p, m, v) _mm256_maskstore_ps(p, m, v)
#include "kernels_avx2_ps.h"
