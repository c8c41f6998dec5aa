/* A minimal MCAP writer (the container format of rosbag2 and Foxglove, mcap.dev spec,
 * version 0): header, schemas, channels and messages in one unchunked data section, a
 * data end record and a footer without a summary section (readers then scan the data
 * section). Shell layer (offline tools only); plain stdio, no allocation. */
#ifndef ETRACE_MCAP_H
#define ETRACE_MCAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A file being written. The caller owns the struct; mcap_open fills it. */
struct mcap {
    FILE *f; /* owned, closed by mcap_close */
    int err; /* a write failed: mcap_close reports it */
};

/* Creates `path` and writes the magic and a header record with `profile` ("" for none)
 * and library "etraced". Returns 0, or -1 with errno set. */
int mcap_open(struct mcap *m, const char *path, const char *profile);

/* A schema record: id (>= 1), name (the message type, "etrace.Frame"), encoding
 * ("protobuf") and data[len] (for protobuf: a serialized FileDescriptorSet). */
void mcap_schema(struct mcap *m, uint16_t id, const char *name, const char *encoding,
                 const void *data, size_t len);

/* A channel record: id, its schema's id, topic, message encoding ("protobuf"), and no
 * metadata. */
void mcap_channel(struct mcap *m, uint16_t id, uint16_t schema_id, const char *topic,
                  const char *message_encoding);

/* A message record on channel `id`: sequence number, log and publish times in ns, the
 * encoded message data[len]. */
void mcap_message(struct mcap *m, uint16_t channel_id, uint32_t sequence, uint64_t log_time_ns,
                  uint64_t publish_time_ns, const void *data, size_t len);

/* Writes the data end and footer records and the closing magic, and closes the file.
 * Returns 0, or -1 when any write failed. */
int mcap_close(struct mcap *m);

#endif
