/* dispatch.c: which ISA paths can run (read once), the argument checks, and the split of a call
 * into blocks for the worker pool (pool.c).
 *
 * Global state: the cached ISA mask, written once under pthread_once, and the pool's.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "kernels.h"
#include "pool.h"
#include "softmax_grad.h"

/* ---- CPU features ---------------------------------------------------------------------------- */

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

/* XCR0 says which register states the OS saves on a context switch. A CPU may support AVX-512
 * while the OS (or a hypervisor) leaves ZMM state off; then the instructions fault. */
static uint64_t sg_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int sg_detect(void)
{
    int mask = 1 << SG_ISA_SCALAR;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return mask;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const int f16c = (c >> 29) & 1; /* the AVX2 path's float16 conversions */
    if (!osxsave || !avx)
        return mask;
    const uint64_t xcr0 = sg_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX (YMM) state */
        return mask;
    if (__get_cpuid_max(0, NULL) < 7)
        return mask;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (avx2 && fma && f16c)
        mask |= 1 << SG_ISA_AVX2;
#ifdef SG_HAVE_AVX512
    /* opmask, upper ZMM0-15 and ZMM16-31 state (bits 5-7), on top of SSE and AVX */
    if (avx2 && fma && f16c && avx512f && (xcr0 & 0xe6) == 0xe6)
        mask |= 1 << SG_ISA_AVX512;
#else
    (void)avx512f; /* built without the AVX-512 path (SG_NO_AVX512) */
#endif
    return mask;
}
#elif defined(__aarch64__)
/* NEON (Advanced SIMD) is part of the AArch64 base architecture. */
static int sg_detect(void) { return 1 << SG_ISA_SCALAR | 1 << SG_ISA_NEON; }
#else
static int sg_detect(void) { return 1 << SG_ISA_SCALAR; }
#endif

static pthread_once_t sg_once = PTHREAD_ONCE_INIT;
static int sg_isa_mask;

static void sg_init(void) { sg_isa_mask = sg_detect(); }

int sg_available_isas(void)
{
    pthread_once(&sg_once, sg_init);
    return sg_isa_mask;
}

static const struct sg_kernels *sg_table(int isa)
{
    if (isa < 0 || isa > SG_ISA_NEON || !((sg_available_isas() >> isa) & 1))
        return NULL;
    switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case SG_ISA_AVX2:
        return &sg_kernels_avx2;
#ifdef SG_HAVE_AVX512
    case SG_ISA_AVX512:
        return &sg_kernels_avx512;
#endif
#endif
#if defined(__aarch64__)
    case SG_ISA_NEON:
        return &sg_kernels_neon;
#endif
    default:
        return &sg_kernels_scalar;
    }
}

/* ---- blocks of a call ------------------------------------------------------------------------ */

struct sg_block {
    sg_rows_fn fn;
    const char *a, *b;
    char *out;
    size_t rows, n;
};

/* Pool task k: block k (see pool.h). */
static void sg_run_block(void *ctx, size_t k)
{
    const struct sg_block *blk = (const struct sg_block *)ctx + k;
    if (blk->rows)
        blk->fn(blk->a, blk->b, blk->out, blk->rows, blk->n);
}

static size_t sg_thread_count(int threads, size_t units)
{
    size_t t = (size_t)threads;
    if (t > SG_MAX_THREADS)
        t = SG_MAX_THREADS;
    return t < units ? t : units;
}

/* Rows [rows*k/t, rows*(k+1)/t) are block k: contiguous, sizes differing by at most 1. out has
 * out_n elements per row: n, or 1 for a row reduction. */
static void sg_run_rows_to(sg_rows_fn fn, const void *a, const void *b, void *out, size_t rows,
                           size_t n, size_t elem, size_t out_n, int threads)
{
    const size_t t = sg_thread_count(threads, rows);
    struct sg_block blocks[SG_MAX_THREADS];
    for (size_t k = 0; k < t; ++k) {
        const size_t r0 = rows * k / t, r1 = rows * (k + 1) / t;
        const size_t offset = r0 * n * elem;
        blocks[k].fn = fn;
        blocks[k].a = (const char *)a + offset;
        blocks[k].b = b ? (const char *)b + offset : NULL;
        blocks[k].out = (char *)out + r0 * out_n * elem;
        blocks[k].rows = r1 - r0;
        blocks[k].n = n;
    }
    sg_pool_run(sg_run_block, blocks, t);
}

