/* kernels_avx512_ps.h: kernels_simd.h's float compute vocabulary on AVX-512F (16 floats per
 * vector), everything but the loads and stores of a row's storage elements: kernels_avx512.c
 * includes it in its float instance and, through kernels_avx512_half.h, in the float16 and
 * bfloat16 instances, which compute in float with the very same operations. Internal. */
#define T float
#define V __m512
#define W 16
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
