/* kernels_simd.h: the kernels, written once over a small vector vocabulary.
 *
 * Not a header in the usual sense: kernels_avx2.c, kernels_avx512.c and kernels_scalar.c each
 * include it twice, once for float and once for double, after defining the vocabulary below.
 * The algorithm therefore lives in one place and the ISA files contain only instructions; the
 * scalar path is the same algorithm with vectors of one element (W = 1).
 *
 * Vocabulary the includer defines:
 *   SG_TARGET              function attribute enabling the ISA (e.g. target("avx2,fma"))
 *   FN(name)               the name of this (ISA, dtype) instance of a kernel
 *   T V M W                compute type, vector type, tail-mask type, lanes per vector
 *   VLOADU VSTOREU VSET1 VZERO VADD VSUB VMUL VFMADD(a, b, c) = a * b + c,
 *   VFNMADD(a, b, c) = c - a * b (each rounded once), VMAX(a, b) = a > b ? a : b lane-wise
 *   VLOADV(p)              the VJP's unaligned load: the same lanes as VLOADU, possibly by
 *                          narrower loads (see kernels_avx512.c)
 *   MTAIL(r)               mask of the first r lanes (0 <= r < W)
 *   VMLOADZ(p, m)          masked load, 0 in the other lanes (never touches them in memory)
 *   VMLOAD_OR(p, m, fill)  masked load, `fill` in the other lanes
 *   VMSTORE(p, m, v)       masked store (the other lanes' memory is not written)
 *   VHSUM(v)               the halving tree: lane w += lane w + W/2, then + W/4, ...; lane 0
 *   VHMAX(v)               horizontal maximum
 *   VANYGE(v, x)           whether some lane of v is >= the scalar x (a NaN lane is not)
 *   VKEEP(v)               a compiler barrier that keeps the variable v in a register, so that
 *                          a second use of a load does not load again (may be empty)
 *   VMIN                   elementwise minimum (like VMAX: the second operand when either is NaN)
 *   VROUND(v)              v rounded to the nearest integer, ties to even (|v| < 2^22 here)
 *   VLDEXP(p, k)           p * 2^k for integral k in the exp's range, rounded once, with gradual
 *                          underflow to 0 and overflow to inf
 *   ACC_T ACC_V ACC_W ACC_ZERO ACC_ADD ACC_MUL ACC_SUB ACC_MAX ACC_HSUM   the forward pass's
 *                          sum accumulator (double; for float rows ACC_W floats widened per
 *                          vector), with ACC_LOAD(p) and ACC_MLOADZ(p, r) (first r < ACC_W)
 *   VPREFETCH(p)           prefetch the cache line holding p into L2
 *   VSTREAM(p, v)          non-temporal store to a vector-aligned p (no read-for-ownership)
 *   VSFENCE()              order the non-temporal stores before anything that follows
 * Half-precision instances also define the storage type S of the rows, narrower than T (float16
 * or bfloat16 bits as uint16_t, computed in T = float). Then VLOADU, VLOADV, VMLOADZ, VMLOAD_OR,
 * VSTOREU, VSTREAM, VMSTORE and MTAIL are on S elements, converting in registers (stores round
 * once, to nearest even), and these name the rest:
 *   SU                     the unit roundoff of S (the probability-row test of the VJP)
 *   STOT1(s) TTOS1(x)      one element S -> T, T -> S, with the vector conversions' bits
 *   MT MTAILT VLOADT VSTORET VMLOADZT VMSTORET   tail mask and loads/stores of T elements (the
 *                          forward pass's float buffer)
 * Without S, S is T and these are the plain ones. Instances with S compile the rows' kernels
 * only (VJP and forward), with the very same operations on the T values: every sum in T in the
 * T instance's order, so a half row gives the T row's result, rounded once on store.
 *
 * Every sum in a row -- the VJP's dot product and shifted sum, the forward pass's sum of exp --
 * is kernels_sum.h's, whose order of operations depends on n only: not on the row's address,
 * not on the ISA, not on the thread that runs it. Every other operation is elementwise and the
 * same on every path (the exp included: its FMAs are fma() on the scalar path), so the results
 * are bitwise identical for any address, any thread count and every ISA path -- except the sign
 * and payload bits of a NaN the hardware generates, which differ between CPUs and paths (where a
 * NaN lands does not).
 */

#include <stdlib.h> /* the online kernels' row buffers */

#ifndef S /* storage is the compute type */
#define S T
#define SU (sizeof(T) == 4 ? 0x1p-24 : 0x1p-53)
#define STOT1(x) (x)
#define TTOS1(x) (x)
#define MT M
#define MTAILT MTAIL
#define VLOADT VLOADU
#define VSTORET VSTOREU
#define VMLOADZT VMLOADZ
#define VMSTORET VMSTORE
#define SG_WIDE 1
#else
#define SG_WIDE 0
#endif

/* ---- the row sums (kernels_sum.h) --------------------------------------------------------------- */

/* SG_SUM_BYTES (of accumulators: 64 float lanes, 32 double lanes) and SG_SUM_ROUNDS (terms per
 * lane and block) are softmax_grad.h's, which native.summation_depth reads too. */
#ifndef SG_TERM_SUM
#define SG_TERM_SUM 0
#define SG_TERM_DOT 1
#define SG_TERM_SHIFTED 2
#endif

/* narrow (a constant after inlining): 1 loads with VLOADV, 0 with VLOADU. The same lanes either
 * way, so the choice changes the speed only: vjp (rows in cache) loads narrow, vjp_stream
 * (rows from memory) does not (bench/README.md, "Design measurements"). */
#define SG_LOAD(narrow, p) ((narrow) ? VLOADV(p) : VLOADU(p))

/* Sums in T: the VJP's dot product <y, dy> and its shifted sum. FN(..._t) */
#define RFN(name) FN(name##_t)
#define RP S
#define RT T
#define RV V
#define RW W
#define RZERO VZERO
#define RADD VADD
#define RMUL VMUL
#define RSUB VSUB
#define RMAX VMAX
#define RHSUM VHSUM
#define RLOAD(narrow, p) SG_LOAD(narrow, p)
#define RMLOADZ(p, r) VMLOADZ(p, MTAIL(r))
#define RKEEP(v) VKEEP(v)
#include "kernels_sum.h"

/* Sums in ACC_T (double): the forward pass's sum of exp, over T elements (out, or the buffer of
 * half rows). FN(..._acc) */
