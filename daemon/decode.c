/* Bounded decoding (see decode.h). */
#include "decode.h"

#include <stdlib.h>
#include <string.h>

/* What glibc's malloc adds to each chunk: protobuf-c allocates many small pieces (a
 * message struct per repeated element), whose headers are part of what they cost. */
enum { CHUNK_OVERHEAD = 16 };

static void *
budget_alloc(void *data, size_t size)
{
    struct decode_budget *b = data;
    size_t cost = size + CHUNK_OVERHEAD;
    if (cost < size || cost > b->limit_bytes - b->used_bytes) {
        b->exceeded = 1;
        return NULL;
    }
    void *p = malloc(size ? size : 1);
    if (p)
        b->used_bytes += cost;
    return p;
}

static void
budget_free(void *data, void *p)
{
    (void)data;
    free(p);
}

void
decode_budget_init(struct decode_budget *b, size_t limit_bytes)
{
    memset(b, 0, sizeof(*b));
    b->a.alloc = budget_alloc;
    b->a.free = budget_free;
    b->a.allocator_data = b;
    b->limit_bytes = limit_bytes;
}

/* Reads a varint at buf[*pos]; returns 0, or -1 when it runs past len or over 10 bytes. */
static int
varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t byte = buf[(*pos)++];
        x |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

int
decode_scan(const uint8_t *buf, size_t len, struct decode_field *fields, uint32_t n_fields)
{
    size_t pos = 0;
    memset(fields, 0, (size_t)n_fields * sizeof(*fields));
    while (pos < len) {
        uint64_t key, v;
        if (varint(buf, len, &pos, &key))
            return -1;
        uint64_t num = key >> 3;
        if (num == 0 || num > 0x1fffffff)
            return -1;
        struct decode_field *f = num < n_fields ? &fields[num] : NULL;
        switch (key & 7) {
        case 0: /* varint */
            if (varint(buf, len, &pos, &v))
                return -1;
            break;
        case 1: /* 64-bit */
            if (len - pos < 8)
                return -1;
            pos += 8;
            break;
        case 2: /* length-delimited */
            if (varint(buf, len, &pos, &v) || v > len - pos)
                return -1;
            if (f) {
                f->bytes += (size_t)v;
                f->last_off = pos;
                f->last_len = (size_t)v;
            }
            pos += (size_t)v;
            break;
        case 5: /* 32-bit */
            if (len - pos < 4)
                return -1;
            pos += 4;
            break;
        default: /* groups (3, 4) are not proto3; 6, 7 do not exist */
            return -1;
        }
        if (f)
            f->count++;
    }
    return 0;
}
