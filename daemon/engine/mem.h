/* A replaceable allocator for the engine (hiredis alloc.h style). Engine layer.
 * The engine allocates only at compile time and only through a `struct mem`, so a
 * test can count allocations over many ticks and inject failures at each one. */
#ifndef ETRACE_MEM_H
#define ETRACE_MEM_H

#include <stddef.h>

struct mem {
    void *(*alloc)(void *ctx, size_t size_bytes); /* like malloc; NULL on failure */
    void (*free)(void *ctx, void *ptr);           /* like free; accepts NULL */
    void *ctx;                                    /* passed to both, owned by the caller */
};

/* The process allocator (malloc/free). Never NULL; static storage. */
const struct mem *mem_default(void);

/* Allocates size_bytes (64-byte aligned, so SIMD loads never split lines; 2 MiB aligned
 * and advised as huge pages from 2 MiB up, see mem.c), or NULL.
 * A size of 0 returns a valid unique pointer. */
void *mem_alloc(const struct mem *m, size_t size_bytes);

/* As mem_alloc, then zero-fills. */
void *mem_calloc(const struct mem *m, size_t n, size_t size_bytes);

/* Frees *p (NULL accepted) and sets *p to NULL. */
void mem_free(const struct mem *m, void *pp);

/* Duplicates a NUL-terminated string, or NULL on failure (s NULL -> NULL). */
char *mem_strdup(const struct mem *m, const char *s);

/* A counting allocator for tests and `etraced compile`: wraps `inner`, counts calls
 * and live bytes, and fails the allocation whose 0-based index equals fail_at
 * (-1: never). */
struct mem_counter {
    struct mem mem;          /* hand &counter.mem to the engine */
    const struct mem *inner; /* where the memory really comes from */
    long n_allocs;           /* successful allocations so far */
    long n_frees;            /* frees of non-NULL pointers so far */
    long n_calls;            /* allocation calls so far, failed ones included */
    long fail_at;            /* index of the call to fail, or -1 */
    size_t live_bytes;       /* bytes currently allocated */
    size_t peak_bytes;       /* high-water mark of live_bytes */
};

/* Sets up a counter over `inner` (NULL: mem_default()) that never fails. */
void mem_counter_init(struct mem_counter *c, const struct mem *inner);

#endif