#define RFN(name) FN(name##_acc)
#define RP T
#define RT ACC_T
#define RV ACC_V
#define RW ACC_W
#define RZERO ACC_ZERO
#define RADD ACC_ADD
#define RMUL ACC_MUL
#define RSUB ACC_SUB
#define RMAX ACC_MAX
#define RHSUM ACC_HSUM
#define RLOAD(narrow, p) ACC_LOAD(p)
#define RMLOADZ(p, r) ACC_MLOADZ(p, r)
#define RKEEP(v) ((void)(v))
#include "kernels_sum.h"

/* Logical lanes of a T sum (kernels_sum.h's L): one group of the streaming loop below. */
#define SG_LANES (SG_SUM_BYTES / (int)sizeof(T))

/* ---- softmax VJP ---------------------------------------------------------------------------------
 * The plain form, for every row of the vjp / vjp_stream kernels: dx = y * (dy - <y, dy>).
 * The accurate form, for confident rows of the vjp_accurate / vjp_stream_accurate kernels
 * (native.softmax_vjp(accurate=True)): in a row with y_c >= 1/2, c the first index of max y, the
 * formula cancels at c (dy_c - <y, dy> loses what y_c's rounding to 1 hides), so such a row is
 * computed as
 *     dx_i = y_i * ((dy_i - a) + t),   a = dy_c,   t = sum_j y_j * (a - dy_j),
 * which is the same for a probability row (sum_j y_j = 1) and accurate at c too (|t| is small
 * where dx_c is). Both forms are one elementwise pass out = y * ((dy - A) + tv): (A, tv) =
 * (a, t), or (<y, dy>, -0) for the plain form (x + -0 = x for every x, so those are the plain
 * formula's bits: two operations, subtract then multiply, never fused, as in NumPy; NaN and inf
 * propagate the same way). The accurate kernels' dot product pass also keeps max y, lane-wise;
 * a confident row then pays a search for c and one more sum. Rows that are no probability
 * vector, and rows with a NaN, an infinity or an overflow, keep the plain form (see row_coeffs
 * for the rule, the NumPy library's). Every sum is kernels_sum.h's, so the bits depend on n
 * only. */

#ifndef SG_PREFETCH_BYTES
#define SG_PREFETCH_BYTES 4096
#endif

/* Two variants, with bitwise identical results (dispatch.c picks one by the size of the call):
 * vjp, for blocks that stay in cache, runs a row's passes -- the dot product, then the
 * output -- one after the other; the second re-reads the row from L1/L2.
 * vjp_stream, for blocks streamed from memory, software-pipelines them across rows:
 * one loop writes row r's output, re-reading y_r and dy_r from cache, while it streams y_{r+1} and
 * dy_{r+1} from memory for row r+1's dot product. Memory then sees three continuous streams, as in
 * c = a + b, instead of bursts of reads (pass 1) and of writes (pass 2). Row r's dot product is
 * accumulated by exactly the same operations (kernels_sum.h's groups, blocks and counter) in
 * either variant, so the result does not depend on where a thread block starts. */

/* out = y * ((dy - A) + tv) from loaded y, dy; see the top of this section. shifted (a constant
 * after inlining) is 0 for plain rows, whose tv = -0 adds nothing: they skip the addition. */
#define SG_SCALE(shifted, yv, dyv, A, tv) VMUL(yv, (shifted) ? VADD(VSUB(dyv, A), tv) : VSUB(dyv, A))
#define SG_SCALE_V(shifted, narrow, a, b, A, tv, i)                                                \
    SG_SCALE(shifted, SG_LOAD(narrow, (a) + (i)), SG_LOAD(narrow, (b) + (i)), A, tv)
#define SG_SCALE_ST(ST, shifted, narrow, o, a, b, A, tv, i)                                        \
    ST((o) + (i), SG_SCALE_V(shifted, narrow, a, b, A, tv, i))
#define SG_SCALE_ST4(ST, shifted, narrow, o, a, b, A, tv, i)                                       \
    do {                                                                                           \
        SG_SCALE_ST(ST, shifted, narrow, o, a, b, A, tv, i);                                       \
        SG_SCALE_ST(ST, shifted, narrow, o, a, b, A, tv, (i) + W);                                 \
        SG_SCALE_ST(ST, shifted, narrow, o, a, b, A, tv, (i) + 2 * W);                             \
        SG_SCALE_ST(ST, shifted, narrow, o, a, b, A, tv, (i) + 3 * W);                             \
    } while (0)

/* Elements before the first vector-aligned address of p (at most n). Only elementwise passes
 * peel such a head (to align their stores): it changes no value. */
SG_TARGET static inline size_t FN(head)(const S *p, size_t n)
{
    const size_t h = (size_t)((0u - (uintptr_t)p) % (W * sizeof(S))) / sizeof(S);
    return h < n ? h : n;
}

/* out[i:n] = y * ((dy - A) + tv), from an index i where out is vector-aligned or from which the
 * rest is short. */
SG_TARGET static inline void FN(scale_from)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy,
                                            S *SG_RESTRICT out, size_t i, size_t n, V A, V tv,
                                            int shifted, int narrow)
{
    for (; i + 4 * W <= n; i += 4 * W)
        SG_SCALE_ST4(VSTOREU, shifted, narrow, out, y, dy, A, tv, i);
    for (; i + W <= n; i += W)
        SG_SCALE_ST(VSTOREU, shifted, narrow, out, y, dy, A, tv, i);
    if (i < n) {
        const M tail = MTAIL(n - i);
        VMSTORE(out + i, tail,
                SG_SCALE(shifted, VMLOADZ(y + i, tail), VMLOADZ(dy + i, tail), A, tv));
    }
}

/* A row shorter than SG_SHORT_VECTORS vectors: the fixed cost of a masked head and tail (a
 * masked store being slow on some CPUs) would outweigh its work, so its output has no masked
 * store and no alignment peel: full vectors, then, when n is not a multiple of W, one full vector
 * ending at the row's last element, which rewrites the overlap with the very same values (out
 * never overlaps y or dy); shorter than one vector, the output is written element by element. */
#ifndef SG_SHORT_VECTORS
#define SG_SHORT_VECTORS 8
#endif
#define SG_SHORT_ROW(n) ((n) < SG_SHORT_VECTORS * W)

