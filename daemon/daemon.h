/* The daemon's start, loop and stop: the top of the daemon layer. It owns the loop, the
 * tick thread's result and output rings' draining and the dispatch of results; control.c
 * answers clients, ops.c runs the long operations (see root.h for the state). Modules start
 * in dependency order — config, model, layout, ticker, loop, sockets, tick thread — and
 * stop in exact reverse. */
#ifndef ETRACE_DAEMON_H
#define ETRACE_DAEMON_H

/* Runs the daemon: `etraced [--config FILE] [--model FILE]`. Returns the exit code (0; 1
 * invalid model or config; 64 usage). Called by main() for every invocation that is not
 * an offline subcommand. */
int daemon_main(int argc, char **argv);

#endif
