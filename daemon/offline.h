/* The offline subcommands of etraced (DESIGN §6): compile and run. Shell layer: the
 * engine with files instead of sockets. Called from main() with argv[0] the subcommand. */
#ifndef ETRACE_OFFLINE_H
#define ETRACE_OFFLINE_H

/* `etraced compile MODEL [--expand] [--json]`. Returns the exit code (0, 1, 64). */
int offline_compile_main(int argc, char **argv);

/* `etraced run MODEL --input NAME=F.npy ... --out DIR [...]`. Returns the exit code. */
int offline_run_main(int argc, char **argv);

/* `etraced export-checkpoint FILE DIR`: the checkpoint's parameters as the DIR/params files
 * (the files of `etraced run`). Returns the exit code. */
int offline_export_checkpoint_main(int argc, char **argv);

#endif
