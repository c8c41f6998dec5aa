/* The offline subcommands of etraced (DESIGN §6): compile and run. Shell layer: the
 * engine with files instead of sockets. Called from main() with argv[0] the subcommand. */
#ifndef ETRACE_OFFLINE_H
#define ETRACE_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

/* `etraced compile MODEL [--expand] [--json]`. Returns the exit code (0, 1, 64). */
int offline_compile_main(int argc, char **argv);

/* `etraced run MODEL --input NAME=F.npy ... --out DIR [...]`. Returns the exit code. */
int offline_run_main(int argc, char **argv);

/* `etraced export-checkpoint FILE DIR`: the checkpoint's parameters as the DIR/params files
 * (the files of `etraced run`). Returns the exit code. */
int offline_export_checkpoint_main(int argc, char **argv);

struct engine;
struct Etrace__RecordEvent;

/* What a caller of offline_replay sees of a recording as it is replayed. */
struct offline_replay_hooks {
    void *ctx; /* passed to the hooks */
    /* Each event as read, before it is applied; eng is NULL for the first (the snapshot
     * the engine is restored from). A non-zero return stops the replay (a failure). */
    int (*on_event)(void *ctx, const struct Etrace__RecordEvent *ev, struct engine *eng);
    /* After each tick replayed (eng has its outputs). Non-zero stops (a failure). */
    int (*on_tick)(void *ctx, struct engine *eng);
    int no_ticks; /* apply the events but run no tick (only the events are wanted) */
    int threads;  /* tick threads (engine.threads; 0: 1): the same bits for any count */
};

/* Replays recording FILE (DESIGN §5.4: the snapshot, then each event applied before its
 * tick, the ticks in between run) through an engine here. With out_dir, writes
 * out_dir/outputs/NAME.npy, loss.npy and params/ (`etraced run --replay`); NULL writes
 * nothing. hooks may be NULL. Errors go to stderr. Returns 0 or 1. */
int offline_replay(const char *file, const char *out_dir, const struct offline_replay_hooks *h);

#endif
