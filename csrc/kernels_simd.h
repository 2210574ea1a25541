/* kernels_simd.h: the SIMD kernels, written once over a small vector vocabulary.
 *
 * Not a header in the usual sense: kernels_avx2.c and kernels_avx512.c each include it twice, once
 * for float and once for double, after defining the vocabulary below. The algorithm therefore
 * lives in one place and the ISA files contain only instructions.
 *
 * Vocabulary the includer defines:
 *   SG_TARGET              function attribute enabling the ISA (e.g. target("avx2,fma"))
 *   FN(name)               the name of this (ISA, dtype) instance of a kernel
 *   T V M W                element type, vector type, tail-mask type, lanes per vector
 *   VLOADU VSTOREU VSET1 VZERO VADD VSUB VMUL VFMADD(a, b, c) = a * b + c,
 *   VFNMADD(a, b, c) = c - a * b (each rounded once), VMAX
 *   VLOADV(p)              the VJP's unaligned load: the same lanes as VLOADU, possibly by
 *                          narrower loads (see kernels_avx512.c)
 *   MTAIL(r)               mask of the first r lanes (0 <= r < W)
 *   VMLOADZ(p, m)          masked load, 0 in the other lanes (never touches them in memory)
 *   VMLOAD_OR(p, m, fill)  masked load, `fill` in the other lanes
 *   VMSTORE(p, m, v)       masked store (the other lanes' memory is not written)
 *   VHSUM(v) VHMAX(v)      horizontal sum / maximum to a scalar (a fixed order of operations)
 *   VMIN                   elementwise minimum (like VMAX: the second operand when either is NaN)
 *   VROUND(v)              v rounded to the nearest integer, ties to even (|v| < 2^22 here)
 *   VLDEXP(p, k)           p * 2^k for integral k in the exp's range, rounded once, with gradual
 *                          underflow to 0 and overflow to inf
 *   ACC_T ACC_ZERO ACC_ADD(acc, v) ACC_HSUM(acc)   the forward pass's sum accumulator (double
 *                          precision for float rows), ACC_HSUM returns a double
 *   VPREFETCH(p)           prefetch the cache line holding p into L2
 *   VSTREAM(p, v)          non-temporal store to a vector-aligned p (no read-for-ownership)
 *   VSFENCE()              order the non-temporal stores before anything that follows
 *
 * The order of operations in a row depends only on n and on the row's address (the VJP peels a
 * masked head to reach vector alignment, so that no load in its loops straddles two cache lines;
 * bench/README.md, "Design measurements"; rows shorter than SG_SHORT_VECTORS vectors do not peel,
 * and their order depends on n only). It never depends on which thread runs the row, so
 * results are bitwise identical for any thread count. The forward pass does not peel: its cost is
 * the exp, and its result does not depend on the address either.
 */

/* ---- softmax VJP: dx = y * (dy - <y, dy>) ----------------------------------------------------- */

#ifndef SG_PREFETCH_BYTES
#define SG_PREFETCH_BYTES 4096
#endif

/* Two variants, with bitwise identical results (dispatch.c picks one by the size of the call):
 * vjp, for blocks that stay in cache, runs a row's two passes -- the dot product, then the
 * output -- one after the other; the second re-reads the row from L1/L2.
 * vjp_stream, for blocks streamed from memory, software-pipelines them across rows:
 * one loop writes row r's output, re-reading y_r and dy_r from cache, while it streams y_{r+1} and
 * dy_{r+1} from memory for row r+1's dot product. Memory then sees three continuous streams, as in
 * c = a + b, instead of bursts of reads (pass 1) and of writes (pass 2). Row r's dot product is
 * accumulated by exactly the same operations whether it is computed in row_dot (first row of a
 * block) or in row_scale_next_dot, so the result does not depend on where a thread block starts. */

/* narrow (a constant after inlining): 1 loads with VLOADV, 0 with VLOADU. The same lanes either
 * way, so the choice changes the speed only: vjp (rows in cache) loads narrow, vjp_stream
 * (rows from memory) does not (bench/README.md, "Design measurements"). */
