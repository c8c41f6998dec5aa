/* Recording files (see etrace_recording.h). */
#include "etrace_recording.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t
etrace_recording_fnv1a(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

size_t
etrace_recording_record_bytes(const Etrace__RecordEvent *ev)
{
    return ETRACE_RECORDING_HEADER_BYTES + etrace__record_event__get_packed_size(ev);
}

size_t
etrace_recording_pack(const Etrace__RecordEvent *ev, uint8_t *out)
{
    uint8_t *payload = out + ETRACE_RECORDING_HEADER_BYTES;
    size_t len = etrace__record_event__pack(ev, payload);
    put_u32(out, (uint32_t)len);
    put_u32(out + 4, (uint32_t)etrace_recording_fnv1a(out, 4));
    put_u64(out + 8, etrace_recording_fnv1a(payload, len));
    return ETRACE_RECORDING_HEADER_BYTES + len;
}

/* Reads exactly len bytes at off. 0, or -1 (errno set; EIO at an unexpected end). */
static int
read_at(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int
etrace_recording_open(struct etrace_recording_reader *r, const char *path, char *err,
                      size_t err_len)
{
    struct stat st;
    uint8_t magic[ETRACE_RECORDING_MAGIC_BYTES];
    memset(r, 0, sizeof(*r));
    snprintf(r->path, sizeof r->path, "%s", path);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below. */
    r->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (r->fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(r->fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        etrace_recording_close(r);
        return -1;
    }
    r->size = (uint64_t)st.st_size;
    r->format = 1;
    if (r->size >= ETRACE_RECORDING_MAGIC_BYTES) {
        if (read_at(r->fd, magic, sizeof magic, 0)) {
            snprintf(err, err_len, "%s: %s", path, strerror(errno));
            etrace_recording_close(r);
            return -1;
        }
        if (!memcmp(magic, ETRACE_RECORDING_MAGIC, ETRACE_RECORDING_MAGIC_BYTES)) {
            r->format = 2;
            r->offset = ETRACE_RECORDING_MAGIC_BYTES;
        }
    }
    return 0;
}

static int
grow(struct etrace_recording_reader *r, size_t len)
{
    if (len <= r->cap)
        return 0;
    uint8_t *nb = realloc(r->buf, len);
    if (!nb)
        return -1;
    r->buf = nb;
    r->cap = len;
    return 0;
}

/* Format 1: a varint length, then the payload. Sets *len and *hdr (the varint's bytes). */
static int
next_legacy(struct etrace_recording_reader *r, uint64_t *len, uint64_t *hdr, char *err,
            size_t err_len)
{
    uint8_t v[10];
    uint64_t left = r->size - r->offset, n = 0;
    size_t want = left < sizeof v ? (size_t)left : sizeof v, i;
    if (read_at(r->fd, v, want, r->offset)) {
        snprintf(err, err_len, "%s: offset %llu: %s", r->path, (unsigned long long)r->offset,
                 strerror(errno));
        return ETRACE_RECORDING_DAMAGED;
    }
    for (i = 0; i < want; i++) {
        n |= (uint64_t)(v[i] & 0x7f) << (7 * i);
        if (!(v[i] & 0x80))
            break;
    }
    if (i == want) {
        snprintf(err, err_len, "%s: offset %llu: %s", r->path, (unsigned long long)r->offset,
                 want < sizeof v ? "the file ends inside a record's length" : "a bad length");
        return want < sizeof v ? ETRACE_RECORDING_TRUNCATED : ETRACE_RECORDING_DAMAGED;
    }
    *hdr = i + 1;
    *len = n;
    if (n > left - *hdr) {
        snprintf(err, err_len,
                 "%s: offset %llu: the file ends inside a record (%llu of %llu bytes)", r->path,
                 (unsigned long long)r->offset, (unsigned long long)(left - *hdr),
                 (unsigned long long)n);
        return ETRACE_RECORDING_TRUNCATED;
    }
    return ETRACE_RECORDING_OK;
}

int
etrace_recording_next(struct etrace_recording_reader *r, Etrace__RecordEvent **ev, char *err,
                      size_t err_len)
{
    uint8_t h[ETRACE_RECORDING_HEADER_BYTES];
    uint64_t len = 0, hdr = ETRACE_RECORDING_HEADER_BYTES, sum = 0;
    unsigned long long off = (unsigned long long)r->offset;
    *ev = NULL;
    if (r->fd < 0 || r->offset >= r->size)
        return ETRACE_RECORDING_END;
    if (r->format == 1) {
        int rc = next_legacy(r, &len, &hdr, err, err_len);
        if (rc != ETRACE_RECORDING_OK)
            return rc;
    } else {
        uint64_t left = r->size - r->offset;
        if (left < hdr) {
            snprintf(err, err_len, "%s: offset %llu: the file ends inside a record header", r->path,
                     off);
            return ETRACE_RECORDING_TRUNCATED;
        }
        if (read_at(r->fd, h, sizeof h, r->offset)) {
            snprintf(err, err_len, "%s: offset %llu: %s", r->path, off, strerror(errno));
            return ETRACE_RECORDING_DAMAGED;
        }
        len = get_le(h, 4);
        sum = get_le(h + 8, 8);
        if (get_le(h + 4, 4) != (uint32_t)etrace_recording_fnv1a(h, 4)) {
            snprintf(err, err_len, "%s: offset %llu: damaged record header (length check)", r->path,
                     off);
            return ETRACE_RECORDING_DAMAGED;
        }
        if (len > left - hdr) {
            snprintf(err, err_len,
                     "%s: offset %llu: the file ends inside a record (%llu of %llu bytes)", r->path,
                     off, (unsigned long long)(left - hdr), (unsigned long long)len);
            return ETRACE_RECORDING_TRUNCATED;
        }
    }
    if (len > ETRACE_RECORDING_MAX_RECORD_BYTES) {
        snprintf(err, err_len, "%s: offset %llu: a record of %llu bytes (over %llu)", r->path, off,
                 (unsigned long long)len, (unsigned long long)ETRACE_RECORDING_MAX_RECORD_BYTES);
        return ETRACE_RECORDING_DAMAGED;
    }
    if (grow(r, len ? (size_t)len : 1)) {
        snprintf(err, err_len, "%s: offset %llu: out of memory for a record of %llu bytes", r->path,
                 off, (unsigned long long)len);
        return ETRACE_RECORDING_DAMAGED;
    }
    if (read_at(r->fd, r->buf, (size_t)len, r->offset + hdr)) {
        snprintf(err, err_len, "%s: offset %llu: %s", r->path, off, strerror(errno));
        return ETRACE_RECORDING_DAMAGED;
    }
    if (r->format == 2 && etrace_recording_fnv1a(r->buf, (size_t)len) != sum) {
        snprintf(err, err_len,
                 "%s: offset %llu: checksum mismatch (a damaged record of %llu bytes)", r->path,
                 off, (unsigned long long)len);
        return ETRACE_RECORDING_DAMAGED;
    }
    *ev = etrace__record_event__unpack(NULL, (size_t)len, r->buf);
    if (!*ev) {
        snprintf(err, err_len, "%s: offset %llu: an undecodable record", r->path, off);
        return ETRACE_RECORDING_DAMAGED;
    }
    r->record_offset = r->offset;
    r->offset += hdr + len;
    r->n_records++;
    return ETRACE_RECORDING_OK;
}

void
etrace_recording_close(struct etrace_recording_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}
