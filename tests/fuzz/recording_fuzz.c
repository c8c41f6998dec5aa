/* Fuzz target: a recording through the replay of `etraced run --replay` (offline_replay:
 * the one recording reader with its checksums and framing, each event decoded and applied,
 * the ticks between them run). The input is a list of events in varint framing;
 * fuzz_fix_recording makes it the format-2 file the daemon writes (checksummed records,
 * the checkpoints of snapshot and restore events fixed up) so that mutations reach the
 * code behind the checksums, while undecodable bytes go in raw and reach the reader's
 * checks. The image is replayed from a file, as the command reads it; at most
 * FUZZ_MAX_TICKS ticks per input (a recording asks for as many as its event ticks say).
 * The replay's messages go to stderr (make fuzz runs it with -close_fd_mask=2). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_daemon.h"
#include "offline.h"

#define FUZZ_MAX_TICKS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct bound {
    int ticks;
};

static int
count_tick(void *ctx, struct engine *eng)
{
    struct bound *b = ctx;
    (void)eng;
    return ++b->ticks > FUZZ_MAX_TICKS;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (size > 1 << 20)
        return 0;
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/etrace-recording-fuzz-%d.rec", (int)getpid());
    size_t len = 0;
    uint8_t *buf = fuzz_fix_recording(data, size, &len);
    FILE *f = buf ? fopen(path, "wb") : NULL;
    if (f) {
        size_t wrote = fwrite(buf, 1, len, f);
        if (fclose(f) == 0 && wrote == len) {
            struct bound b = {0};
            struct offline_replay_hooks h = {.ctx = &b, .on_tick = count_tick};
            offline_replay(path, NULL, &h);
        }
        unlink(path);
    }
    free(buf);
    return 0;
}
