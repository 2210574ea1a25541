/* dispatch.c: which ISA paths can run (read once), and the split of rows over POSIX threads.
 *
 * The only global state is the cached ISA mask, written once under pthread_once.
 */
#include <pthread.h>
#include <stdint.h>

#include "kernels.h"
#include "softmax_grad.h"

/* ---- CPU features ------------------------------------------------------------------------------ */

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
    if (!osxsave || !avx)
        return mask;
    const uint64_t xcr0 = sg_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX (YMM) state */
        return mask;
    if (__get_cpuid_max(0, NULL) < 7)
        return mask;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (avx2 && fma)
        mask |= 1 << SG_ISA_AVX2;
    /* opmask, upper ZMM0-15 and ZMM16-31 state (bits 5-7), on top of SSE and AVX */
    if (avx2 && fma && avx512f && (xcr0 & 0xe6) == 0xe6)
        mask |= 1 << SG_ISA_AVX512;
    return mask;
}
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
    if (isa < 0 || isa > SG_ISA_AVX512 || !((sg_available_isas() >> isa) & 1))
        return NULL;
    switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case SG_ISA_AVX2:
        return &sg_kernels_avx2;
    case SG_ISA_AVX512:
        return &sg_kernels_avx512;
#endif
    default:
        return &sg_kernels_scalar;
    }
}

/* ---- threads ----------------------------------------------------------------------------------- */

#define SG_MAX_THREADS 64

struct sg_block {
    sg_rows_fn fn;
    const char *a, *b;
    char *out;
    size_t rows, n;
};

static void *sg_run_block(void *p)
{
    const struct sg_block *blk = p;
    if (blk->rows)
        blk->fn(blk->a, blk->b, blk->out, blk->rows, blk->n);
    return NULL;
}

/* Run blocks[0] on the calling thread and the others on new threads. If a thread cannot be
 * created, its block runs on the calling thread instead: same rows, same code, same result. */
static void sg_run_blocks(struct sg_block *blocks, size_t count)
{
    pthread_t tid[SG_MAX_THREADS];
    int started[SG_MAX_THREADS];
    for (size_t k = 1; k < count; ++k)
        started[k] = pthread_create(&tid[k], NULL, sg_run_block, &blocks[k]) == 0;
    sg_run_block(&blocks[0]);
    for (size_t k = 1; k < count; ++k) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            sg_run_block(&blocks[k]);
    }
}

static size_t sg_thread_count(int threads, size_t units)
{
    size_t t = (size_t)threads;
    if (t > SG_MAX_THREADS)
        t = SG_MAX_THREADS;
    return t < units ? t : units;
}

/* Rows [rows*k/t, rows*(k+1)/t) go to thread k: contiguous blocks, sizes differing by at most 1. */
static int sg_run_rows(sg_rows_fn fn, const void *a, const void *b, void *out, size_t rows,
                       size_t n, size_t elem, int threads)
{
    if (threads < 1)
        return SG_BAD_THREADS;
    if (rows == 0 || n == 0)
        return SG_OK;
    if (!a || !out)
        return SG_BAD_POINTER;
    const size_t t = sg_thread_count(threads, rows);
    struct sg_block blocks[SG_MAX_THREADS];
    for (size_t k = 0; k < t; ++k) {
        const size_t r0 = rows * k / t, r1 = rows * (k + 1) / t;
        const size_t offset = r0 * n * elem;
        blocks[k].fn = fn;
        blocks[k].a = (const char *)a + offset;
        blocks[k].b = b ? (const char *)b + offset : NULL;
        blocks[k].out = (char *)out + offset;
        blocks[k].rows = r1 - r0;
        blocks[k].n = n;
    }
    sg_run_blocks(blocks, t);
    return SG_OK;
}

/* Elementwise work splits anywhere; blocks start on 64-byte multiples of the element offset so no
 * two threads write the same cache line. Each block is passed as one row of its length. */
static int sg_run_elements(sg_rows_fn fn, const void *a, const void *b, void *out, size_t count,
                           size_t elem, int threads)
{
    if (threads < 1)
        return SG_BAD_THREADS;
    if (count == 0)
        return SG_OK;
    if (!a || !b || !out)
        return SG_BAD_POINTER;
    const size_t line = 64 / elem;
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
    sg_run_blocks(blocks, t);
    return SG_OK;
}

/* ---- entry points ------------------------------------------------------------------------------ */

#define SG_ENTRY_2(NAME, T, FIELD)                                                                 \
    int NAME(const T *a, const T *b, T *out, size_t rows, size_t n, int isa, int threads)          \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        if (rows && n && !b)                                                                       \
            return SG_BAD_POINTER;                                                                 \
        return sg_run_rows(k->FIELD, a, b, out, rows, n, sizeof(T), threads);                      \
    }

/* Calls moving more bytes than this (3 * rows * n * element size) stream from memory rather than
 * from cache, and take the row-pipelined VJP. Measured on a Zen 4 with 32 MiB of L3: the cache
 * variant won at 1024x1024 float32 (12 MiB), the streaming one at 256x32000 float32 (96 MiB).
 * Both give bitwise identical results, so the threshold only affects speed. */
#define SG_STREAM_BYTES ((size_t)32 << 20)

/* Whether a call over `count` elements of `elem` bytes takes the streaming variant: the VJP and
 * the floor switch at the same size, so they compare like with like at every size. */
static int sg_streamed(size_t count, size_t elem) { return count > SG_STREAM_BYTES / 3 / elem; }

#define SG_ENTRY_VJP(NAME, T, FIELD, STREAM_FIELD)                                                 \
    int NAME(const T *a, const T *b, T *out, size_t rows, size_t n, int isa, int threads)          \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        if (rows && n && !b)                                                                       \
            return SG_BAD_POINTER;                                                                 \
        return sg_run_rows(sg_streamed(rows * n, sizeof(T)) ? k->STREAM_FIELD : k->FIELD, a, b,   \
                           out, rows, n, sizeof(T), threads);                                      \
    }

SG_ENTRY_VJP(sg_softmax_vjp_f32, float, vjp_f32, vjp_stream_f32)
SG_ENTRY_VJP(sg_softmax_vjp_f64, double, vjp_f64, vjp_stream_f64)
SG_ENTRY_2(sg_jacobian_product_quadratic_f32, float, quadratic_f32)
SG_ENTRY_2(sg_jacobian_product_quadratic_f64, double, quadratic_f64)

#define SG_ENTRY_1(NAME, T, FIELD)                                                                 \
    int NAME(const T *x, T *out, size_t rows, size_t n, int isa, int threads)                      \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        return sg_run_rows(k->FIELD, x, NULL, out, rows, n, sizeof(T), threads);                   \
    }

SG_ENTRY_1(sg_softmax_f32, float, softmax_f32)
SG_ENTRY_1(sg_softmax_f64, double, softmax_f64)

#define SG_ENTRY_ADD(NAME, T, FIELD, STREAM_FIELD)                                                 \
    int NAME(const T *a, const T *b, T *out, size_t count, int isa, int threads)                   \
    {                                                                                              \
        const struct sg_kernels *k = sg_table(isa);                                                \
        if (!k)                                                                                    \
            return SG_BAD_ISA;                                                                     \
        return sg_run_elements(sg_streamed(count, sizeof(T)) ? k->STREAM_FIELD : k->FIELD, a, b,  \
                               out, count, sizeof(T), threads);                                    \
    }

SG_ENTRY_ADD(sg_stream_add_f32, float, add_f32, add_stream_f32)
SG_ENTRY_ADD(sg_stream_add_f64, double, add_f64, add_stream_f64)