#define SG_LOAD(narrow, p) ((narrow) ? VLOADV(p) : VLOADU(p))

/* Four accumulators hide the FMA latency; masked tail lanes load 0, and 0 * 0 adds nothing. */
#define SG_DOT_4(narrow, s0, s1, s2, s3, a, b, i)                                                  \
    do {                                                                                           \
        s0 = VFMADD(SG_LOAD(narrow, (a) + (i)), SG_LOAD(narrow, (b) + (i)), s0);                   \
        s1 = VFMADD(SG_LOAD(narrow, (a) + (i) + W), SG_LOAD(narrow, (b) + (i) + W), s1);           \
        s2 = VFMADD(SG_LOAD(narrow, (a) + (i) + 2 * W), SG_LOAD(narrow, (b) + (i) + 2 * W), s2);   \
        s3 = VFMADD(SG_LOAD(narrow, (a) + (i) + 3 * W), SG_LOAD(narrow, (b) + (i) + 3 * W), s3);   \
    } while (0)

/* out = y * (dy - d): subtract, then multiply (never fused), the NumPy formula's two operations,
 * so inf and NaN propagate the same way. */
#define SG_SCALE_1(narrow, o, a, b, d, i) SG_SCALE_ST(VSTOREU, narrow, o, a, b, d, i)
#define SG_SCALE_4(narrow, o, a, b, d, i) SG_SCALE_ST4(VSTOREU, narrow, o, a, b, d, i)
/* The same with non-temporal stores, for a vector-aligned o + i: the streaming VJP's output goes
 * to memory without first reading the line it overwrites (the read-for-ownership an ordinary
 * store pays), so memory moves 3 streams' worth instead of 4. Same values, so the same bits. */
#define SG_SCALE_NT_4(narrow, o, a, b, d, i) SG_SCALE_ST4(VSTREAM, narrow, o, a, b, d, i)
/* One vector, and four in a row, written by the store ST (VSTOREU or VSTREAM). */
#define SG_SCALE_ST(ST, narrow, o, a, b, d, i)                                                     \
    ST((o) + (i), VMUL(SG_LOAD(narrow, (a) + (i)), VSUB(SG_LOAD(narrow, (b) + (i)), d)))
#define SG_SCALE_ST4(ST, narrow, o, a, b, d, i)                                                    \
    do {                                                                                           \
        SG_SCALE_ST(ST, narrow, o, a, b, d, i);                                                    \
        SG_SCALE_ST(ST, narrow, o, a, b, d, (i) + W);                                              \
        SG_SCALE_ST(ST, narrow, o, a, b, d, (i) + 2 * W);                                          \
        SG_SCALE_ST(ST, narrow, o, a, b, d, (i) + 3 * W);                                          \
    } while (0)

/* Elements before the first vector-aligned address of p (at most n): handled by one masked
 * operation, so that the loops after it never load or store across a cache-line boundary. */
SG_TARGET static inline size_t FN(head)(const T *p, size_t n)
{
    const size_t h = (size_t)((0u - (uintptr_t)p) % (W * sizeof(T))) / sizeof(T);
    return h < n ? h : n;
}

/* The rest of <y, dy> from index i, into the accumulators s0..s3 that already hold elements
 * [0, i): chunks of four vectors, single vectors, a masked tail, then the sum of the four. Both
 * row_dot and row_scale_next_dot end here, so a row's dot product is the same operations
 * whichever of them computes it. */
SG_TARGET static inline T FN(dot_finish)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy,
                                         size_t i, size_t n, V s0, V s1, V s2, V s3, int narrow)
{
    for (; i + 4 * W <= n; i += 4 * W)
        SG_DOT_4(narrow, s0, s1, s2, s3, y, dy, i);
    for (; i + W <= n; i += W)
        s0 = VFMADD(SG_LOAD(narrow, y + i), SG_LOAD(narrow, dy + i), s0);
    if (i < n) {
        const M tail = MTAIL(n - i);
        s2 = VFMADD(VMLOADZ(y + i, tail), VMLOADZ(dy + i, tail), s2);
    }
    return VHSUM(VADD(VADD(s0, s1), VADD(s2, s3)));
}

