/* kernels_neon_half.h: kernels_simd.h's vocabulary for float16 and bfloat16 rows on NEON, for
 * kernels_neon.c, which includes it before each of the two instances after defining FN, SU,
 * STOT1, TTOS1 and the conversions SG_HL (uint16x4_t of 4 halves -> float32x4_t) and SG_HS
 * (float32x4_t -> uint16x4_t, rounded once, to nearest even). Computed in float, 4 elements per
 * vector; the compute vocabulary is the float instance's, kernels_neon_ps.h. Internal. */
#define M size_t /* a tail is its length */
#define S uint16_t
#define VLOADU(p) SG_HL(vld1_u16(p))
#define VLOADV VLOADU
#define VSTOREU(p, v) vst1_u16(p, SG_HS(v))
#define VSTREAM VSTOREU
#define MTAIL(r) ((size_t)(r))
#define VMLOADZ(p, m) SG_HL(sg_mload_u16x4(p, m))
#define VMLOAD_OR(p, m, fill) vbslq_f32(SG_FMASK(m), VMLOADZ(p, m), fill)
#define VMSTORE(p, m, v) sg_mstore_u16x4(p, m, SG_HS(v))
#define MT size_t
#define MTAILT(r) ((size_t)(r))
#define VLOADT(p) vld1q_f32(p)
#define VSTORET(p, v) vst1q_f32(p, v)
#define VMLOADZT(p, m) sg_mloadz_f32x4(p, m)
#define VMSTORET(p, m, v) sg_mstore_f32x4(p, m, v)
#include "kernels_neon_ps.h"