SG_TARGET static inline void FN(scale_short)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy,
                                             S *SG_RESTRICT out, size_t n, T a, T t, int shifted)
{
    if (n < W) {
        for (size_t j = 0; j < n; ++j)
            out[j] = TTOS1(shifted ? STOT1(y[j]) * ((STOT1(dy[j]) - a) + t)
                                   : STOT1(y[j]) * (STOT1(dy[j]) - a));
        return;
    }
    const V A = VSET1(a), tv = VSET1(t);
    size_t i = 0;
    for (; i + W <= n; i += W)
        SG_SCALE_ST(VSTOREU, shifted, 0, out, y, dy, A, tv, i);
    if (i < n)
        SG_SCALE_ST(VSTOREU, shifted, 0, out, y, dy, A, tv, n - W);
}

/* out = y * ((dy - a) + t) for one row, elementwise, so its order is free: a masked head brings
 * out to a vector boundary first. */
SG_TARGET static inline void FN(row_scale_as)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy,
                                              S *SG_RESTRICT out, size_t n, T a, T t, int shifted,
                                              int narrow)
{
    if (SG_SHORT_ROW(n)) {
        FN(scale_short)(y, dy, out, n, a, t, shifted);
        return;
    }
    const V A = VSET1(a), tv = VSET1(t);
    const size_t h = FN(head)(out, n);
    if (h) {
        const M head = MTAIL(h);
        VMSTORE(out, head, SG_SCALE(shifted, VMLOADZ(y, head), VMLOADZ(dy, head), A, tv));
    }
    FN(scale_from)(y, dy, out, h, n, A, tv, shifted, narrow);
}

/* The same with shifted a constant in each branch. */
SG_TARGET static inline void FN(row_scale)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy,
                                           S *SG_RESTRICT out, size_t n, T a, T t, int shifted,
                                           int narrow)
{
    if (shifted)
        FN(row_scale_as)(y, dy, out, n, a, t, 1, narrow);
    else
        FN(row_scale_as)(y, dy, out, n, a, t, 0, narrow);
}

/* The first index of m in y (m is y's maximum, so it is there unless a NaN hid it from the
 * group maxima; then the scalar loop finds it, or returns n). Groups of L elements by a max
 * tree first, elementwise inside the group that holds m. */
SG_TARGET static inline size_t FN(find)(const S *SG_RESTRICT y, size_t n, T m)
{
    size_t i = 0;
    for (; i + SG_LANES <= n; i += SG_LANES) {
        V g = VLOADU(y + i);
        for (int k = 1; k < SG_LANES / W; ++k)
            g = VMAX(VLOADU(y + i + (size_t)k * W), g);
        if (VHMAX(g) == m)
            break;
    }
    for (; i < n; ++i)
        if (STOT1(y[i]) == m)
            return i;
    for (i = 0; i < n; ++i)
        if (STOT1(y[i]) == m)
            return i;
    return n;
}

/* Slack of the test that a row is a probability vector, |1 - sum_j y_j| <= (n + SG_SUM_SLACK) u:
 * a softmax output is within a few u of 1 (softmax_grad.vjp's _SUM_SLACK, the same rule). */
#ifndef SG_SUM_SLACK
#define SG_SUM_SLACK 16
#endif

/* The row's (a, t) from its dot product and its max (see the top of this section): the accurate
 * form iff (i) y_c >= 1/2 at the first argmax c, (ii) |1 - sum_j y_j| <= (n + 16) u (the row is
 * a probability vector, where the two forms agree; sum_j y_j is taken in the shifted sum's pass,
 * in the same order, so only confident rows pay for it), (iii) <y, dy> and (iv) t are finite.
 * A row with a NaN or an infinity in y or dy has a dot product that is NaN or infinite (every
 * product with such a factor is, and so is any sum with such a term), and so has a row whose dot
 * product overflowed: they keep the plain formula, so NaN and inf land where it puts them. */
SG_TARGET static int FN(row_confident)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy, size_t n,
                                       T m, T *a, T *t, int narrow)
{
    const size_t c = FN(find)(y, n, m);
    if (c < n) {
        const T ac = STOT1(dy[c]);
        T ysum;
        const T tc = FN(sum_t)(y, dy, VSET1(ac), n, SG_TERM_SHIFTED, narrow, NULL, &ysum);
        if (tc - tc == 0 && fabs(1.0 - (double)ysum) <= ((double)n + SG_SUM_SLACK) * SU) {
            *a = ac;
            *t = tc;
            return 1;
        }
    }
    return 0;
}

/* Inlined, so that a row that is not confident pays two comparisons: the rest (find, the
 * shifted sum) is a call. */
SG_TARGET SG_ALWAYS_INLINE static inline int FN(row_coeffs)(const S *SG_RESTRICT y,
                                                            const S *SG_RESTRICT dy, size_t n,
                                                            T dot, V mx, T *a, T *t, int narrow)
{
    /* *a, *t hold the plain form's (dot, -0) already: the callers set them, since with accurate
     * = 0 this is never called */
    if (dot - dot == 0 && VANYGE(mx, (T)0.5))
        return FN(row_confident)(y, dy, n, VHMAX(mx), a, t, narrow);
    return 0;
}

/* One row, passes one after the other. accurate (a constant after inlining): 0 takes the plain
 * form for every row and keeps no maximum. */
SG_TARGET SG_ALWAYS_INLINE static inline void FN(row)(const S *SG_RESTRICT y, const S *SG_RESTRICT dy,
                                                      S *SG_RESTRICT out, size_t n, int narrow,
                                                      int accurate)
{
    V mx = VZERO;
    const T dot = FN(sum_t)(y, dy, VZERO, n, SG_TERM_DOT, narrow, accurate ? &mx : NULL, NULL);
    T a = dot, t = -(T)0;
    const int shifted = accurate && FN(row_coeffs)(y, dy, n, dot, mx, &a, &t, narrow);
    FN(row_scale)(y, dy, out, n, a, t, shifted, narrow);
}

/* row_scale(y, dy, out, a, t, shifted) and the dot product (and, with mx, the max) of the next
 * row (yn, dyn) in one loop: the latter by exactly FN(sum_t)'s operations (the same groups, block
 * ends and counter). The output is elementwise, so its order is free: a masked head brings out to
 * a vector boundary, then the fused loop writes it with non-temporal stores (no
 * read-for-ownership: memory moves 3 streams' worth instead of 4; same values, so the same
 * bits). */
