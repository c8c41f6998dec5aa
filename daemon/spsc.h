/* Lock-free single-producer/single-consumer exchange between the tick thread and the loop
 * thread (DESIGN §5.2). Daemon layer. Two structures, C11 atomics, no locks, no system
 * calls, no allocation after init:
 *  - struct spsc: a ring of variable-length records (commands, inputs, outputs, replies);
 *  - struct latest: a latest-value (triple) buffer, the newest of a stream of fixed-size
 *    values; the reader always gets a whole value, the writer never waits.
 * Each side of each structure must be used by exactly one thread at a time. */
#ifndef ETRACE_SPSC_H
#define ETRACE_SPSC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A byte ring of records. Positions are free-running byte counts; a record is an 8-byte
 * header (its length) and its payload padded to 8 bytes, never split by the ring's end. */
struct spsc {
    _Alignas(64) _Atomic size_t head; /* bytes ever written: the producer's, published */
    size_t tail_cache;                /* producer's last look at tail */
    size_t reserved_bytes;            /* producer: payload bytes of the open reservation */
    size_t reserved_pad;              /* producer: bytes skipped to the ring's start */
    _Alignas(64) _Atomic size_t tail; /* bytes ever released: the consumer's, published */
    size_t head_cache;                /* consumer's last look at head */
    _Alignas(64) uint8_t *buf;        /* [cap_bytes], 64-byte aligned, owned */
    size_t cap_bytes;                 /* a power of two, >= 64 */
    size_t max_record_bytes;          /* the largest payload a record may have */
};

/* Allocates a ring of cap_bytes (rounded up to a power of two, at least 64). The largest
 * record payload is cap_bytes / 2 - 8. Returns 0, or -1 when out of memory. Call before
 * either thread uses it. */
int spsc_init(struct spsc *q, size_t cap_bytes);

/* Frees the ring's buffer; accepts a zeroed or already finished ring. */
void spsc_fini(struct spsc *q);

/* Producer: space for a record of len bytes (8-byte aligned), or NULL when the ring is
 * full or len is over max_record_bytes. The record is invisible until spsc_commit. */
void *spsc_reserve(struct spsc *q, size_t len);

/* Producer: publishes the reserved record, shortened to len (<= the reserved length). */
void spsc_commit(struct spsc *q, size_t len);

/* Producer: copies len bytes as one record. Returns 0, or -1 when full. */
int spsc_push(struct spsc *q, const void *data, size_t len);

/* Consumer: the oldest record and its length, or NULL when empty. Valid until spsc_pop. */
void *spsc_peek(struct spsc *q, size_t *len);

/* Consumer: releases the record spsc_peek returned. */
void spsc_pop(struct spsc *q);

/* Either side: bytes currently in use (a snapshot, for stats). */
size_t spsc_used_bytes(struct spsc *q);

/* A latest-value buffer of values of size_bytes each. */
struct latest {
    uint8_t *buf[3];      /* three values, owned */
    size_t size_bytes;    /* of one value */
    _Atomic unsigned mid; /* the middle buffer's index | LATEST_FRESH */
    unsigned back;        /* the writer's buffer */
    unsigned front;       /* the reader's buffer */
};

/* Allocates three zeroed values of size_bytes. Returns 0 or -1 (out of memory). */
int latest_init(struct latest *l, size_t size_bytes);

/* Frees the values; accepts a zeroed or finished buffer. */
void latest_fini(struct latest *l);

/* Writer: the value to fill before latest_publish (its contents are stale). */
void *latest_back(struct latest *l);

/* Writer: makes the filled value the newest. Returns 1 if the previous newest was never
 * read (it is superseded), else 0. */
int latest_publish(struct latest *l);

/* Reader: the newest value (all zero before the first publish), valid until the next
 * latest_read. *is_new (may be NULL) says whether it was published since the last read. */
const void *latest_read(struct latest *l, int *is_new);

#endif