static void sg_run_rows(sg_rows_fn fn, const void *a, const void *b, void *out, size_t rows,
                        size_t n, size_t elem, int threads)
{
    sg_run_rows_to(fn, a, b, out, rows, n, elem, n, threads);
}

/* Elementwise work splits anywhere: the rows * n elements are cut into blocks that start on
 * 64-byte multiples of the element offset, so no two threads write the same cache line. Each
 * block is passed as one row of its length. */
static void sg_run_elements(sg_rows_fn fn, const void *a, const void *b, void *out, size_t rows,
                            size_t n, size_t elem, int threads)
{
    const size_t count = rows * n, line = 64 / elem;
    const size_t t = sg_thread_count(threads, (count + line - 1) / line);
    struct sg_block blocks[SG_MAX_THREADS];
    for (size_t k = 0; k < t; ++k) {
        const size_t c0 = k == 0 ? 0 : count * k / t / line * line;
        const size_t c1 = k + 1 == t ? count : count * (k + 1) / t / line * line;
        blocks[k].fn = fn;
        blocks[k].a = (const char *)a + c0 * elem;
        blocks[k].b = (const char *)b + c0 * elem;
        blocks[k].out = (char *)out + c0 * elem;
        blocks[k].rows = c1 > c0 ? 1 : 0;
        blocks[k].n = c1 - c0;
    }
    sg_pool_run(sg_run_block, blocks, t);
}

/* ---- argument checks ------------------------------------------------------------------------- */

/* Whether the byte ranges [p, p + pbytes) and [q, q + qbytes) share a byte. */
static int sg_overlap2(const void *p, size_t pbytes, const void *q, size_t qbytes)
{
    const uintptr_t x = (uintptr_t)p, y = (uintptr_t)q;
    return pbytes && qbytes && x < y + qbytes && y < x + pbytes;
}

static int sg_overlap(const void *p, const void *q, size_t bytes)
{
    return sg_overlap2(p, bytes, q, bytes);
}

/* The status of a call on `count` elements of `elem` bytes, with a second input b when `two`;
 * SG_OK means the kernels may run. An empty call is valid whatever the pointers. */
static int sg_check(const void *a, const void *b, int two, const void *out, size_t count,
                    size_t elem, int threads)
{
    if (threads < 1)
        return SG_BAD_THREADS;
    if (count == 0)
        return SG_OK;
    if (!a || !out || (two && !b))
        return SG_BAD_POINTER;
    if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)out) % elem)
        return SG_BAD_ALIGNMENT;
    const size_t bytes = count * elem;
    if (sg_overlap(out, a, bytes) || (b && sg_overlap(out, b, bytes)))
        return SG_OVERLAP;
    return SG_OK;
}

/* ---- entry points ---------------------------------------------------------------------------- */

/* Calls moving more bytes than this (3 * rows * n * element size) stream from memory rather than
 * from cache, and take the row-pipelined VJP; both variants give bitwise identical results, so
 * the threshold only affects speed (measured: bench/README.md, "Design measurements"). */
#define SG_STREAM_BYTES ((size_t)16 << 20)

/* Whether a call over `count` elements of `elem` bytes takes the streaming variant: the VJP and
 * the floor switch at the same size, so they compare like with like at every size. */
static int sg_streamed(size_t count, size_t elem) { return count > SG_STREAM_BYTES / 3 / elem; }

/* Two inputs: SPLIT (sg_run_rows or sg_run_elements) cuts the call into blocks; FIELD is the
 * kernel for blocks in cache, STREAM_FIELD the one above SG_STREAM_BYTES (the same field for a
 * kernel with one variant). */
#define SG_ENTRY_2(NAME, T, SPLIT, FIELD, STREAM_FIELD)                                            \
    int NAME(const T *a, const T *b, T *out, size_t rows, size_t n, int isa, int threads)          \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        const size_t count = rows * n;                                                             \
        const int status = sg_check(a, b, 1, out, count, sizeof(T), threads);                      \
        if (status == SG_OK && count)                                                              \
            SPLIT(sg_streamed(count, sizeof(T)) ? k->STREAM_FIELD : k->FIELD, a, b, out, rows, n,  \
                  sizeof(T), threads);                                                             \
        return status;                                                                             \
    }

