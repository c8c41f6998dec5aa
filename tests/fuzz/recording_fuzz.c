/* Fuzz target: a recording through the replay of `etraced run --replay` (offline_replay:
 * the framing, each event decoded and applied, the ticks between them run), with the
 * checkpoints of its snapshot and restore events fixed up first (fuzz_fix_recording) so
 * that mutations reach the restore. At most FUZZ_MAX_TICKS ticks per input: a recording
 * asks for as many as its event ticks say. The replay's messages go to stderr (make fuzz
 * runs it with -close_fd_mask=2). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_daemon.h"
#include "offline.h"

#define FUZZ_MAX_TICKS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    size_t len = 0;
    uint8_t *buf = fuzz_fix_recording(data, size, &len);
    if (buf)
        offline_replay(buf, len, "fuzz.rec", NULL, FUZZ_MAX_TICKS);
    free(buf);
    return 0;
}
