/* Engine snapshots (DESIGN §4.5, §5.2): the engine state copied out of the live engine
 * (whole, or the small parts in one tick and the weights a slice per tick), encoded as a
 * protobuf Checkpoint with a checksum, decoded and verified, and restored into a freshly
 * compiled engine that continues bit for bit. Daemon layer (used by the daemon's
 * checkpoints and recorder, and by the offline export-checkpoint and replay).
 * Threads: snap_plan_init on the thread that owns the engine (or before it is shared);
 * snap_copy_* on the tick thread; the rest on any one thread at a time. */
#ifndef ETRACE_SNAPSHOT_H
#define ETRACE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "etrace.pb-c.h"

/* One section of the engine state, where it sits in a snapshot's buffer. */
struct snap_sec {
    char *name;        /* the engine's section name, owned */
    int part;          /* enum engine_part */
    size_t bytes;      /* its size */
    size_t elem_bytes; /* element size */
    size_t off;        /* offset in snap.data */
};

/* The shape of a compiled engine's state: what a snapshot of it holds. Built once per
 * compiled engine (the sections' names and sizes never change). */
struct snap_plan {
    int n;                /* sections */
    struct snap_sec *sec; /* [n], owned */
    size_t total;         /* bytes of every section */
    char *model_text;     /* the model file's text, owned */
    size_t model_len;
    uint64_t model_hash;
    char *model_name; /* owned */
    int has_learning; /* the model has a learning section */
};

/* Reads eng's section table and model text. Returns 0, or -1 when out of memory. */
int snap_plan_init(struct snap_plan *p, struct engine *eng);

/* Frees the plan; accepts a zeroed struct; leaves it zeroed. */
void snap_plan_fini(struct snap_plan *p);

/* A snapshot: a copy of every section, the scalars and the model, self-contained. */
struct snap {
    struct snap_plan plan;    /* a copy of the engine's plan, owned */
    uint8_t *data;            /* [plan.total], owned */
    struct engine_scalars sc; /* the scalars as of the snapshot */
    uint64_t period_index;    /* periods elapsed (timer mode), for the record */
    int64_t wall_ns;          /* CLOCK_REALTIME when taken */
    int cursor;               /* tick thread: the next section to copy a slice of */
    size_t cursor_off;        /* ... and the offset within it */
};

/* Allocates a snapshot for an engine of plan p (copied). Returns NULL when out of memory. */
struct snap *snap_new(const struct snap_plan *p);

/* Frees *s; accepts NULL; sets *s to NULL. */
void snap_free(struct snap **s);

/* Tick thread, at the end of a tick at which engine_at_step_boundary(eng) is 1 (or when
 * nothing ticks): copies the scalars and every section except the large ones (weights,
 * W0, optimizer state, sparse structure), and starts the slice cursor. */
void snap_copy_small(struct snap *s, struct engine *eng);

/* Tick thread: copies up to budget bytes of the large sections (budget 0: all). Returns 1
 * when every section is copied, else 0. The weights must not have changed since
 * snap_copy_small (steps deferred). */
int snap_copy_slice(struct snap *s, struct engine *eng, size_t budget);

/* A Checkpoint message pointing into a snapshot (valid while both live). */
struct snap_msg {
    Etrace__Checkpoint ck;
    Etrace__Scalars sc;
    Etrace__Section *secs;    /* [n], owned */
    Etrace__Section **secs_p; /* [n], owned */
    uint64_t rng[4];
};

/* Fills m from s, checksum included. Returns 0, or -1 when out of memory. */
int snap_msg_init(struct snap_msg *m, const struct snap *s);

/* Frees what snap_msg_init allocated; accepts a zeroed struct. */
void snap_msg_fini(struct snap_msg *m);

/* Packs s as a Checkpoint file image (malloc'd *out, *len). Returns 0 or -1 (memory). */
int snap_pack(const struct snap *s, uint8_t **out, size_t *len);

/* Verifies a decoded Checkpoint: version, real type, checksum, model hash. Returns 0, or -1
 * with the reason in err. */
int snap_verify(Etrace__Checkpoint *ck, char *err, size_t err_len);

/* Decodes and verifies a checkpoint file image. Returns the message (free with
 * etrace__checkpoint__free_unpacked) or NULL with the reason in err ("truncated or not a
 * checkpoint", "checksum mismatch", ...). */
Etrace__Checkpoint *snap_unpack(const uint8_t *buf, size_t len, char *err, size_t err_len);

/* Compiles the checkpoint's model with its weights and copies every section and scalar:
 * the engine continues as the one that was snapshotted. `name` labels messages.
 * Returns 0 and *out, or -1 with the reason in err. Any thread (touches only the new
 * engine). */
int snap_restore(const Etrace__Checkpoint *ck, const char *name, struct engine **out, char *err,
                 size_t err_len);

/* Compiles a Load request's model, serving the files it names from the request's bytes
 * (the daemon never opens a client's path). Returns 0 and *out, or -1 with the model's
 * error ("PATH:LINE:COL: FIELD: message") in err. Any thread. */
int snap_compile_load(const Etrace__Load *l, struct engine **out, char *err, size_t err_len);

#endif
