/* Fuzz target: a checkpoint file through the daemon's loader (snap_unpack: decode, version,
 * checksum, model hash, real type) and restore (snap_restore: compile the embedded model,
 * load its weights, copy every section), then one tick of the restored engine. The input
 * is first decoded and its checksum and model hash recomputed (fuzz_fix_checkpoint), so
 * that mutations reach the code behind them; undecodable inputs go to the loader as they
 * are. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine.h"
#include "fuzz_daemon.h"
#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
load(const uint8_t *buf, size_t len)
{
    char err[1024];
    struct engine *eng = NULL;
    Etrace__Checkpoint *ck = snap_unpack(buf, len, err, sizeof err);
    if (!ck)
        return;
    if (snap_restore(ck, "fuzz.ckpt", &eng, err, sizeof err) == 0) {
        engine_tick(eng);
        engine_free(&eng);
    }
    etrace__checkpoint__free_unpacked(ck, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    engine_set_fp_env();
    Etrace__Checkpoint *ck = etrace__checkpoint__unpack(NULL, size, data);
    if (!ck) {
        load(data, size);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fuzz_fix_checkpoint(ck) == 0) {
        len = etrace__checkpoint__get_packed_size(ck);
        buf = malloc(len ? len : 1);
        if (buf)
            etrace__checkpoint__pack(ck, buf);
    }
    etrace__checkpoint__free_unpacked(ck, NULL);
    if (buf)
        load(buf, len);
    free(buf);
    return 0;
}