SG_TARGET SG_ALWAYS_INLINE static inline T FN(row_scale_next_dot)(
    const S *SG_RESTRICT y, const S *SG_RESTRICT dy, S *SG_RESTRICT out, const S *SG_RESTRICT yn,
    const S *SG_RESTRICT dyn, size_t n, T a, T t, int shifted, V *mx)
{
    const V A = VSET1(a), tv = VSET1(t);
    FN(lanes_t) ln;
    FN(counter_t) ct;
    FN(init_t)(ln, &ct);
    size_t j = 0;                /* the next row's dot product */
    size_t i = FN(head)(out, n); /* this row's output */
    if (i) {
        const M head = MTAIL(i);
        VMSTORE(out, head, SG_SCALE(shifted, VMLOADZ(y, head), VMLOADZ(dy, head), A, tv));
    }
    for (; j + SG_LANES <= n && i + SG_LANES <= n; j += SG_LANES, i += SG_LANES) {
        /* Ahead of the hardware prefetcher: the next rows' lines into L2, SG_PREFETCH_BYTES on.
         * Prefetches never fault, so running past the end of the block is harmless. */
        for (int k = 0; k < SG_LANES; k += 64 / (int)sizeof(S)) {
            VPREFETCH(yn + j + k + SG_PREFETCH_BYTES / sizeof(S));
            VPREFETCH(dyn + j + k + SG_PREFETCH_BYTES / sizeof(S));
        }
        FN(group_t)(ln, NULL, yn, dyn, VZERO, j, SG_TERM_DOT, 0, mx);
        if ((j + SG_LANES) % ((size_t)SG_SUM_ROUNDS * SG_LANES) == 0)
            FN(flush_t)(ln, &ct, SG_LANES / W);
        for (int k = 0; k < SG_LANES; k += 4 * W)
            SG_SCALE_ST4(VSTREAM, shifted, 0, out, y, dy, A, tv, i + (size_t)k);
    }
    for (; i + 4 * W <= n; i += 4 * W)
        SG_SCALE_ST4(VSTREAM, shifted, 0, out, y, dy, A, tv, i);
    FN(scale_from)(y, dy, out, i, n, A, tv, shifted, 0);
    return FN(finish_t)(ln, &ct, yn, dyn, VZERO, j, n, SG_TERM_DOT, 0, mx, NULL, NULL, NULL);
}

/* Rows in cache: the passes, one row after the other. */
SG_TARGET SG_ALWAYS_INLINE static inline void FN(vjp_rows)(const void *a, const void *b, void *o,
                                                           size_t rows, size_t n, int accurate)
{
    const S *SG_RESTRICT y = a;
    const S *SG_RESTRICT dy = b;
    S *SG_RESTRICT out = o;
    for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n)
        FN(row)(y, dy, out, n, 1, accurate);
}

/* Rows streamed from memory: the passes pipelined across rows (see the top of this section). */
SG_TARGET SG_ALWAYS_INLINE static inline void FN(vjp_stream_rows)(const void *a, const void *b,
                                                                  void *o, size_t rows, size_t n,
                                                                  int accurate)
{
    const S *SG_RESTRICT y = a;
    const S *SG_RESTRICT dy = b;
    S *SG_RESTRICT out = o;
    if (rows == 0)
        return;
    if (SG_SHORT_ROW(n)) { /* the cache variant's rows: its bits, and no pipelining to gain */
        FN(vjp_rows)(a, b, o, rows, n, accurate);
        return;
    }
    V mx = VZERO;
    V *const pmx = accurate ? &mx : NULL;
    T dot = FN(sum_t)(y, dy, VZERO, n, SG_TERM_DOT, 0, pmx, NULL);
    T ca = dot, ct = -(T)0;
    int shifted = accurate && FN(row_coeffs)(y, dy, n, dot, mx, &ca, &ct, 0);
    for (size_t r = 1; r < rows; ++r, y += n, dy += n, out += n) {
        mx = VZERO;
        if (shifted) /* a constant in each call: plain rows skip the addition */
            dot = FN(row_scale_next_dot)(y, dy, out, y + n, dy + n, n, ca, ct, 1, pmx);
        else
            dot = FN(row_scale_next_dot)(y, dy, out, y + n, dy + n, n, ca, ct, 0, pmx);
        ca = dot;
        ct = -(T)0;
        shifted = accurate && FN(row_coeffs)(y + n, dy + n, n, dot, mx, &ca, &ct, 0);
    }
    FN(row_scale)(y, dy, out, n, ca, ct, shifted, 0);
    VSFENCE(); /* the non-temporal stores are visible before the caller (or a join) goes on */
}

/* The four entry kernels: plain and accurate, in cache and streamed. */
SG_TARGET static void FN(vjp)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    FN(vjp_rows)(a, b, o, rows, n, 0);
}

SG_TARGET static void FN(vjp_accurate)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    FN(vjp_rows)(a, b, o, rows, n, 1);
}

SG_TARGET static void FN(vjp_stream)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    FN(vjp_stream_rows)(a, b, o, rows, n, 0);
}

SG_TARGET static void FN(vjp_stream_accurate)(const void *a, const void *b, void *o, size_t rows,
                                              size_t n)
{
    FN(vjp_stream_rows)(a, b, o, rows, n, 1);
}

#undef SG_SHORT_ROW
#undef SG_SCALE
#undef SG_SCALE_V
#undef SG_SCALE_ST
#undef SG_SCALE_ST4
#undef SG_LANES

/* ---- exp(x + nm), elementwise ------------------------------------------------------------------
 * s = x + nm is rounded; TwoSum gives its exact error err (|err| <= ulp(s)/2), folded into the
 * reduced argument, so exp sees x - m exactly: without it the relative error would reach
 * |x - m| * u near the underflow threshold (5e-6 in float32). Then k = round(s / ln2),
 * r = s - k ln2 (ln2 split in two, Cody-Waite), exp(r) by a polynomial, and VLDEXP multiplies by
 * 2^k with correct overflow to inf and gradual underflow. s is clamped first, to [-104, 89] in
 * float32 and [-746, 710] in float64: exp rounds to 0 below and overflows above, so the clamp
 * changes no result, and VMAX(lo, s) / VMIN(hi, .) return s when it is NaN, so NaN propagates.
 * err is clamped to +-2^-10 (it is at most 2^-18 where it matters), which also maps the NaN that
 * TwoSum produces for s = +-inf to a harmless finite value.
 * Polynomials: float32, the Cephes expf one (|rel. error| < 2e-7 on |r| <= ln2/2); float64, Taylor
 * of degree 12 (truncation error < 2e-16 there). sizeof(T) is a constant: one branch compiles. */
