/* kernels_neon_ps.h: kernels_simd.h's float compute vocabulary on NEON (4 floats per vector),
 * everything but the loads and stores of a row's storage elements: kernels_neon.c includes it in
 * its float instance and, through kernels_neon_half.h, in the float16 and bfloat16 instances,
 * which compute in float with the very same operations. Internal. */
#define T float
#define V float32x4_t
#define W 4
#define VSET1(x) vdupq_n_f32(x)
#define VZERO vdupq_n_f32(0.0f)
#define VADD vaddq_f32
#define VSUB vsubq_f32
#define VMUL vmulq_f32
#define VFMADD(a, b, c) vfmaq_f32(c, a, b) /* fused, rounded once, as VFMADD231PS */
#define VFNMADD(a, b, c) vfmsq_f32(c, a, b)
#define VMAX sg_max_f32x4
#define VMIN sg_min_f32x4
#define VROUND(v) vrndnq_f32(v)
#define VLDEXP sg_ldexp_f32x4
#define VHSUM(v) sg_hsum_f32x4(v)
#define VKEEP(v) SG_KEEP(v)
#define VHMAX(v) sg_hmax_f32x4(v)
#define VANYGE(v, x) (vmaxvq_u32(vcgeq_f32(v, vdupq_n_f32(x))) != 0)
#define ACC_LOAD(p) vcvt_f64_f32(vld1_f32(p))
#define ACC_MLOADZ(p, r) sg_mloadz_f32x2_pd(p, r)
