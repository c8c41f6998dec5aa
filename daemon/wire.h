/* What the loop thread and the tick thread exchange: the model's layout (names and sizes,
 * read once before the tick thread starts), and the binary records that go through the
 * SPSC rings — validated inputs, outputs, commands and their results. Also the check of
 * an Input message against the layout (DESIGN §5.5 bad input). Daemon layer. */
#ifndef ETRACE_WIRE_H
#define ETRACE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "etrace.pb-c.h"

/* ---- the model's layout ------------------------------------------------------------- */

struct layout_input {
    char *name; /* owned */
    int size;
    int is_spikes;
};

struct layout_readout {
    char *name; /* owned */
    int size;
    int action_size; /* 0: no action; gaussian policy: size; softmax: 1 */
    int is_class;    /* cross_entropy: targets are class indices */
};

struct layout_proj {
    char *name; /* owned */
    enum model_op op;
    int64_t in_size, out_size; /* I, O */
    int64_t count;             /* weight values */
    int has_bias;
    /* Where an export buffer holds this projection (byte offsets; see layout.export_bytes):
     * the weight real[count], the bias real[O], sparse indptr int64[I+1], indices
     * int64[count]. Offsets of absent parts are 0. */
    size_t exp_weight, exp_bias, exp_indptr, exp_indices;
};

struct layout_cell {
    char *name; /* owned */
    int is_spiking;
};

struct layout {
    char *model_name; /* owned */
    uint64_t model_hash;
    double dt_s;
    int has_learning;
    int n_inputs, n_readouts, n_projs, n_cells;
    struct layout_input *inputs;     /* [n_inputs] */
    struct layout_readout *readouts; /* [n_readouts] */
    struct layout_proj *projs;       /* [n_projs] */
    struct layout_cell *cells;       /* [n_cells] */
    size_t output_bytes;             /* one tick's output record */
    size_t export_bytes;             /* one export buffer */
};

/* Reads eng's layout (call before the tick thread starts). Returns 0 or -1 (no memory). */
int layout_init(struct layout *l, struct engine *eng);

/* Frees the owned names; accepts a zeroed struct. */
void layout_fini(struct layout *l);

int layout_find_input(const struct layout *l, const char *name);
int layout_find_readout(const struct layout *l, const char *name);

/* ---- validated input: a header and items, each followed by its payload ------------- */

enum wire_item_kind { WIRE_ANALOG, WIRE_SPIKES, WIRE_TARGET, WIRE_CLASS, WIRE_REWARD };

struct wire_item {
    uint32_t kind;          /* enum wire_item_kind */
    int32_t index;          /* input or readout */
    int32_t n;              /* payload values: real (analog, target) or int32 (spikes) */
    int32_t class_index;    /* WIRE_CLASS */
    uint64_t seq;           /* frames: the sender's sequence number */
    int64_t sender_time_ns; /* frames: echoed */
    int64_t recv_ns;        /* when the loop received it (CLOCK_MONOTONIC) */
    double reward;          /* WIRE_REWARD */
    int32_t terminal;       /* WIRE_REWARD: the tick that consumes it ends an episode */
    uint32_t bytes;         /* this item with its payload, 8-aligned */
};

struct wire_input {
    uint32_t n_items;
    uint32_t bytes; /* the whole record */
    uint32_t gen;   /* the layout generation it was checked against (hot swap); set by the
                     * caller after wire_input_write; the tick thread drops other ones */
    uint32_t pad;
};

/* Why a message was rejected (DESIGN §5.5); indexes the per-socket counters. */
#define WIRE_REJECT_MAP(X)                                                                         \
    X(UNDECODABLE, "undecodable")                                                                  \
    X(WRONG_SIZE, "wrong size")                                                                    \
    X(UNKNOWN_NAME, "unknown name")                                                                \
    X(NON_FINITE, "non-finite")                                                                    \
    X(OVERSIZED, "oversized")                                                                      \
    X(UNKNOWN_COMMAND, "unknown command")                                                          \
    X(BAD_ARGUMENT, "bad argument")                                                                \
    X(OVER_RING, "over ring")

enum wire_reject {
    WIRE_OK = -1,
#define X(name, text) WIRE_REJECT_##name,
    WIRE_REJECT_MAP(X)
#undef X
        WIRE_N_REJECT
};

/* The reason's name ("wrong size"). */
const char *wire_reject_name(enum wire_reject r);

/* The Error code that reports a reason on the control socket. */
Etrace__Error__Code wire_reject_code(enum wire_reject r);

/* Checks msg against l; returns WIRE_OK and the record size in *bytes, or a reason with a
 * message naming the problem in err. */
enum wire_reject wire_input_check(const struct layout *l, const Etrace__Input *msg, size_t *bytes,
                                  char *err, size_t err_len);

/* The smallest record an Input of n_items frames and signals makes. */
size_t wire_input_min_bytes(size_t n_items);

/* Looks at the encoded Input buf[len] before it is unpacked (no allocation): returns
 * WIRE_OK, WIRE_REJECT_UNDECODABLE when it is not well formed, or WIRE_REJECT_OVER_RING when
 * its item count alone makes a record over max_record_bytes (it could never reach a tick).
 * Sets *n_items to its frames + signals when given. */
enum wire_reject wire_input_prescan(const uint8_t *buf, size_t len, size_t max_record_bytes,
                                    size_t *n_items);

/* The allocation budget for unpacking an Input of len bytes whose record may be up to
 * max_record_bytes: the decoded messages are about the record's size, plus their strings
 * and any unknown fields (each at most the bytes they came in). */
size_t wire_input_budget(size_t len, size_t max_record_bytes);

/* Writes the record of a checked msg into buf (wire_input_check's *bytes long). */
void wire_input_write(const struct layout *l, const Etrace__Input *msg, int64_t recv_ns, void *buf);

/* ---- one tick's outputs ------------------------------------------------------------- */

/* An output record: this header, then per readout its values and action as real, each
 * array padded to 8 bytes. */
struct wire_output {
    uint64_t tick;
    uint64_t period_index;
    int64_t deadline_ns;
    int64_t finish_ns;
    uint64_t input_seq;
    int64_t input_sender_time_ns;
    double loss;
    int32_t valid;
    int32_t pad;
};

/* The values and action of readout r inside an output record. */
const real *wire_output_values(const struct layout *l, const struct wire_output *o, int r);
const real *wire_output_action(const struct layout *l, const struct wire_output *o, int r);

/* Fills Output message m (readout r) from record o; values point into scratch, which must
 * hold the readout's size + action size floats. */
void wire_output_to_msg(const struct layout *l, const struct wire_output *o, int r, float *scratch,
                        Etrace__Output *m);

#endif
