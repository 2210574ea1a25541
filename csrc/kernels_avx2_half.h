/* kernels_avx2_half.h: kernels_simd.h's vocabulary for float16 and bfloat16 rows on AVX2, for
 * kernels_avx2.c, which includes it before each of the two instances after defining FN, SU,
 * STOT1, TTOS1 and the conversions SG_HL (__m128i of 8 halves -> __m256) and SG_HS (__m256 ->
 * __m128i, rounded once, to nearest even). Computed in float, 8 elements per vector; what is
 * not a load or a store is the float instance's. Internal. */
#define T float
#define V __m256
#define M size_t /* a tail is its length */
#define W 8
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
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO _mm256_setzero_ps()
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VLDEXP sg_ldexp_f32x8
#define VHSUM(v) sg_hsum_f32x8(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) sg_hmax_f32x8(v)
#define VANYGE(v, x) (_mm256_movemask_ps(_mm256_cmp_ps(v, VSET1(x), _CMP_GE_OQ)) != 0)
#define ACC_LOAD(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#define ACC_MLOADZ(p, r) sg_mloadz_f32x4_pd(p, r)
