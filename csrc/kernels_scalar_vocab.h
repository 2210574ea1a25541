/* kernels_scalar_vocab.h: kernels_simd.h's vocabulary with vectors of one element, for
 * kernels_scalar.c, which includes it before each instance (kernels_simd.h undefines its
 * vocabulary at the end of every inclusion). T, V, FN and the exp's VFMADD, VFNMADD, VROUND and
 * VLDEXP are the instance's own; so are S, SU, STOT1 and TTOS1 of a half instance, defined
 * before this file: its loads and stores of S elements convert with STOT1 and TTOS1 (which
 * kernels_simd.h makes the identity otherwise). Internal. */
#define W 1
#define M int
#define VLOADU(p) STOT1(*(p))
#define VLOADV(p) STOT1(*(p))
#define VSTOREU(p, v) (*(p) = TTOS1(v))
#define VSTREAM(p, v) (*(p) = TTOS1(v))
#define VSET1(x) (x)
#define VZERO ((T)0)
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
/* maxps/minps semantics: the second operand when either is NaN (or both are zeros) */
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
#define VMIN(a, b) ((a) < (b) ? (a) : (b))
#define MTAIL(r) ((int)(r)) /* r < W = 1: always 0, no lane */
#define VMLOADZ(p, m) ((m) ? STOT1(*(p)) : (T)0)
#define VMLOAD_OR(p, m, fill) ((m) ? STOT1(*(p)) : (fill))
#define VMSTORE(p, m, v) ((m) ? (void)(*(p) = TTOS1(v)) : (void)0)
#ifdef S /* the forward pass's float buffer of half rows */
#define MT int
#define MTAILT(r) ((int)(r))
#define VLOADT(p) (*(p))
#define VSTORET(p, v) (*(p) = (v))
#define VMLOADZT(p, m) ((m) ? *(p) : (T)0)
#define VMSTORET(p, m, v) ((m) ? (void)(*(p) = (v)) : (void)0)
#endif
#define VHSUM(v) (v)
#define VHMAX(v) (v)
#define VANYGE(v, x) ((v) >= (x))
#define VKEEP(v) ((void)(v))
#define ACC_T double
#define ACC_V double
#define ACC_W 1
#define ACC_ZERO 0.0
#define ACC_ADD(a, b) ((a) + (b))
#define ACC_MUL(a, b) ((a) * (b))
#define ACC_SUB(a, b) ((a) - (b))
#define ACC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define ACC_HSUM(v) (v)
#define ACC_LOAD(p) ((double)*(p))
#define ACC_MLOADZ(p, r) ((r) ? (double)*(p) : 0.0)

