/* Lock-free SPSC record ring and latest-value buffer (see spsc.h). */
#include "spsc.h"

#include <stdlib.h>
#include <string.h>

enum { HDR_BYTES = 8 };
#define WRAP_MARK UINT64_MAX
#define LATEST_FRESH 4u

static size_t
round8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

int
spsc_init(struct spsc *q, size_t cap_bytes)
{
    size_t cap = 64;
    memset(q, 0, sizeof(*q));
    while (cap < cap_bytes)
        cap <<= 1;
    q->buf = aligned_alloc(64, cap);
    if (!q->buf)
        return -1;
    /* Touch every page now: no page fault on the hot path, and a flat resident size. */
    memset(q->buf, 0, cap);
    q->cap_bytes = cap;
    q->max_record_bytes = cap / 2 - HDR_BYTES;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    return 0;
}

void
spsc_fini(struct spsc *q)
{
    free(q->buf);
    q->buf = NULL;
    q->cap_bytes = 0;
}

void *
spsc_reserve(struct spsc *q, size_t len)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t need = HDR_BYTES + round8(len);
    size_t off = head & (q->cap_bytes - 1);
    size_t pad = 0;

    if (len > q->max_record_bytes)
        return NULL;
    /* A record never straddles the end: skip to the start, leaving a wrap mark. */
    if (off + need > q->cap_bytes)
        pad = q->cap_bytes - off;
    if (head + pad + need - q->tail_cache > q->cap_bytes) {
        q->tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head + pad + need - q->tail_cache > q->cap_bytes)
            return NULL;
    }
    q->reserved_bytes = len;
    q->reserved_pad = pad;
    if (pad) {
        uint64_t mark = WRAP_MARK;
        memcpy(q->buf + off, &mark, sizeof(mark));
        off = 0;
    }
    return q->buf + off + HDR_BYTES;
}

void
spsc_commit(struct spsc *q, size_t len)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t off = (head + q->reserved_pad) & (q->cap_bytes - 1);
    uint64_t hdr = len;

    if (len > q->reserved_bytes)
        len = q->reserved_bytes;
    memcpy(q->buf + off, &hdr, sizeof(hdr));
    atomic_store_explicit(&q->head, head + q->reserved_pad + HDR_BYTES + round8(len),
                          memory_order_release);
    q->reserved_bytes = 0;
    q->reserved_pad = 0;
}

int
spsc_push(struct spsc *q, const void *data, size_t len)
{
    void *p = spsc_reserve(q, len);
    if (!p)
        return -1;
    memcpy(p, data, len);
    spsc_commit(q, len);
    return 0;
}

void *
spsc_peek(struct spsc *q, size_t *len)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t hdr;

    if (tail == q->head_cache) {
        q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
        if (tail == q->head_cache)
            return NULL;
    }
    memcpy(&hdr, q->buf + (tail & (q->cap_bytes - 1)), sizeof(hdr));
    if (hdr == WRAP_MARK) {
        /* The producer wrote the mark before publishing the record after it. */
        tail += q->cap_bytes - (tail & (q->cap_bytes - 1));
        atomic_store_explicit(&q->tail, tail, memory_order_release);
        memcpy(&hdr, q->buf, sizeof(hdr));
    }
    *len = (size_t)hdr;
    return q->buf + (tail & (q->cap_bytes - 1)) + HDR_BYTES;
}

void
spsc_pop(struct spsc *q)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t hdr;

    memcpy(&hdr, q->buf + (tail & (q->cap_bytes - 1)), sizeof(hdr));
    atomic_store_explicit(&q->tail, tail + HDR_BYTES + round8((size_t)hdr), memory_order_release);
}

size_t
spsc_used_bytes(struct spsc *q)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    return head - tail;
}

int
latest_init(struct latest *l, size_t size_bytes)
{
    memset(l, 0, sizeof(*l));
    l->size_bytes = size_bytes;
    for (int i = 0; i < 3; i++) {
        l->buf[i] = calloc(1, size_bytes ? size_bytes : 1);
        if (!l->buf[i]) {
            latest_fini(l);
            return -1;
        }
    }
    l->front = 0;
    atomic_init(&l->mid, 1u);
    l->back = 2;
    return 0;
}

void
latest_fini(struct latest *l)
{
    for (int i = 0; i < 3; i++) {
        free(l->buf[i]);
        l->buf[i] = NULL;
    }
}

void *
latest_back(struct latest *l)
{
    return l->buf[l->back];
}

int
latest_publish(struct latest *l)
{
    unsigned old = atomic_exchange_explicit(&l->mid, l->back | LATEST_FRESH, memory_order_acq_rel);
    l->back = old & 3u;
    return (old & LATEST_FRESH) != 0;
}

const void *
latest_read(struct latest *l, int *is_new)
{
    int fresh = (atomic_load_explicit(&l->mid, memory_order_relaxed) & LATEST_FRESH) != 0;
    if (fresh) {
        unsigned old = atomic_exchange_explicit(&l->mid, l->front, memory_order_acq_rel);
        l->front = old & 3u;
    }
    if (is_new)
        *is_new = fresh;
    return l->buf[l->front];
}