/* <y, dy>: a masked head up to y's alignment, then dot_finish. The partial sums therefore
 * depend on n and on y's address modulo the vector size, never on the thread split: a row gives
 * the same bits whichever thread computes it. */
SG_TARGET static inline T FN(row_dot)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy, size_t n,
                                      int narrow)
{
    V s1 = VZERO;
    const size_t i = FN(head)(y, n);
    if (i) {
        const M head = MTAIL(i);
        s1 = VFMADD(VMLOADZ(y, head), VMLOADZ(dy, head), s1);
    }
    return FN(dot_finish)(y, dy, i, n, VZERO, s1, VZERO, VZERO, narrow);
}

/* out[i0:n] = y * (dy - d), from an index i0 where out is vector-aligned or from which the rest
 * is short. */
SG_TARGET static inline void FN(scale_from)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy,
                                            T *SG_RESTRICT out, size_t i, size_t n, V d,
                                            int narrow)
{
    for (; i + 4 * W <= n; i += 4 * W)
        SG_SCALE_4(narrow, out, y, dy, d, i);
    for (; i + W <= n; i += W)
        SG_SCALE_1(narrow, out, y, dy, d, i);
    if (i < n) {
        const M tail = MTAIL(n - i);
        VMSTORE(out + i, tail, VMUL(VMLOADZ(y + i, tail), VSUB(VMLOADZ(dy + i, tail), d)));
    }
}

/* out = y * (dy - dot) for one row, elementwise, so its order is free: a masked head brings out
 * to a vector boundary first. */
SG_TARGET static inline void FN(row_scale)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy,
                                           T *SG_RESTRICT out, size_t n, T dot, int narrow)
{
    const V d = VSET1(dot);
    const size_t h = FN(head)(out, n);
    if (h) {
        const M head = MTAIL(h);
        VMSTORE(out, head, VMUL(VMLOADZ(y, head), VSUB(VMLOADZ(dy, head), d)));
    }
    FN(scale_from)(y, dy, out, h, n, d, narrow);
}

/* row_scale(y, dy, out, dot) and row_dot(yn, dyn) in one loop; returns the latter, computed by
 * exactly row_dot's operations (same head, same chunks into the same accumulators, the same
 * dot_finish). The output
 * is elementwise, so its order is free: a masked head brings out to a vector boundary, then the
 * fused loop writes it with non-temporal stores (see SG_SCALE_NT_4). */
SG_TARGET static inline T FN(row_scale_next_dot)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy,
                                                 T *SG_RESTRICT out, const T *SG_RESTRICT yn,
                                                 const T *SG_RESTRICT dyn, size_t n, T dot,
                                                 int narrow)
{
    const V d = VSET1(dot);
    V s0 = VZERO, s1 = VZERO, s2 = VZERO, s3 = VZERO;
    size_t j = FN(head)(yn, n);  /* the next row's dot product */
    size_t i = FN(head)(out, n); /* this row's output */
    if (j) {
        const M head = MTAIL(j);
        s1 = VFMADD(VMLOADZ(yn, head), VMLOADZ(dyn, head), s1);
    }
    if (i) {
        const M head = MTAIL(i);
        VMSTORE(out, head, VMUL(VMLOADZ(y, head), VSUB(VMLOADZ(dy, head), d)));
    }
    for (; j + 4 * W <= n && i + 4 * W <= n; j += 4 * W, i += 4 * W) {
        /* Ahead of the hardware prefetcher: the next rows' lines into L2, SG_PREFETCH_BYTES on.
         * Prefetches never fault, so running past the end of the block is harmless. */
        for (int k = 0; k < 4 * W; k += 64 / (int)sizeof(T)) {
            VPREFETCH(yn + j + k + SG_PREFETCH_BYTES / sizeof(T));
            VPREFETCH(dyn + j + k + SG_PREFETCH_BYTES / sizeof(T));
        }
        SG_DOT_4(narrow, s0, s1, s2, s3, yn, dyn, j);
        SG_SCALE_NT_4(narrow, out, y, dy, d, i);
    }
    for (; i + 4 * W <= n; i += 4 * W)
        SG_SCALE_NT_4(narrow, out, y, dy, d, i);
    FN(scale_from)(y, dy, out, i, n, d, narrow);
    return FN(dot_finish)(yn, dyn, j, n, s0, s1, s2, s3, narrow);
}