SG_ENTRY_2(sg_softmax_vjp_f32, float, sg_run_rows, vjp_f32, vjp_stream_f32)
SG_ENTRY_2(sg_softmax_vjp_f64, double, sg_run_rows, vjp_f64, vjp_stream_f64)
SG_ENTRY_2(sg_jacobian_product_quadratic_f32, float, sg_run_rows, quadratic_f32, quadratic_f32)
SG_ENTRY_2(sg_jacobian_product_quadratic_f64, double, sg_run_rows, quadratic_f64, quadratic_f64)
SG_ENTRY_2(sg_stream_add_f32, float, sg_run_elements, add_f32, add_stream_f32)
SG_ENTRY_2(sg_stream_add_f64, double, sg_run_elements, add_f64, add_stream_f64)
SG_ENTRY_2(sg_softmax_vjp_f16, uint16_t, sg_run_rows, vjp_f16, vjp_stream_f16)
SG_ENTRY_2(sg_softmax_vjp_bf16, uint16_t, sg_run_rows, vjp_bf16, vjp_stream_bf16)
SG_ENTRY_2(sg_softmax_vjp_accurate_f32, float, sg_run_rows, vjp_accurate_f32, vjp_stream_accurate_f32)
SG_ENTRY_2(sg_softmax_vjp_accurate_f64, double, sg_run_rows, vjp_accurate_f64, vjp_stream_accurate_f64)
SG_ENTRY_2(sg_softmax_vjp_accurate_f16, uint16_t, sg_run_rows, vjp_accurate_f16,
           vjp_stream_accurate_f16)
SG_ENTRY_2(sg_softmax_vjp_accurate_bf16, uint16_t, sg_run_rows, vjp_accurate_bf16,
           vjp_stream_accurate_bf16)

#define SG_ENTRY_1(NAME, T, FIELD)                                                                 \
    int NAME(const T *x, T *out, size_t rows, size_t n, int isa, int threads)                      \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        const int status = sg_check(x, NULL, 0, out, rows * n, sizeof(T), threads);                \
        if (status == SG_OK && rows && n)                                                          \
            sg_run_rows(k->FIELD, x, NULL, out, rows, n, sizeof(T), threads);                      \
        return status;                                                                             \
    }

SG_ENTRY_1(sg_softmax_f32, float, softmax_f32)
SG_ENTRY_1(sg_softmax_f64, double, softmax_f64)
SG_ENTRY_1(sg_softmax_f16, uint16_t, softmax_f16)
SG_ENTRY_1(sg_softmax_bf16, uint16_t, softmax_bf16)

SG_ENTRY_1(sg_softmax_online_f32, float, softmax_online_f32)
SG_ENTRY_1(sg_softmax_online_f64, double, softmax_online_f64)
SG_ENTRY_1(sg_softmax_online_f16, uint16_t, softmax_online_f16)
SG_ENTRY_1(sg_softmax_online_bf16, uint16_t, softmax_online_bf16)

/* ---- row reductions and the fused loss ---------------------------------------------------------- */

/* out[r] for r < rows from rows of n elements of x (n = 0: the empty sum's log, -inf). */
#define SG_ENTRY_LSE(NAME, T, FIELD)                                                               \
    int NAME(const T *x, T *out, size_t rows, size_t n, int isa, int threads)                      \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        if (threads < 1)                                                                           \
            return SG_BAD_THREADS;                                                                 \
        if (!rows)                                                                                 \
            return SG_OK;                                                                          \
        if (!out || (n && !x))                                                                     \
            return SG_BAD_POINTER;                                                                 \
        if (((uintptr_t)x | (uintptr_t)out) % sizeof(T))                                           \
            return SG_BAD_ALIGNMENT;                                                               \
        if (sg_overlap2(out, rows * sizeof(T), x, rows * n * sizeof(T)))                           \
            return SG_OVERLAP;                                                                     \
        if (!n) {                                                                                  \
            for (size_t r = 0; r < rows; ++r)                                                      \
                out[r] = -(T)INFINITY;                                                             \
            return SG_OK;                                                                          \
        }                                                                                          \
        sg_run_rows_to(k->FIELD, x, NULL, out, rows, n, sizeof(T), 1, threads);                    \
        return SG_OK;                                                                              \
    }

