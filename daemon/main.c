/* etraced: the daemon, and its offline subcommands (compile, run). */
#include <string.h>

#include "daemon.h"
#include "offline.h"

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "compile") == 0)
        return offline_compile_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return offline_run_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "export-checkpoint") == 0)
        return offline_export_checkpoint_main(argc - 1, argv + 1);
    /* Everything else is the daemon: `etraced --config FILE`, `etraced --model FILE`. */
    return daemon_main(argc, argv);
}
