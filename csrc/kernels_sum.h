/* kernels_sum.h: the one summation order of every reduction in a row, written once.
 *
 * Included by kernels_simd.h, once per accumulator type of each (ISA, element type) instance,
 * after it has defined the vocabulary below on top of the ISA's (T, V, W, VLOADU, ...).
 *
 * The order depends on n only -- never on the address, the ISA or the thread count:
 *   - SG_SUM_BYTES of accumulators make L = SG_SUM_BYTES / sizeof(RT) logical lanes (64 floats,
 *     32 doubles); element j of a block goes to lane j mod L, and each lane adds its elements in
 *     index order, starting from +0. An ISA holds the L lanes in L / RW vectors (AVX2 float: 8
 *     vectors of 8, AVX-512 float: 4 of 16, scalar: 64 of 1), enough independent additions to
 *     hide their latency on every path.
 *   - A block is K = SG_SUM_ROUNDS * L consecutive elements from the row's start (the last one
 *     may be shorter). Its lanes combine by a fixed halving tree, lane l += lane l + L/2, then
 *     l + L/4, ... (across accumulator vectors first, then inside the last one: RHSUM).
 *   - Block sums combine pairwise as a binary counter would carry: a new block sum is added to
 *     the stack's top while the number of blocks before it is odd; at the end the stack is added
 *     from its top (the most recent, smallest) down. So each term passes through at most
 *     SG_SUM_ROUNDS + log2(L) + ceil(log2(blocks)) additions (native.summation_depth).
 * A lane starts at +0 and, rounding to nearest, never becomes -0, so adding a lane that holds
 * nothing is an identity: rows shorter than L skip the empty accumulator vectors and still give
 * the bits of the full tree. Loads start at the row's first element (unaligned): no peel.
 *
 * Vocabulary (per inclusion):
 *   RFN(name)           the name of this instance's function
 *   RP                  the element type p and q point to (a row's storage type, or a buffer's)
 *   RT RV RW            accumulator scalar type, vector type, lanes per vector
 *   RZERO RADD RMUL RSUB RMAX   as VZERO ... for RV
 *   RHSUM(v)            the halving tree inside one vector: lane w += lane w + RW/2, ... -> RT
 *   RLOAD(narrow, p)    RW elements of T at p, as RV (widened when RT is wider than T)
 *   RMLOADZ(p, r)       the first r < RW elements at p, +0 in the other lanes
 *   RKEEP(v)            keeps v in a register (a compiler barrier; may be empty)
 * Term kinds (a constant after inlining): SG_TERM_SUM p_j, SG_TERM_DOT p_j * q_j (rounded, then
 * added: never fused, so the scalar path needs no fma and overflow is the product's, as in
 * NumPy), SG_TERM_SHIFTED p_j * (c - q_j).
 * A second sum, of p_j alone, can ride along in the same pass (sl, sc below: NULL when not
 * wanted, a constant after inlining): its own lanes and counter, in the very same order.
 */

/* The accumulator loops are unrolled so that the lanes live in registers; with vectors of one
 * element (the scalar path: 64 or 32 lanes) that would make one long function per kernel and a
 * compile of minutes, for a path whose speed is not the point. */
#if RW == 1
#define RUNROLL
#else
#define RUNROLL SG_UNROLL
#endif
#define RL (SG_SUM_BYTES / (int)sizeof(RT))
#define RA (RL / RW)
#define RK ((size_t)SG_SUM_ROUNDS * RL)

/* A row's sum in progress: the lanes, and the binary counter of the finished blocks. The lanes
 * are a separate array so that the compiler keeps them in registers (the counter's stack,
 * indexed at run time, lives in memory). */
typedef RV RFN(lanes)[RA];

typedef struct {
    RT stack[64]; /* 64 levels: more blocks than any size_t n has */
    unsigned top;
    size_t blocks;
} RFN(counter);

SG_TARGET SG_ALWAYS_INLINE static inline void RFN(init)(RV *SG_RESTRICT ln, RFN(counter) *ct)
{
    RUNROLL for (int a = 0; a < RA; ++a)
        ln[a] = RZERO;
    ct->top = 0;
    ct->blocks = 0;
}

/* The term vector of elements [k, k + RW) whose p-part x was loaded already. */
SG_TARGET SG_ALWAYS_INLINE static inline RV RFN(term)(RV x, const RP *SG_RESTRICT q, RV c, size_t k, int kind,
                                     int narrow)
{
    (void)narrow; /* when RLOAD ignores it */
    if (kind == SG_TERM_SUM)
        return x;
    if (kind == SG_TERM_DOT)
        return RMUL(x, RLOAD(narrow, q + k));
    return RMUL(x, RSUB(c, RLOAD(narrow, q + k)));
}

