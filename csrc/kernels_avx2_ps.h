/* kernels_avx2_ps.h: kernels_simd.h's float compute vocabulary on AVX2 (8 floats per vector),
 * everything but the loads and stores of a row's storage elements: kernels_avx2.c includes it
 * in its float instance and, through kernels_avx2_half.h, in the float16 and bfloat16 instances,
 * which compute in float with the very same operations. SG_FMASK(r) (the first r lanes) is
 * kernels_avx2.c's. Internal. */
#define T float
#define V __m256
#define W 8
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
