/* A minimal MCAP writer (see mcap.h). Records are opcode (1 byte), content length
 * (uint64 little endian) and content; strings and byte arrays are prefixed by a uint32
 * length, maps by their byte length. */
#include "mcap.h"

#include <errno.h>
#include <string.h>

static const uint8_t magic[8] = {0x89, 'M', 'C', 'A', 'P', '0', '\r', '\n'};

enum {
    OP_HEADER = 0x01,
    OP_FOOTER = 0x02,
    OP_SCHEMA = 0x03,
    OP_CHANNEL = 0x04,
    OP_MESSAGE = 0x05,
    OP_DATA_END = 0x0f
};

static void
put(struct mcap *m, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, m->f) != n)
        m->err = 1;
}

static void
put_u16(struct mcap *m, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(m, b, 2);
}

static void
put_u32(struct mcap *m, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(m, b, 4);
}

static void
put_u64(struct mcap *m, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(m, b, 8);
}

static void
put_str(struct mcap *m, const char *s)
{
    put_u32(m, (uint32_t)strlen(s));
    put(m, s, strlen(s));
}

static void
record(struct mcap *m, uint8_t op, uint64_t len)
{
    put(m, &op, 1);
    put_u64(m, len);
}

int
mcap_open(struct mcap *m, const char *path, const char *profile)
{
    static const char library[] = "etraced";
    m->err = 0;
    m->f = fopen(path, "wb");
    if (!m->f)
        return -1;
    put(m, magic, sizeof(magic));
    record(m, OP_HEADER, 4 + strlen(profile) + 4 + strlen(library));
    put_str(m, profile);
    put_str(m, library);
    return 0;
}

void
mcap_schema(struct mcap *m, uint16_t id, const char *name, const char *encoding, const void *data,
            size_t len)
{
    record(m, OP_SCHEMA, 2 + 4 + strlen(name) + 4 + strlen(encoding) + 4 + len);
    put_u16(m, id);
    put_str(m, name);
    put_str(m, encoding);
    put_u32(m, (uint32_t)len);
    put(m, data, len);
}

void
mcap_channel(struct mcap *m, uint16_t id, uint16_t schema_id, const char *topic,
             const char *message_encoding)
{
    record(m, OP_CHANNEL, 2 + 2 + 4 + strlen(topic) + 4 + strlen(message_encoding) + 4);
    put_u16(m, id);
    put_u16(m, schema_id);
    put_str(m, topic);
    put_str(m, message_encoding);
    put_u32(m, 0); /* metadata: an empty map */
}

void
mcap_message(struct mcap *m, uint16_t channel_id, uint32_t sequence, uint64_t log_time_ns,
             uint64_t publish_time_ns, const void *data, size_t len)
{
    record(m, OP_MESSAGE, 2 + 4 + 8 + 8 + len);
    put_u16(m, channel_id);
    put_u32(m, sequence);
    put_u64(m, log_time_ns);
    put_u64(m, publish_time_ns);
    put(m, data, len);
}

int
mcap_close(struct mcap *m)
{
    record(m, OP_DATA_END, 4);
    put_u32(m, 0); /* no data section CRC */
    record(m, OP_FOOTER, 8 + 8 + 4);
    put_u64(m, 0); /* no summary section */
    put_u64(m, 0);
    put_u32(m, 0);
    put(m, magic, sizeof(magic));
    int rc = m->err || ferror(m->f);
    if (fclose(m->f))
        rc = 1;
    m->f = NULL;
    if (rc && !errno)
        errno = EIO;
    return rc ? -1 : 0;
}
