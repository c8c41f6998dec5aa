/* Bounded decoding of untrusted protobuf bytes: a protobuf-c allocator with a byte budget
 * (an unpack that would allocate more fails instead of paying for it), and a scan of a
 * message's top-level fields that counts them without allocating, so that a message whose
 * field counts already rule it out is refused before it is unpacked. Daemon layer; no
 * shared state: each caller owns its struct decode_budget (loop thread or a worker). */
#ifndef ETRACE_DECODE_H
#define ETRACE_DECODE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* What an unpack may allocate. `a` is the allocator to pass to *_unpack and to
 * *_free_unpacked (allocator_data points at this struct, so it must not move). */
struct decode_budget {
    ProtobufCAllocator a;
    size_t limit_bytes; /* the most the unpack may allocate, malloc overhead included */
    size_t used_bytes;  /* allocated so far (never decreases: an unpack allocates, then the
                         * message is freed whole) */
    int exceeded;       /* an allocation was refused for the budget */
};

/* Sets b up for one unpack of at most limit_bytes. */
void decode_budget_init(struct decode_budget *b, size_t limit_bytes);

/* One top-level field number's occurrences in a scanned message. */
struct decode_field {
    uint32_t count;  /* occurrences */
    size_t bytes;    /* payload bytes of its length-delimited occurrences */
    size_t last_off; /* offset of the last occurrence's payload (length-delimited only) */
    size_t last_len; /* its length */
};

/* Walks the top-level fields of the encoded message buf[len] and fills fields[0..n_fields-1]
 * (indexed by field number; higher numbers are skipped, not counted). Allocates nothing and
 * reads each byte once. Returns 0, or -1 when buf is not a well-formed message (a truncated
 * field, a bad wire type, field number 0). */
int decode_scan(const uint8_t *buf, size_t len, struct decode_field *fields, uint32_t n_fields);

#endif