SG_TARGET static inline V FN(exp)(V x, V nm)
{
    const int single = sizeof(T) == 4;
    const V s = VADD(x, nm);
    const V bp = VSUB(s, x);
    const V ap = VSUB(s, bp);
    V err = VADD(VSUB(x, ap), VSUB(nm, bp));
    err = VMIN(VMAX(err, VSET1((T)-0x1p-10)), VSET1((T)0x1p-10));
    const V sc = VMIN(VSET1(single ? (T)89 : (T)710), VMAX(VSET1(single ? (T)-104 : (T)-746), s));
    const V k = VROUND(VMUL(sc, VSET1((T)1.4426950408889634)));
    /* ln2 = hi + lo, hi with enough trailing zeros that k * hi is exact */
    V r = VFNMADD(k, VSET1(single ? (T)0.693359375f : (T)0x1.62e42fefa39efp-1), sc);
    r = VFNMADD(k, VSET1(single ? (T)-2.12194440e-4f : (T)0x1.abc9e3b39803fp-56), r);
    r = VADD(r, err);
    V p;
    if (single) {
        p = VSET1((T)1.9875691500e-4f);
        p = VFMADD(p, r, VSET1((T)1.3981999507e-3f));
        p = VFMADD(p, r, VSET1((T)8.3334519073e-3f));
        p = VFMADD(p, r, VSET1((T)4.1665795894e-2f));
        p = VFMADD(p, r, VSET1((T)1.6666665459e-1f));
        p = VFMADD(p, r, VSET1((T)5.0000001201e-1f));
        p = VFMADD(p, VMUL(r, r), r);
        p = VADD(p, VSET1((T)1));
    } else {
        p = VSET1((T)(1.0 / 479001600.0));
        p = VFMADD(p, r, VSET1((T)(1.0 / 39916800.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 3628800.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 362880.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 40320.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 5040.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 720.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 120.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 24.0)));
        p = VFMADD(p, r, VSET1((T)(1.0 / 6.0)));
        p = VFMADD(p, r, VSET1((T)0.5));
        p = VFMADD(p, r, VSET1((T)1));
        p = VFMADD(p, r, VSET1((T)1));
    }
    return VLDEXP(p, k);
}

/* ---- forward softmax: four passes over a row that stays in cache ------------------------------
 * Pass 1 finds the row maximum m, pass 2 writes e = exp(x - m) to E, pass 3 sums E in double, in
 * kernels_sum.h's order, pass 4 writes out = e * (1/sum). E is out itself when S is T. A half
 * row's out cannot hold the float e, so E is a float buffer on the stack: rows up to
 * SG_EXP_CHUNK elements are computed exactly as a float row is, and rounded once in pass 4;
 * longer rows go through the buffer in pieces of whole blocks of the sum (the same operations
 * in the same order, kernels_sum.h's feed) and pass 4 computes each e again (the same bits).
 * Either way a half row's result is the float row's, rounded once. */
#ifndef SG_EXP_CHUNK
#define SG_EXP_CHUNK 4096 /* float elements (16 KiB): a multiple of the double sum's block */
#endif

/* The maximum of n elements (-inf for n = 0). A NaN may or may not survive VMAX, but a NaN logit
 * makes the row's sum NaN and with it the whole row, as in the NumPy formula, whatever the
 * maximum is. */
SG_TARGET static inline T FN(max_of)(const S *SG_RESTRICT x, size_t n)
{
    const V minus_inf = VSET1(-(T)INFINITY);
    V m0 = minus_inf, m1 = minus_inf, m2 = minus_inf, m3 = minus_inf;
    size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        m0 = VMAX(m0, VLOADU(x + i));
        m1 = VMAX(m1, VLOADU(x + i + W));
        m2 = VMAX(m2, VLOADU(x + i + 2 * W));
        m3 = VMAX(m3, VLOADU(x + i + 3 * W));
    }
    for (; i + W <= n; i += W)
        m0 = VMAX(m0, VLOADU(x + i));
    if (i < n)
        m1 = VMAX(m1, VMLOAD_OR(x + i, MTAIL(n - i), minus_inf));
    return VHMAX(VMAX(VMAX(m0, m1), VMAX(m2, m3)));
}

/* e = exp(x + nm) for n elements of x into e (T elements), elementwise. */
SG_TARGET static inline void FN(exp_into)(const S *SG_RESTRICT x, T *SG_RESTRICT e, size_t n,
                                          V nm)
{
    size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        VSTORET(e + i, FN(exp)(VLOADU(x + i), nm));
        VSTORET(e + i + W, FN(exp)(VLOADU(x + i + W), nm));
        VSTORET(e + i + 2 * W, FN(exp)(VLOADU(x + i + 2 * W), nm));
        VSTORET(e + i + 3 * W, FN(exp)(VLOADU(x + i + 3 * W), nm));
    }
    for (; i + W <= n; i += W)
        VSTORET(e + i, FN(exp)(VLOADU(x + i), nm));
    if (i < n) /* the -inf fill gives exp = 0 in the lanes past the row */
        VMSTORET(e + i, MTAILT(n - i),
                 FN(exp)(VMLOAD_OR(x + i, MTAIL(n - i), VSET1(-(T)INFINITY)), nm));
}

/* Pass 4 for n elements: out = e * inv, e read from e, or computed again from x when e is NULL
 * (out may be e itself: each element is read before it is written). */
#define SG_EXP_AT(e, x, nm, i) ((e) ? VLOADT((e) + (i)) : FN(exp)(VLOADU((x) + (i)), nm))
SG_TARGET static inline void FN(scale_into)(const T *e, const S *SG_RESTRICT x, S *out, size_t n,
                                            V nm, V inv)
{
    size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        VSTOREU(out + i, VMUL(SG_EXP_AT(e, x, nm, i), inv));
        VSTOREU(out + i + W, VMUL(SG_EXP_AT(e, x, nm, i + W), inv));
        VSTOREU(out + i + 2 * W, VMUL(SG_EXP_AT(e, x, nm, i + 2 * W), inv));
        VSTOREU(out + i + 3 * W, VMUL(SG_EXP_AT(e, x, nm, i + 3 * W), inv));
    }
    for (; i + W <= n; i += W)
        VSTOREU(out + i, VMUL(SG_EXP_AT(e, x, nm, i), inv));
    if (i < n) {
        const V v = e ? VMLOADZT(e + i, MTAILT(n - i))
                      : FN(exp)(VMLOAD_OR(x + i, MTAIL(n - i), VSET1(-(T)INFINITY)), nm);
        VMSTORE(out + i, MTAIL(n - i), VMUL(v, inv));
    }
}

