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

/* The replay of `etraced run --replay`: recording buf[len] (`file` names it in messages)
 * replayed into outputs, loss and parameters under out_dir (NULL: replayed, nothing
 * written). max_ticks > 0 stops with an error at an event past that many ticks (the fuzz
 * target's bound; the command has none). Returns the exit code (0 or 1). */
int offline_replay(const uint8_t *buf, size_t len, const char *file, const char *out_dir,
                   int64_t max_ticks);

/* `etraced export-checkpoint FILE DIR`: the checkpoint's parameters as the DIR/params files
 * (the files of `etraced run`). Returns the exit code. */
int offline_export_checkpoint_main(int argc, char **argv);

#endif
