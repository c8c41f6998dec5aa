/* Aligned allocation through a replaceable allocator; a counting wrapper for tests. */
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Every block carries a header before the aligned pointer: the raw pointer (to free)
 * and the size (for counting). 64 bytes keeps the user pointer 64-byte aligned. */
enum { HDR = 64 };

/* Blocks of at least HUGE bytes start on a 2 MiB boundary and are advised as huge pages
 * (MADV_HUGEPAGE; Debian's kernels enable transparent huge pages on advice): the engine
 * reads weights and pending pairs at random columns, and with 4 KiB pages nearly every
 * such read of a large model also missed the TLB. */
enum { HUGE = 2 << 20 };

struct hdr {
    void *raw;
    size_t size;
};

static void *
sys_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void
sys_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static const struct mem default_mem = {sys_alloc, sys_free, NULL};

const struct mem *
mem_default(void)
{
    return &default_mem;
}

void *
mem_alloc(const struct mem *m, size_t size_bytes)
{
    size_t align = size_bytes >= HUGE ? HUGE : HDR;
    if (size_bytes > SIZE_MAX - HDR - align)
        return NULL;
    void *raw = m->alloc(m->ctx, size_bytes + HDR + align);
    if (!raw)
        return NULL;
    uintptr_t u = ((uintptr_t)raw + HDR + (align - 1)) & ~(uintptr_t)(align - 1);
    struct hdr *h = (struct hdr *)(u - sizeof(struct hdr));
    h->raw = raw;
    h->size = size_bytes;
    if (align == HUGE) /* advice only: without it (or huge pages) the block still works */
        madvise((void *)u, size_bytes, MADV_HUGEPAGE);
    return (void *)u;
}

void *
mem_calloc(const struct mem *m, size_t n, size_t size_bytes)
{
    if (size_bytes && n > SIZE_MAX / size_bytes)
        return NULL;
    void *p = mem_alloc(m, n * size_bytes);
    if (p)
        memset(p, 0, n * size_bytes);
    return p;
}

void
mem_free(const struct mem *m, void *pp)
{
    void **p = pp;
    if (!*p)
        return;
    struct hdr *h = (struct hdr *)((char *)*p - sizeof(struct hdr));
    m->free(m->ctx, h->raw);
    *p = NULL;
}

char *
mem_strdup(const struct mem *m, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = mem_alloc(m, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* The counter sees the raw size including the header; it records the user's size by
 * reading the header back, so live_bytes counts what callers asked for. */
static void *
counter_alloc(void *ctx, size_t size)
{
    struct mem_counter *c = ctx;
    long idx = c->n_calls++;
    if (c->fail_at >= 0 && idx == c->fail_at)
        return NULL;
    size_t *p = c->inner->alloc(c->inner->ctx, size + 64);
    if (!p)
        return NULL;
    p[0] = size;
    c->n_allocs++;
    c->live_bytes += size;
    if (c->live_bytes > c->peak_bytes)
        c->peak_bytes = c->live_bytes;
    return (char *)p + 64;
}

static void
counter_free(void *ctx, void *ptr)
{
    struct mem_counter *c = ctx;
    if (!ptr)
        return;
    size_t *p = (size_t *)((char *)ptr - 64);
    c->live_bytes -= p[0];
    c->n_frees++;
    c->inner->free(c->inner->ctx, p);
}

void
mem_counter_init(struct mem_counter *c, const struct mem *inner)
{
    memset(c, 0, sizeof *c);
    c->inner = inner ? inner : mem_default();
    c->fail_at = -1;
    c->mem.alloc = counter_alloc;
    c->mem.free = counter_free;
    c->mem.ctx = c;
}