SG_TARGET static void FN(softmax)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    (void)b;
    const S *SG_RESTRICT x = a;
    S *out = o;
    /* the buffer of half rows (one element, unused, when S is T) */
    __attribute__((aligned(64))) T buf[SG_WIDE ? 1 : SG_EXP_CHUNK];
    size_t piece = SG_WIDE ? n : SG_EXP_CHUNK;
    /* An empty asm that may change piece: with the constant, gcc 12 warned that the scalar
     * instance's exp loop would overflow i (-Waggressive-loop-optimizations; it cannot). */
    __asm__("" : "+r"(piece));
    for (size_t r = 0; r < rows; ++r, x += n, out += n) {
        /* Pass 1: the row maximum. */
        T m = FN(max_of)(x, n);
        if (!isfinite(m)) /* +inf, or -inf for an all -inf row: shift by 0 like the NumPy code */
            m = 0;
        const V nm = VSET1(-m);

        /* Passes 2 and 3: e = exp(x - m) into E, elementwise, and their sum, in double, in
         * kernels_sum.h's order (e is back from L1/L2); in pieces for long half rows. */
        T *const E = SG_WIDE ? (T *)out : buf;
        FN(lanes_acc) ln;
        FN(counter_acc) ct;
        FN(init_acc)(ln, &ct);
        size_t c0 = 0;
        for (; n - c0 > piece; c0 += piece) {
            FN(exp_into)(x + c0, E, piece, nm);
            FN(feed_acc)(ln, &ct, E, piece);
        }
        const size_t last = n - c0;
        FN(exp_into)(x + c0, E, last, nm);
        /* a row in one piece: sum_acc's operations, which for a short row skip the counter */
        const double sum =
            c0 ? FN(finish_acc)(ln, &ct, E, NULL, ACC_ZERO, 0, last, SG_TERM_SUM, 0, NULL, NULL,
                                NULL, NULL)
               : FN(sum_acc)(E, NULL, ACC_ZERO, last, SG_TERM_SUM, 0, NULL, NULL);

        /* Pass 4: scale by 1/sum. A +inf logit (the only way to an infinite sum) leaves the row
         * without a defined softmax, so it is NaN throughout, as in softmax_grad.softmax; an all
         * -inf row has sum = 0 and 0 * inf = NaN, exactly as 0 / 0. */
        const V inv = VSET1((T)(isinf(sum) ? NAN : 1.0 / sum));
        FN(scale_into)(c0 ? NULL : E, x, out, n, nm, inv);
    }
}


/* ---- the online forward pass: the row read once for its (m, Z), then y -------------------------
 * softmax_grad.online's state, merged block by block (Milakov and Gimelshein 2018): a block of
 * SG_EXP_CHUNK elements has its maximum taken, then e = exp(x - h_b), h_b the running maximum so
 * far (0 while that is not finite), written to a float buffer and summed in kernels_sum.h's order
 * while the block is in L1/L2; the running sum Z, relative to the previous shift, is first
 * rescaled by exp(h_old - h_b) (sg_exp1, in double) when the maximum grows. The output pass
 * writes y = e * (exp(h_b - h) / Z), h the final shift, from the buffer: one factor per block, so
 * each exp is taken once. Rows up to SG_ONLINE_ROW_MAX elements keep all their e (a row buffer of
 * n floats or doubles, allocated per call, in L2); longer rows (or a failed allocation) keep only
 * the last block's and compute y = exp(x - h) / Z again from x. A row of at most SG_EXP_CHUNK
 * elements is one block, whose h, e and sum are the four-pass kernel's: so are its bits.
 * Memory therefore sees x read once and y written once, with non-temporal stores for large blocks
 * of rows (no read-for-ownership of y). */
#ifndef SG_ONLINE_STREAM_BYTES
#define SG_ONLINE_STREAM_BYTES ((size_t)4 << 20) /* of y per thread's block */
#endif
#ifndef SG_ONLINE_ROW_MAX
#define SG_ONLINE_ROW_MAX ((size_t)1 << 18) /* elements; a multiple of SG_EXP_CHUNK */
#endif
#define SG_ONLINE_BLOCKS (SG_ONLINE_ROW_MAX / SG_EXP_CHUNK)

/* A row's buffers: e, whole (e holds every block's e, at its offset) or one block's, and each
 * block's shift when whole. */
struct FN(online_buf) {
    T *e;
    int whole;
    T shift[SG_ONLINE_BLOCKS];
};

/* The row's Z = sum_{j != skip} exp(x_j - h) in double and its shift *h (skip >= n: no element
 * is left out; the cross-entropy leaves out its true class, summed apart), with b's buffers
 * filled (a 0 at skip). */
SG_TARGET static inline double FN(online_state)(const S *SG_RESTRICT x, size_t n,
                                               struct FN(online_buf) *b, size_t skip, T *h)
{
    T mx = -(T)INFINITY, shift = 0;
    double z = 0;
    size_t piece = SG_EXP_CHUNK;
    __asm__("" : "+r"(piece)); /* see FN(softmax): no constant trip count for gcc to warn on */
    for (size_t c0 = 0, k = 0; c0 < n; c0 += piece, ++k) {
        const size_t len = n - c0 < piece ? n - c0 : piece;
        const T bm = FN(max_of)(x + c0, len);
        if (bm > mx) /* a NaN maximum keeps mx: the NaN makes z NaN below */
            mx = bm;
        const T next = isfinite(mx) ? mx : 0;
        if (next != shift && z != 0)
            z *= sg_exp1((double)shift, -(double)next); /* <= 1: the new shift is larger */
        shift = next;
        T *const e = b->whole ? b->e + c0 : b->e;
        FN(exp_into)(x + c0, e, len, VSET1(-shift));
        if (skip - c0 < len)
            e[skip - c0] = 0;
        z += FN(sum_acc)(e, NULL, ACC_ZERO, len, SG_TERM_SUM, 0, NULL, NULL);
        if (b->whole)
            b->shift[k] = shift;
    }
    *h = shift;
    return z;
}