/* The same for the first r < RW elements from k, +0 in the other lanes (c - 0 is finite: c
 * always is). */
SG_TARGET SG_ALWAYS_INLINE static inline RV RFN(term_tail)(RV x, const RP *SG_RESTRICT q, RV c, size_t k, size_t r,
                                          int kind)
{
    if (kind == SG_TERM_SUM)
        return x;
    if (kind == SG_TERM_DOT)
        return RMUL(x, RMLOADZ(q + k, r));
    return RMUL(x, RSUB(c, RMLOADZ(q + k, r)));
}

/* L elements from i (a multiple of L) into the L lanes. With mx, also the lane-wise maximum of
 * p (exact and order-free), by a pairwise tree built as the vectors arrive, which keeps both its
 * dependency chain and the registers it holds short. */
SG_TARGET SG_ALWAYS_INLINE static inline void RFN(group)(RV *SG_RESTRICT ln, RV *SG_RESTRICT sl, const RP *SG_RESTRICT p,
                                        const RP *SG_RESTRICT q, RV c, size_t i, int kind,
                                        int narrow, RV *mx)
{
    RV level[8]; /* level[k]: the maximum of the last 2^k vectors not yet paired */
    int top = 0;
    RUNROLL for (int k = RA; k > 1; k >>= 1)
        ++top;
    RUNROLL for (int a = 0; a < RA; ++a) {
        const size_t k = i + (size_t)a * RW;
        RV x = RLOAD(narrow, p + k);
        if (mx)
            RKEEP(x); /* the maximum reuses this load instead of loading p again */
        ln[a] = RADD(ln[a], RFN(term)(x, q, c, k, kind, narrow));
        if (sl)
            sl[a] = RADD(sl[a], x);
        if (mx) {
            RV m = x;
            int l = 0;
            RUNROLL for (int b = a; b & 1; b >>= 1, ++l)
                m = RMAX(level[l], m); /* no side effect in a macro's argument */
            level[l] = m;
        }
    }
    if (mx)
        *mx = RMAX(level[top], *mx);
}

/* The last n - i < L elements from i (a multiple of L); lanes past n get nothing (and load +0,
 * which the maximum may see: it is only compared with 1/2). */
SG_TARGET SG_ALWAYS_INLINE static inline void RFN(partial)(RV *SG_RESTRICT ln, RV *SG_RESTRICT sl, const RP *SG_RESTRICT p,
                                          const RP *SG_RESTRICT q, RV c, size_t i, size_t n,
                                          int kind, int narrow, RV *mx)
{
    RUNROLL for (int a = 0; a < RA; ++a) {
        const size_t k = i + (size_t)a * RW;
        RV x;
        if (k + RW <= n) {
            x = RLOAD(narrow, p + k);
            ln[a] = RADD(ln[a], RFN(term)(x, q, c, k, kind, narrow));
        } else if (k < n) {
            x = RMLOADZ(p + k, n - k);
            ln[a] = RADD(ln[a], RFN(term_tail)(x, q, c, k, n - k, kind));
        } else {
            break;
        }
        if (sl)
            sl[a] = RADD(sl[a], x);
        if (mx)
            *mx = RMAX(x, *mx);
    }
}

/* The block's lanes by the halving tree (only the first `used` accumulators hold anything), its
 * sum into the binary counter, and the lanes back to +0. */
SG_TARGET SG_ALWAYS_INLINE static inline void RFN(flush)(RV *SG_RESTRICT ln, RFN(counter) *ct, int used)
{
    RUNROLL for (int h = RA / 2; h >= 1; h /= 2) {
        RUNROLL for (int a = 0; a < h; ++a)
            if (a + h < used)
                ln[a] = RADD(ln[a], ln[a + h]);
        if (used > h)
            used = h;
    }
    RT v = RHSUM(ln[0]);
    RUNROLL for (int a = 0; a < RA; ++a)
        ln[a] = RZERO;
    for (size_t b = ct->blocks++; b & 1; b >>= 1)
        v = ct->stack[--ct->top] + v;
    ct->stack[ct->top++] = v;
}

SG_TARGET SG_ALWAYS_INLINE static inline RT RFN(result)(RFN(counter) *ct)
{
    RT v = ct->stack[--ct->top];
    while (ct->top)
        v = ct->stack[--ct->top] + v;
    return v;
}

/* The rest of the row's sum from i (a multiple of L; the lanes hold the terms before i, of the
 * block i falls in), and with sl, sc the sum of p alike, into *psum. */
