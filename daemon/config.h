/* The daemon's settings (DESIGN §5.6): one table of rows (name, type, default, bounds,
 * reloadable), read from YAML with libcyaml. Daemon layer. Every function runs on the
 * thread that owns the struct config (start-up, then the loop thread for SIGHUP). */
#ifndef ETRACE_CONFIG_H
#define ETRACE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum config_clock { CONFIG_CLOCK_TIMER, CONFIG_CLOCK_LOCKSTEP };
enum config_on_stale { CONFIG_ON_STALE_HOLD, CONFIG_ON_STALE_ZERO };
enum config_endpoint {
    CONFIG_EP_INPUT,
    CONFIG_EP_OUTPUT,
    CONFIG_EP_CONTROL,
    CONFIG_EP_STATS,
    CONFIG_N_EP
};

/* inputs.<name>: per model input. */
struct config_input {
    char *name;                    /* the model input it applies to, owned */
    int64_t max_age_ms;            /* 0: never stale */
    enum config_on_stale on_stale; /* what a stale input reads */
    int line;                      /* where it is in the file, for messages */
};

/* Every setting, resolved: defaults applied, bounds checked. Strings are owned. */
struct config {
    char *path;                     /* the config file, or NULL for --model alone */
    char *model;                    /* model file (relative to the config file's dir) */
    enum config_clock clock;        /* timer or lockstep */
    int64_t period_us;              /* 0: the model's dt */
    int64_t stats_period_ms;        /* stats every ... */
    char *endpoints[CONFIG_N_EP];   /* NULL: ipc://RUN/<name> */
    int64_t max_msg_bytes;          /* ZMQ_MAXMSGSIZE of the input and control sockets */
    int64_t limit_input_bytes;      /* largest Input accepted */
    int64_t limit_control_bytes;    /* largest Request accepted */
    int64_t limit_connections;      /* connections kept per input/control endpoint */
    int64_t limit_subscribers;      /* subscribers kept per output/stats endpoint */
    int64_t limit_subscriber_queue; /* messages queued per subscriber (ZMQ_SNDHWM) */
    char *checkpoint_dir;           /* NULL: the state directory */
    int64_t checkpoint_every_s;     /* 0: off */
    int64_t checkpoint_keep;        /* newest checkpoints kept */
    int checkpoint_resume;          /* start from the newest checkpoint */
    int64_t snapshot_slice_bytes;   /* bytes copied per tick for a snapshot */
    int64_t rt_priority;            /* SCHED_FIFO priority of the tick thread; 0 off */
    int64_t rt_cpu;                 /* tick thread CPU; -1: the last if priority > 0 */
    int rt_mlockall;                /* lock memory (if RLIMIT_MEMLOCK permits) */
    char *curve_server_secret_file; /* NULL: no CURVE */
    char **curve_allow;             /* [n_curve_allow] Z85 client public keys */
    int n_curve_allow;
    int security_allow_plaintext_tcp; /* tcp endpoints without CURVE are allowed (warned) */
    char *security_socket_group;      /* NULL: ipc sockets 0600; else 0660 and this group */
    int64_t publish_every_us;         /* timer: outputs handed to the loop at least this often */
    int64_t engine_threads;           /* tick threads (the tick thread and its workers) */
    struct config_input *inputs;      /* [n_inputs] */
    int n_inputs;
};

enum config_type { CONFIG_INT, CONFIG_BOOL, CONFIG_STR, CONFIG_ENUM, CONFIG_STRLIST };

/* One row of the settings table. */
struct config_row {
    const char *name; /* dotted key, e.g. "limits.input_bytes" */
    enum config_type type;
    int64_t def;              /* INT/BOOL/ENUM default (STR defaults are NULL) */
    int64_t min, max;         /* INT bounds, inclusive */
    int reloadable;           /* SIGHUP applies it */
    size_t off;               /* offset of the value in struct config */
    size_t file_off;          /* offset of its pointer in config.c's loaded-file struct */
    const char *const *names; /* ENUM: value names, NULL-terminated */
    const char *doc;          /* one line for the example config and README */
};

/* The table (static storage) and its length. */
const struct config_row *config_rows(int *n_rows);

/* Fills c with every default (model = model_path, copied; may be NULL). Returns 0, or -1
 * when out of memory. */
int config_init_defaults(struct config *c, const char *model_path);

/* Reads YAML file `path` into c (defaults for what it does not set). Returns 0, or -1
 * with "FILE:LINE: key: message" in err (an unknown key, a wrong type, a value out of
 * bounds, an unreadable file); c is then left empty (config_fini is still safe). */
int config_load(struct config *c, const char *path, char *err, size_t err_len);

/* Same, from text in memory (path names it in messages). */
int config_load_text(struct config *c, const char *text, size_t len, const char *path, char *err,
                     size_t err_len);

/* Frees every owned string; accepts a zeroed struct; leaves it zeroed. */
void config_fini(struct config *c);

/* Compares the rows of old and new: for each row that differs, calls
 * changed(ctx, row, is_applied): applied when reloadable, otherwise it needs a restart.
 * inputs.* rows are compared as one row "inputs". Returns the number of differences. */
int config_diff(const struct config *old_c, const struct config *new_c,
                void (*changed)(void *ctx, const char *name, int reloadable), void *ctx);

/* The settings of model input `name`, or NULL when the config has none. */
const struct config_input *config_find_input(const struct config *c, const char *name);

#endif
