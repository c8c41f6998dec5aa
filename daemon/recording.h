/* `etraced recording info|export`: a recording (DESIGN §5.4) as data, read through the
 * replay of offline.c (offline_replay). Shell layer, offline. */
#ifndef ETRACE_RECORDING_H
#define ETRACE_RECORDING_H

/* The help text of `etraced recording`. */
extern const char recording_help[];

/* `etraced recording info FILE` and `etraced recording export FILE --out DIR
 * [--format npy|mcap]`; argv[0] is "recording". Returns the exit code (0, 1, 64). */
int recording_main(int argc, char **argv);

#endif
