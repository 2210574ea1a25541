/* kernels_avx512_half.h: kernels_simd.h's vocabulary for float16 and bfloat16 rows on AVX-512F,
 * for kernels_avx512.c, which includes it before each of the two instances after defining FN,
 * SU, STOT1, TTOS1 and the conversions SG_HL (__m256i of 16 halves -> __m512) and SG_HS
 * (__m512 -> __m256i, rounded once, to nearest even). Computed in float, 16 elements per
 * vector; what is not a load or a store is the float instance's. Internal. */
#define T float
#define V __m512
#define M size_t /* a tail is its length */
#define W 16
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
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO _mm512_setzero_ps()
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLDEXP _mm512_scalef_ps
#define VHSUM(v) sg_hsum_f32x16(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) _mm512_reduce_max_ps(v)
#define VANYGE(v, x) (_mm512_cmp_ps_mask(v, VSET1(x), _CMP_GE_OQ) != 0)
#define ACC_LOAD(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define ACC_MLOADZ(p, r) sg_mloadz_f32x8_pd(p, r)