/* out = e * inv as FN(scale_into), with non-temporal stores after a head that aligns out. */
SG_TARGET static inline void FN(scale_stream)(const T *e, const S *SG_RESTRICT x,
                                              S *SG_RESTRICT out, size_t n, V nm, V inv)
{
    const size_t h = FN(head)(out, n);
    FN(scale_into)(e, x, out, h, nm, inv);
    size_t i = h;
    for (; i + 4 * W <= n; i += 4 * W) {
        VSTREAM(out + i, VMUL(SG_EXP_AT(e, x, nm, i), inv));
        VSTREAM(out + i + W, VMUL(SG_EXP_AT(e, x, nm, i + W), inv));
        VSTREAM(out + i + 2 * W, VMUL(SG_EXP_AT(e, x, nm, i + 2 * W), inv));
        VSTREAM(out + i + 3 * W, VMUL(SG_EXP_AT(e, x, nm, i + 3 * W), inv));
    }
    FN(scale_into)(e ? e + i : NULL, x + i, out + i, n - i, nm, inv);
}

/* y = e * (exp(h_b - h) g / z) block by block from b's buffers (or exp(x - h) g / z when they do
 * not hold the row; g = 1 for the softmax), by the stores stream asks for. An infinite z (a +inf logit) gives NaN, and
 * z = 0 (a row of only -inf) 0 * inf = NaN, as FN(softmax). */
SG_TARGET static inline void FN(row_out)(const struct FN(online_buf) *b, const S *SG_RESTRICT x,
                                         S *SG_RESTRICT out, size_t n, T h, double g, double z,
                                         int stream)
{
    const V nm = VSET1(-h);
    const int undefined = isinf(z);
    size_t piece = b->whole ? SG_EXP_CHUNK : n;
    __asm__("" : "+r"(piece));
    for (size_t c0 = 0, k = 0; c0 < n; c0 += piece, ++k) {
        const size_t len = n - c0 < piece ? n - c0 : piece;
        const T *e = b->whole ? b->e + c0 : NULL;
        const double f = !b->whole || b->shift[k] == h ? 1.0 : sg_exp1((double)b->shift[k], -h);
        const V inv = VSET1((T)(undefined ? NAN : f * g / z));
        if (stream)
            FN(scale_stream)(e, x + c0, out + c0, len, nm, inv);
        else
            FN(scale_into)(e, x + c0, out + c0, len, nm, inv);
    }
}

/* b's buffers for rows of n elements: block, the caller's one-block buffer, or a row buffer. */
SG_TARGET static inline void FN(online_open)(struct FN(online_buf) *b, T *block, size_t n)
{
    b->e = block;
    b->whole = n <= SG_EXP_CHUNK;
    if (!b->whole && n <= SG_ONLINE_ROW_MAX) {
        T *const row = malloc(n * sizeof(T));
        if (row) {
            b->e = row;
            b->whole = 1;
        }
    }
}

SG_TARGET static inline void FN(online_close)(struct FN(online_buf) *b, const T *block)
{
    if (b->e != block)
        free(b->e);
}

SG_TARGET static void FN(softmax_online)(const void *a, const void *bv, void *o, size_t rows,
                                         size_t n)
{
    (void)bv;
    const S *SG_RESTRICT x = a;
    S *SG_RESTRICT out = o;
    __attribute__((aligned(64))) T block[SG_EXP_CHUNK];
    struct FN(online_buf) b;
    FN(online_open)(&b, block, n);
    const int stream = rows * n * sizeof(S) > SG_ONLINE_STREAM_BYTES;
    for (size_t r = 0; r < rows; ++r, x += n, out += n) {
        T h;
        const double z = FN(online_state)(x, n, &b, n, &h);
        FN(row_out)(&b, x, out, n, h, 1.0, z, stream);
    }
    if (stream)
        VSFENCE();
    FN(online_close)(&b, block);
}

#if SG_WIDE /* float32 and float64 rows only */

/* lse[r] = h + log Z: -inf for an all -inf row (Z = 0), +inf with a +inf logit, NaN with NaN. */
SG_TARGET static void FN(logsumexp)(const void *a, const void *bv, void *o, size_t rows, size_t n)
{
    (void)bv;
    const T *SG_RESTRICT x = a;
    T *SG_RESTRICT lse = o;
    __attribute__((aligned(64))) T block[SG_EXP_CHUNK];
    struct FN(online_buf) b = {block, 1, {0}}; /* the sum alone: one block's buffer, reused */
    b.whole = 0;
    for (size_t r = 0; r < rows; ++r, x += n) {
        T h;
        const double z = FN(online_state)(x, n, &b, n, &h);
        lse[r] = (T)((double)h + log(z));
    }
}

/* The fused softmax cross-entropy of rows with labels k (dispatch.c has checked that each is in
 * [0, n) or equals ignore): loss_r = lse_r - x_k and dx_r = g_r (y_r - e_k), g_r = grad[r] (1 when
 * grad is NULL). The true class's term is summed apart, Z = Z' + e_k with Z' = sum_{j != k}, so
 * that neither loses the other's digits: loss = log1p(Z' / e_k) while e_k is not tiny
 * (x_k - h >= -20; else (h - x_k) + log Z, a sum of non-negative terms) and dx_k = -g Z' / Z, both
 * accurate where y_k is close to 1. An ignored row gets loss 0 and dx 0. */
SG_TARGET static void FN(cross_entropy)(const void *a, const int64_t *labels, const void *g,
                                        void *lo, void *o, size_t rows, size_t n, int64_t ignore)
{
    const T *SG_RESTRICT x = a;
    const T *SG_RESTRICT grad = g;
    T *SG_RESTRICT loss = lo;
    T *SG_RESTRICT dx = o;
    __attribute__((aligned(64))) T block[SG_EXP_CHUNK];
    struct FN(online_buf) b;
    FN(online_open)(&b, block, n);
    const int stream = rows * n * sizeof(T) > SG_ONLINE_STREAM_BYTES;
    for (size_t r = 0; r < rows; ++r, x += n, dx += n) {
        if (labels[r] == ignore) {
            loss[r] = 0;
            size_t i = 0;
            for (; i + W <= n; i += W)
                VSTOREU(dx + i, VZERO);
            if (i < n)
                VMSTORE(dx + i, MTAIL(n - i), VZERO);
            continue;
        }
        const size_t k = (size_t)labels[r];
        const double gr = grad ? (double)grad[r] : 1.0;
        T h;
        const double zo = FN(online_state)(x, n, &b, k, &h);
        T ekv[W];
        VSTOREU(ekv, FN(exp)(VSET1(x[k]), VSET1(-h)));
        const double ek = ekv[0], z = zo + ek, d = (double)x[k] - (double)h;
        const int undefined = isinf(z); /* a +inf logit: no softmax, as FN(softmax) */
        loss[r] = (T)(undefined ? NAN : d >= -20 ? log1p(zo / ek) : -d + log(z));
        FN(row_out)(&b, x, dx, n, h, gr, z, stream);
        if (stream)
            VSFENCE(); /* the streamed row is written before dx_k is stored over it */
        dx[k] = (T)(undefined ? NAN : -gr * zo / z);
    }
    FN(online_close)(&b, block);
}