SG_TARGET SG_ALWAYS_INLINE static inline RT RFN(finish)(RV *SG_RESTRICT ln, RFN(counter) *ct, const RP *SG_RESTRICT p,
                                       const RP *SG_RESTRICT q, RV c, size_t i, size_t n,
                                       int kind, int narrow, RV *mx, RV *SG_RESTRICT sl,
                                       RFN(counter) *sc, RT *psum)
{
    for (; i + RL <= n;) {
        RFN(group)(ln, sl, p, q, c, i, kind, narrow, mx);
        i += RL;
        if (i % RK == 0) {
            RFN(flush)(ln, ct, RA);
            if (sl)
                RFN(flush)(sl, sc, RA);
        }
    }
    if (n % RK) {
        RFN(partial)(ln, sl, p, q, c, i, n, kind, narrow, mx);
        /* a row shorter than L fills only its first accumulator vectors */
        const int used = n < (size_t)RL ? (int)((n + RW - 1) / RW) : RA;
        RFN(flush)(ln, ct, used);
        if (sl)
            RFN(flush)(sl, sc, used);
    }
    if (sl)
        *psum = RFN(result)(sc);
    return RFN(result)(ct);
}

/* Whole blocks of a row's sum taken in pieces (the forward pass of half rows, whose terms pass
 * through a buffer): n elements of p, a multiple of the block K, into a sum in progress that
 * holds whole blocks only; the last piece goes to finish, from its own i = 0. The same
 * operations as one pass over the row. */
SG_TARGET SG_ALWAYS_INLINE static inline void RFN(feed)(RV *SG_RESTRICT ln, RFN(counter) *ct,
                                                       const RP *SG_RESTRICT p, size_t n)
{
    for (size_t i = 0; i < n;) {
        RFN(group)(ln, NULL, p, NULL, RZERO, i, SG_TERM_SUM, 0, NULL);
        i += RL;
        if (i % RK == 0)
            RFN(flush)(ln, ct, RA);
    }
}

/* A row shorter than L: one block, whose lanes each hold at most one element, so the sum is
 * flush's tree over the used accumulators -- finish's very operations, without its block loop,
 * its counter or lanes kept in memory (for short rows those cost more than the terms). */
SG_TARGET SG_ALWAYS_INLINE static inline RT RFN(sum_short)(const RP *SG_RESTRICT p, const RP *SG_RESTRICT q,
                                          RV c, size_t n, int kind, int narrow, RV *mx,
                                          RT *psum)
{
    RV ln[RA], sl[RA];
    RUNROLL for (int a = 0; a < RA; ++a) /* the tree reads only what the loads set, but */
        ln[a] = sl[a] = RZERO;             /* the compiler cannot tell */
    const int full = (int)(n / RW);
    const size_t r = n % RW;
    int used = full + (r != 0);
    RUNROLL for (int a = 0; a < RA; ++a) {
        if (a >= used)
            break;
        const size_t k = (size_t)a * RW;
        RV x;
        if (a < full) {
            x = RLOAD(narrow, p + k);
            ln[a] = RADD(RZERO, RFN(term)(x, q, c, k, kind, narrow));
        } else {
            x = RMLOADZ(p + k, r);
            ln[a] = RADD(RZERO, RFN(term_tail)(x, q, c, k, r, kind));
        }
        if (psum)
            sl[a] = RADD(RZERO, x);
        if (mx)
            *mx = RMAX(x, *mx);
    }
    RUNROLL for (int h = RA / 2; h >= 1; h /= 2) {
        RUNROLL for (int a = 0; a < h; ++a)
            if (a + h < used) {
                ln[a] = RADD(ln[a], ln[a + h]);
                if (psum)
                    sl[a] = RADD(sl[a], sl[a + h]);
            }
        if (used > h)
            used = h;
    }
    if (psum)
        *psum = RHSUM(sl[0]);
    return RHSUM(ln[0]);
}

/* The sum of a whole row of n >= 1 elements (with mx, also the maximum of p; with psum, also
 * the sum of p, in the same order). */
SG_TARGET SG_ALWAYS_INLINE static inline RT RFN(sum)(const RP *SG_RESTRICT p, const RP *SG_RESTRICT q, RV c,
                                    size_t n, int kind, int narrow, RV *mx, RT *psum)
{
    if (n < (size_t)RL)
        return RFN(sum_short)(p, q, c, n, kind, narrow, mx, psum);
    RFN(lanes) ln, sl;
    RFN(counter) ct, sc;
    RFN(init)(ln, &ct);
    if (psum)
        RFN(init)(sl, &sc);
    return RFN(finish)(ln, &ct, p, q, c, 0, n, kind, narrow, mx, psum ? sl : NULL, &sc, psum);
}

#undef RUNROLL
#undef RL
#undef RA
#undef RK
#undef RFN
#undef RP
#undef RT
#undef RV
#undef RW
#undef RZERO
#undef RADD
#undef RMUL
#undef RSUB
#undef RMAX
#undef RHSUM
#undef RLOAD
#undef RMLOADZ
#undef RKEEP