/* A row shorter than SG_SHORT_VECTORS vectors: its fixed cost (the masked head and tail
 * operations of row_dot and row_scale, a masked store being slow on some CPUs) would outweigh its
 * work, so it takes a path with no masked store and no alignment peel. The dot product: full
 * vectors from the row's start into one accumulator, then a masked tail load. The output: full
 * vectors, then, when n is not a multiple of W, one full vector ending at the row's last element,
 * which rewrites the overlap with the very same values (out never overlaps y or dy); shorter than
 * one vector, the output is written element by element. The order of operations depends on n
 * only, not on the address, and the same call serves vjp and vjp_stream, so both variants and
 * every thread split give the same bits. */
#ifndef SG_SHORT_VECTORS
#define SG_SHORT_VECTORS 8
#endif

SG_TARGET static inline void FN(row_short)(const T *SG_RESTRICT y, const T *SG_RESTRICT dy,
                                           T *SG_RESTRICT out, size_t n)
{
    V s = VZERO;
    size_t i = 0;
    for (; i + W <= n; i += W)
        s = VFMADD(VLOADU(y + i), VLOADU(dy + i), s);
    if (i < n) {
        const M tail = MTAIL(n - i);
        s = VFMADD(VMLOADZ(y + i, tail), VMLOADZ(dy + i, tail), s);
    }
    const T dot = VHSUM(s);
    if (n < W) {
        for (size_t j = 0; j < n; ++j)
            out[j] = y[j] * (dy[j] - dot);
        return;
    }
    const V d = VSET1(dot);
    for (i = 0; i + W <= n; i += W)
        VSTOREU(out + i, VMUL(VLOADU(y + i), VSUB(VLOADU(dy + i), d)));
    if (i < n)
        VSTOREU(out + n - W, VMUL(VLOADU(y + n - W), VSUB(VLOADU(dy + n - W), d)));
}

/* Whether rows of n elements take row_short. */
#define SG_SHORT_ROW(n) ((n) < SG_SHORT_VECTORS * W)

/* Rows in cache: the two passes, one row after the other. */
SG_TARGET static void FN(vjp)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    const T *SG_RESTRICT y = a;
    const T *SG_RESTRICT dy = b;
    T *SG_RESTRICT out = o;
    if (SG_SHORT_ROW(n)) {
        for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n)
            FN(row_short)(y, dy, out, n);
        return;
    }
    for (size_t r = 0; r < rows; ++r, y += n, dy += n, out += n)
        FN(row_scale)(y, dy, out, n, FN(row_dot)(y, dy, n, 1), 1);
}

/* Rows streamed from memory: the two passes pipelined across rows (see the top of this section). */
SG_TARGET static void FN(vjp_stream)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    const T *SG_RESTRICT y = a;
    const T *SG_RESTRICT dy = b;
    T *SG_RESTRICT out = o;
    if (rows == 0)
        return;
    if (SG_SHORT_ROW(n)) { /* the cache variant's rows: its bits, and no pipelining to gain */
        FN(vjp)(a, b, o, rows, n);
        return;
    }
    T dot = FN(row_dot)(y, dy, n, 0);
    for (size_t r = 1; r < rows; ++r, y += n, dy += n, out += n)
        dot = FN(row_scale_next_dot)(y, dy, out, y + n, dy + n, n, dot, 0);
    FN(row_scale)(y, dy, out, n, dot, 0);
    VSFENCE(); /* the non-temporal stores are visible before the caller (or a join) goes on */
}