#endif /* SG_WIDE */
#undef SG_EXP_AT

#if !defined(SG_ROWS_ONLY) && SG_WIDE /* kernels_scalar.c keeps its own O(n^2) loop and floor;
                                          * half rows have neither */

/* ---- the source thread's O(n^2) algorithm (its AVX version), without its restrictions ---------- */

/* As posted: for each i, sum_j (y_j * -y_i) * dy_j with one accumulator, multiply, multiply, add
 * (no FMA); then out += y * dy. The only changes: any n (masked tail) and unaligned rows. */
SG_TARGET static void FN(quadratic)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    const T *SG_RESTRICT y = a;
    const T *SG_RESTRICT dy = b;
    T *SG_RESTRICT out = o;
    const M tail = MTAIL(n % W);
    for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n) {
        for (size_t i = 0; i < n; ++i) {
            V sum = VZERO;
            const V neg_y_i = VSET1(-y[i]);
            size_t j = 0;
            for (; j + W <= n; j += W)
                sum = VADD(sum, VMUL(VMUL(VLOADU(y + j), neg_y_i), VLOADU(dy + j)));
            if (j < n)
                sum = VADD(sum, VMUL(VMUL(VMLOADZ(y + j, tail), neg_y_i), VMLOADZ(dy + j, tail)));
            out[i] = VHSUM(sum);
        }
        size_t i = 0;
        for (; i + W <= n; i += W)
            VSTOREU(out + i, VADD(VLOADU(out + i), VMUL(VLOADU(y + i), VLOADU(dy + i))));
        if (i < n)
            VMSTORE(out + i, tail,
                    VADD(VMLOADZ(out + i, tail), VMUL(VMLOADZ(y + i, tail), VMLOADZ(dy + i, tail))));
    }
}

/* ---- bandwidth floor: out = a + b ------------------------------------------------------------- */

/* The floor must be the fastest c = a + b we can write, or the VJP's share of it flatters the VJP,
 * so it gets every memory technique the VJP uses: a masked head that brings out to a vector
 * boundary, narrow loads while the block is in cache (add), and for blocks streamed from memory
 * (add_stream, chosen by dispatch.c at the VJP's threshold) prefetching and non-temporal stores.
 * FN(head) and SG_LOAD are the VJP's. */
#define SG_ADD_1(ST, narrow, o, a, b, i)                                                          \
    ST((o) + (i), VADD(SG_LOAD(narrow, (a) + (i)), SG_LOAD(narrow, (b) + (i))))
#define SG_ADD_4(ST, narrow, o, a, b, i)                                                          \
    do {                                                                                           \
        SG_ADD_1(ST, narrow, o, a, b, i);                                                          \
        SG_ADD_1(ST, narrow, o, a, b, (i) + W);                                                    \
        SG_ADD_1(ST, narrow, o, a, b, (i) + 2 * W);                                                \
        SG_ADD_1(ST, narrow, o, a, b, (i) + 3 * W);                                                \
    } while (0)

/* One block of `count` elements; narrow and stream are constants after inlining. */
SG_TARGET static inline void FN(add_block)(const T *SG_RESTRICT a, const T *SG_RESTRICT b,
                                           T *SG_RESTRICT out, size_t count, int narrow,
                                           int stream)
{
    size_t i = FN(head)(out, count);
    if (i) {
        const M head = MTAIL(i);
        VMSTORE(out, head, VADD(VMLOADZ(a, head), VMLOADZ(b, head)));
    }
    if (stream) {
        for (; i + 4 * W <= count; i += 4 * W) {
            for (int k = 0; k < 4 * W; k += 64 / (int)sizeof(T)) {
                VPREFETCH(a + i + k + SG_PREFETCH_BYTES / sizeof(T));
                VPREFETCH(b + i + k + SG_PREFETCH_BYTES / sizeof(T));
            }
            SG_ADD_4(VSTREAM, narrow, out, a, b, i);
        }
    } else {
        for (; i + 4 * W <= count; i += 4 * W)
            SG_ADD_4(VSTOREU, narrow, out, a, b, i);
    }
    for (; i + W <= count; i += W)
        SG_ADD_1(VSTOREU, narrow, out, a, b, i);
    if (i < count) {
        const M tail = MTAIL(count - i);
        VMSTORE(out + i, tail, VADD(VMLOADZ(a + i, tail), VMLOADZ(b + i, tail)));
    }
    if (stream)
        VSFENCE();
}

SG_TARGET static void FN(add)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    FN(add_block)(a, b, o, rows * n, 1, 0);
}

SG_TARGET static void FN(add_stream)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    FN(add_block)(a, b, o, rows * n, 0, 1);
}

#undef SG_ADD_1
#undef SG_ADD_4
#endif /* SG_ROWS_ONLY, SG_WIDE */
#undef SG_LOAD

/* The vocabulary is per instance: the next inclusion defines it afresh. */
#undef FN
#undef T
#undef V
#undef M
#undef W
#undef VLOADU
#undef VLOADV
#undef VSTOREU
#undef VSTREAM
#undef VSET1
#undef VZERO
#undef VADD
#undef VSUB
#undef VMUL
#undef VFMADD
#undef VMAX
#undef MTAIL
#undef VMLOADZ
#undef VMLOAD_OR
#undef VMSTORE
#undef VHSUM
#undef VHMAX
#undef VANYGE
#undef VKEEP
#undef VMIN
#undef VFNMADD
#undef VROUND
#undef VLDEXP
#undef S
#undef SU
#undef STOT1
#undef TTOS1
#undef MT
#undef MTAILT
#undef VLOADT
#undef VSTORET
#undef VMLOADZT
#undef VMSTORET
#undef SG_WIDE
/* ACC_T ... ACC_HSUM (double vectors, the same for every instance) stay defined */
#undef ACC_LOAD
#undef ACC_MLOADZ
