/* etraced: the daemon, and its offline subcommands (compile, run, export-checkpoint,
 * recording), with their help texts. */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "offline.h"
#include "recording.h"

static const char help_daemon[] =
    "usage: etraced --model FILE        run the daemon with default settings\n"
    "       etraced --config FILE       run with a config file (etraced.yaml(5))\n"
    "       etraced COMMAND [--help]    offline use of the engine:\n"
    "  compile MODEL [--expand] [--json]          check a model, print its report\n"
    "  run MODEL --input NAME=F.npy ... --out DIR run a model over .npy files\n"
    "  run --replay FILE --out DIR                replay a recording offline\n"
    "  export-checkpoint FILE DIR                 a checkpoint's weights as .npy files\n"
    "  recording info FILE                        what a recording holds\n"
    "  recording export FILE --out DIR [--format npy|mcap]   its streams as data\n"
    "  help [COMMAND]                             this text, or a command's\n"
    "options: --version, --help\n"
    "signals: SIGINT/SIGTERM stop, SIGHUP re-reads the config file\n"
    "see etraced(8), etraced.yaml(5), etraced-model(5)\n";

static const char help_compile[] =
    "usage: etraced compile MODEL [--expand] [--json]\n"
    "  Loads and compiles MODEL (etraced-model(5)); prints its inputs, cells, projections,\n"
    "  readouts, learning rule and memory, or the errors with file:line.\n"
    "  --expand   also print each cell's equations as compiled\n"
    "  --json     the report as one JSON object\n"
    "exit codes: 0 ok, 1 the model is refused, 64 usage\n";

static const char help_run[] =
    "usage: etraced run MODEL --input NAME=F.npy ... [--target READOUT=F.npy ...]\n"
    "                  [--reward F.npy] [--ticks N] [--learn on|off|accumulate] [--align]\n"
    "                  [--threads N] --out DIR\n"
    "       etraced run --replay FILE [--threads N] --out DIR\n"
    "  Runs MODEL tick by tick over the rows of the .npy files ([T, size]; a spikes input\n"
    "  [T, size] of 0/1; a class target [T]; rewards [T]) and writes DIR/outputs/*.npy,\n"
    "  DIR/loss.npy and DIR/params/*.npy; bitwise what a lockstep daemon computes.\n"
    "  --ticks N       run N ticks (default: the files' row count)\n"
    "  --learn MODE    on (default with a learning section), off, accumulate\n"
    "  --align         with accumulate: write the per-tick gradients for alignment checks\n"
    "  --replay FILE   replay a recording (`etracectl record`) instead of .npy files\n"
    "  --threads N     tick threads, 1 to 64 (engine.threads; default 1): same bits\n"
    "exit codes: 0 ok, 1 failure, 64 usage\n";

static const char help_export[] = "usage: etraced export-checkpoint FILE DIR\n"
                                  "  Writes the weights of checkpoint FILE as DIR/params/*.npy.\n"
                                  "exit codes: 0 ok, 1 failure, 64 usage\n";

/* The help of `cmd`, or NULL when there is no such command. */
static const char *
help_of(const char *cmd)
{
    if (!strcmp(cmd, "compile"))
        return help_compile;
    if (!strcmp(cmd, "run"))
        return help_run;
    if (!strcmp(cmd, "export-checkpoint"))
        return help_export;
    if (!strcmp(cmd, "recording"))
        return recording_help;
    if (!strcmp(cmd, "daemon"))
        return help_daemon;
    return NULL;
}

static int
is_help(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf("etraced %s\n", ETRACE_VERSION);
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "help") || is_help(argv[1]))) {
        const char *h = argc >= 3 ? help_of(argv[2]) : help_daemon;
        if (!h) {
            fprintf(stderr, "etraced: no command '%s' (etraced help lists them)\n", argv[2]);
            return 64;
        }
        fputs(h, stdout);
        return 0;
    }
    if (argc >= 3 && argv[1][0] != '-' && help_of(argv[1]) && is_help(argv[2])) {
        fputs(help_of(argv[1]), stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "compile") == 0)
        return offline_compile_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return offline_run_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "export-checkpoint") == 0)
        return offline_export_checkpoint_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "recording") == 0)
        return recording_main(argc - 1, argv + 1);
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "etraced: unknown command '%s' (etraced help lists them)\n", argv[1]);
        return 64;
    }
    /* Everything else is the daemon: `etraced --config FILE`, `etraced --model FILE`. */
    return daemon_main(argc, argv);
}