#undef SG_DOT_4
#undef SG_SHORT_ROW
#undef SG_SCALE_1
#undef SG_SCALE_4
#undef SG_SCALE_NT_4
#undef SG_SCALE_ST
#undef SG_SCALE_ST4

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

/* ---- forward softmax: three passes over a row that stays in cache ----------------------------- */

SG_TARGET static void FN(softmax)(const void *a, const void *b, void *o, size_t rows, size_t n)
{
    (void)b;
    const T *SG_RESTRICT x = a;
    T *SG_RESTRICT out = o;
    const M tail = MTAIL(n % W);
    const V minus_inf = VSET1(-(T)INFINITY);
    for (size_t r = 0; r < rows; ++r, x += n, out += n) {
        /* Pass 1: the row maximum. A NaN may or may not survive VMAX, but a NaN logit makes the
         * sum below NaN and with it the whole row, as in the NumPy formula, whatever m is. */
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
            m1 = VMAX(m1, VMLOAD_OR(x + i, tail, minus_inf));
        T m = VHMAX(VMAX(VMAX(m0, m1), VMAX(m2, m3)));
        if (!isfinite(m)) /* +inf, or -inf for an all -inf row: shift by 0 like the NumPy code */
            m = 0;
        const V nm = VSET1(-m);

        /* Pass 2: e = exp(x - m) into out, and its sum. */
        ACC_T acc = ACC_ZERO;
        for (i = 0; i + 4 * W <= n; i += 4 * W) {
            const V e0 = FN(exp)(VLOADU(x + i), nm);
            const V e1 = FN(exp)(VLOADU(x + i + W), nm);
            const V e2 = FN(exp)(VLOADU(x + i + 2 * W), nm);
            const V e3 = FN(exp)(VLOADU(x + i + 3 * W), nm);
            VSTOREU(out + i, e0);
            VSTOREU(out + i + W, e1);
            VSTOREU(out + i + 2 * W, e2);
            VSTOREU(out + i + 3 * W, e3);
            acc = ACC_ADD(acc, VADD(VADD(e0, e1), VADD(e2, e3)));
        }
        for (; i + W <= n; i += W) {
            const V e = FN(exp)(VLOADU(x + i), nm);
            VSTOREU(out + i, e);
            acc = ACC_ADD(acc, e);
        }
        if (i < n) { /* the -inf fill gives exp = 0 in the lanes past the row */
            const V e = FN(exp)(VMLOAD_OR(x + i, tail, minus_inf), nm);
            VMSTORE(out + i, tail, e);
            acc = ACC_ADD(acc, e);
        }

        /* Pass 3: scale by 1/sum. A +inf logit (the only way to an infinite sum) leaves the row
         * without a defined softmax, so it is NaN throughout, as in softmax_grad.softmax; an all
         * -inf row has sum = 0 and 0 * inf = NaN, exactly as 0 / 0. */
        const double sum = ACC_HSUM(acc);
        const V inv = VSET1((T)(isinf(sum) ? NAN : 1.0 / sum));
        for (i = 0; i + 4 * W <= n; i += 4 * W) {
            VSTOREU(out + i, VMUL(VLOADU(out + i), inv));
            VSTOREU(out + i + W, VMUL(VLOADU(out + i + W), inv));
            VSTOREU(out + i + 2 * W, VMUL(VLOADU(out + i + 2 * W), inv));
            VSTOREU(out + i + 3 * W, VMUL(VLOADU(out + i + 3 * W), inv));
        }
        for (; i + W <= n; i += W)
            VSTOREU(out + i, VMUL(VLOADU(out + i), inv));
        if (i < n)
            VMSTORE(out + i, tail, VMUL(VMLOADZ(out + i, tail), inv));
    }
}

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
#undef VMIN
#undef VFNMADD
#undef VROUND
#undef VLDEXP
#undef ACC_T
#undef ACC_ZERO
#undef ACC_ADD
#undef ACC_HSUM
