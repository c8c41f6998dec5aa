/* Shared by the daemon's fuzz targets and their seed generator: small models compiled
 * once, their layouts (what the loop thread checks Inputs against), and the checksum
 * fix-ups that let mutated checkpoints and recordings through to the code behind the
 * checksums. */
#ifndef ETRACE_FUZZ_DAEMON_H
#define ETRACE_FUZZ_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "etrace.pb-c.h"
#include "wire.h"

/* The models: analog and spike inputs with a regression readout (learning); a
 * cross-entropy readout (class targets); a reward-driven softmax policy. */
enum { FUZZ_N_MODELS = 3 };
extern const char *const fuzz_model_text[FUZZ_N_MODELS];

/* Compiles model k (snap_compile_load, as a Load request). Returns NULL on failure. */
struct engine *fuzz_compile(int k);

/* The layouts of the models, compiled on the first call (static storage). Aborts when a
 * model does not compile (the harness is broken). */
const struct layout *fuzz_layout(int k);

/* The checksum fix-up: sets ck's model hash and checksum to what snap_verify computes, so
 * that a mutated checkpoint reaches snap_restore. Returns 0 or -1 (out of memory). */
int fuzz_fix_checkpoint(Etrace__Checkpoint *ck);

/* The same for a recording: buf[len], events in varint framing, becomes a format-2
 * recording (magic, checksummed records) with every event's checkpoint (snapshot,
 * restore) fixed up; from the first bytes that do not decode on, the rest is copied raw.
 * Returns a malloc'd image and its length in *out_len, or NULL (out of memory). */
uint8_t *fuzz_fix_recording(const uint8_t *buf, size_t len, size_t *out_len);

/* A checkpoint file image of model k after `ticks` ticks of deterministic input (the
 * daemon's encoder, snap_pack). Returns malloc'd bytes or NULL. */
uint8_t *fuzz_checkpoint_image(int k, int ticks, size_t *len);

#endif
