/* etraced: the daemon, and its offline subcommands (compile, run). */
#include <stdio.h>
#include <string.h>

#include "offline.h"

static int
usage(void)
{
    fprintf(stderr,
            "usage: etraced compile MODEL [--expand] [--json]\n"
            "       etraced run MODEL --input NAME=F.npy ... --out DIR [--target R=F.npy]\n"
            "                   [--reward F.npy] [--ticks N] [--learn on|off|accumulate] [--align]\n");
    return 64;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "compile") == 0)
        return offline_compile_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return offline_run_main(argc - 1, argv + 1);
    return usage();
}