SG_ENTRY_LSE(sg_logsumexp_f32, float, logsumexp_f32)
SG_ENTRY_LSE(sg_logsumexp_f64, double, logsumexp_f64)

struct sg_ce_block {
    sg_ce_fn fn;
    const char *x, *grad;
    const int64_t *labels;
    char *loss, *dx;
    size_t rows, n;
    int64_t ignore;
};

static void sg_run_ce_block(void *ctx, size_t k)
{
    const struct sg_ce_block *blk = (const struct sg_ce_block *)ctx + k;
    if (blk->rows)
        blk->fn(blk->x, blk->labels, blk->grad, blk->loss, blk->dx, blk->rows, blk->n,
                blk->ignore);
}

/* The status of a cross-entropy call (SG_OK: the kernels may run): the checks of sg_check, each
 * output against every input and the other output, and every label in [0, n) or ignored. */
static int sg_check_ce(const void *x, const int64_t *labels, const void *grad, const void *loss,
                       const void *dx, size_t rows, size_t n, int64_t ignore, size_t elem,
                       int threads)
{
    if (threads < 1)
        return SG_BAD_THREADS;
    if (!rows)
        return SG_OK;
    if (!labels || !loss || (n && (!x || !dx)))
        return SG_BAD_POINTER;
    if (((uintptr_t)x | (uintptr_t)grad | (uintptr_t)loss | (uintptr_t)dx) % elem ||
        (uintptr_t)labels % sizeof(int64_t))
        return SG_BAD_ALIGNMENT;
    const size_t xb = rows * n * elem, rb = rows * elem, lb = rows * sizeof(int64_t);
    const size_t gb = grad ? rb : 0;
    if (sg_overlap2(dx, xb, x, xb) || sg_overlap2(dx, xb, labels, lb) ||
        sg_overlap2(dx, xb, grad, gb) || sg_overlap2(loss, rb, x, xb) ||
        sg_overlap2(loss, rb, labels, lb) || sg_overlap2(loss, rb, grad, gb) ||
        sg_overlap2(loss, rb, dx, xb))
        return SG_OVERLAP;
    for (size_t r = 0; r < rows; ++r)
        if (labels[r] != ignore && (labels[r] < 0 || (uint64_t)labels[r] >= n))
            return SG_BAD_LABEL;
    return SG_OK;
}

#define SG_ENTRY_CE(NAME, T, FIELD)                                                                \
    int NAME(const T *x, const int64_t *labels, const T *grad, T *loss, T *dx, size_t rows,      \
             size_t n, int64_t ignore_index, int isa, int threads)                                 \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        const int status =                                                                         \
            sg_check_ce(x, labels, grad, loss, dx, rows, n, ignore_index, sizeof(T), threads);     \
        if (status != SG_OK || !rows)                                                              \
            return status;                                                                         \
        const size_t t = sg_thread_count(threads, rows);                                           \
        struct sg_ce_block blocks[SG_MAX_THREADS];                                                 \
        for (size_t b = 0; b < t; ++b) {                                                           \
            const size_t r0 = rows * b / t, r1 = rows * (b + 1) / t;                               \
            blocks[b] = (struct sg_ce_block){k->FIELD,                                             \
                                             (const char *)(x + r0 * n),                           \
                                             grad ? (const char *)(grad + r0) : NULL,             \
                                             labels + r0,                                          \
                                             (char *)(loss + r0),                                  \
                                             (char *)(dx + r0 * n),                                \
                                             r1 - r0,                                              \
                                             n,                                                    \
                                             ignore_index};                                        \
        }                                                                                          \
        sg_pool_run(sg_run_ce_block, blocks, t);                                                   \
        return SG_OK;                                                                              \
    }

SG_ENTRY_CE(sg_softmax_cross_entropy_f32, float, cross_entropy_f32)
SG_ENTRY_CE(sg_softmax_cross_entropy_f64, double, cross_entropy_f64)
