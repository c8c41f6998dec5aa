/* Recording files (DESIGN §5.4): the one writer of a record's bytes and the one reader, shared
 * by the daemon's recorder, `etraced run --replay` and the client library's lockstep replay.
 * Proto layer: plain POSIX and protobuf-c; any thread, one reader per thread.
 *
 * Format 2: an 8-byte magic, then records. A record is a 16-byte header and a packed
 * RecordEvent: length (u32 LE), the low 32 bits of FNV-1a 64 of those 4 length bytes (so a
 * damaged length is told from a file cut short), FNV-1a 64 of the payload (u64 LE). Format 1
 * (before checksums: varint length + RecordEvent, no magic) is still read, unchecked. */
#ifndef ETRACE_RECORDING_H
#define ETRACE_RECORDING_H

#include <stddef.h>
#include <stdint.h>

#include "etrace.pb-c.h"

/* The first bytes of a format-2 recording. No format-1 file starts so (its third byte is a
 * RecordEvent tag, never 'T'). */
#define ETRACE_RECORDING_MAGIC                                                                     \
    "\x89"                                                                                         \
    "ETRACE\x02"
#define ETRACE_RECORDING_MAGIC_BYTES 8
#define ETRACE_RECORDING_HEADER_BYTES 16
/* The largest record a reader accepts (a snapshot of the largest model the daemon loads). */
#define ETRACE_RECORDING_MAX_RECORD_BYTES ((uint64_t)1 << 31)

/* FNV-1a 64 of buf[len]. */
uint64_t etrace_recording_fnv1a(const void *buf, size_t len);

/* The bytes ev takes as one record (header included). */
size_t etrace_recording_record_bytes(const Etrace__RecordEvent *ev);

/* Writes ev as one record into out (etrace_recording_record_bytes(ev) bytes long). Returns
 * the bytes written. */
size_t etrace_recording_pack(const Etrace__RecordEvent *ev, uint8_t *out);

/* A reader of one file. The caller owns the storage; etrace_recording_open fills it. */
struct etrace_recording_reader {
    int fd;                 /* the file (O_RDONLY | O_NONBLOCK | O_CLOEXEC), -1 when closed */
    char path[1024];        /* as given, for messages */
    int format;             /* 2 (checksums) or 1 (before checksums) */
    uint64_t size;          /* the file's size at open */
    uint64_t offset;        /* of the next record */
    uint64_t record_offset; /* of the record etrace_recording_next returned last */
    uint64_t n_records;     /* returned so far */
    uint8_t *buf;           /* the last record's payload (owned) */
    size_t cap;             /* of buf */
};

/* The results of etrace_recording_next. */
enum etrace_recording_status {
    ETRACE_RECORDING_DAMAGED = -1, /* a damaged or unreadable record: err says where */
    ETRACE_RECORDING_OK = 0,       /* *ev is the next record */
    ETRACE_RECORDING_END = 1,      /* no more records */
    ETRACE_RECORDING_TRUNCATED = 2 /* the file ends inside a record (cut short while
                                      written): the records before it are whole */
};

/* Opens path (a regular file; a FIFO or device is refused without blocking) and reads its
 * magic. Returns 0, or -1 with "PATH: ..." in err (the reader is then closed). */
int etrace_recording_open(struct etrace_recording_reader *r, const char *path, char *err,
                          size_t err_len);

/* The next record, decoded into *ev (the caller frees it with
 * etrace__record_event__free_unpacked). Returns an etrace_recording_status; on DAMAGED and
 * TRUNCATED err holds "PATH: offset N: ...", N the record's first byte. */
int etrace_recording_next(struct etrace_recording_reader *r, Etrace__RecordEvent **ev, char *err,
                          size_t err_len);

/* Closes the file and frees the buffer. Accepts a closed reader. */
void etrace_recording_close(struct etrace_recording_reader *r);

#endif
