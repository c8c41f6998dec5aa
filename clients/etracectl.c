/* etracectl: the command-line client of etraced (DESIGN §7). Client layer.
 * Exit codes: 0 ok; 1 an error reply or invalid input; 2 the daemon did not answer;
 * 64 usage. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_json.h"
#include "ctl_top.h"
#include "etrace_client.h"

enum { EXIT_REPLY = 1, EXIT_NO_ANSWER = 2, EXIT_USAGE = 64, MAX_ITEMS = 64 };

struct opts {
    const char *ep[4]; /* input, output, control, stats */
    int timeout_ms;
    int json;
    const char *curve[3]; /* server public, client public, client secret (Z85), or NULLs */
};

static const char *const ep_names[4] = {"input", "output", "control", "stats"};

static int
usage(FILE *f)
{
    fprintf(f,
            "usage: etracectl [--control EP] [--input EP] [--stats EP] [--output EP]\n"
            "                 [--config FILE] [--timeout MS] [--json]\n"
            "                 [--curve-server KEY --curve-keys FILE] COMMAND\n"
            "commands:\n"
            "  status                      model, clock, period, tick, paused, learning, lr,\n"
            "                              uptime, pid\n"
            "  stats [--watch [--count N]] the latest Stats, or each one as published\n"
            "  pause | resume              stop / restart ticking (state kept)\n"
            "  learn on|off                switch learning\n"
            "  lr VALUE                    set the learning rate\n"
            "  reset [states|traces|all]   reset (default all)\n"
            "  step [--input NAME=v1,...] [--spikes NAME=i1,...] [--target R=v1,...|CLASS]\n"
            "       [--reward X [--terminal]] [--reset]   one lockstep tick; prints the Outputs\n"
            "  send [--input NAME=v1,...] [--spikes NAME=i1,...]   one Input\n"
            "  target READOUT=v1,...|CLASS one target (a bare integer is a class index)\n"
            "  reward X [--terminal]       one reward (--terminal: its tick ends the episode)\n"
            "  export DIR                  the weights, written as DIR/params/*.npy\n"
            "  load FILE [--keep-weights] [--keep-state]   hot swap: FILE and the .npy files\n"
            "                              it names are read here and sent\n"
            "  checkpoint [NAME]           write NAME.ckpt now in checkpoint.dir (bare NAME)\n"
            "  restore NAME                restore NAME.ckpt while running\n"
            "  record start NAME | record stop   record inputs and events for replay\n"
            "  replay FILE --out DIR       replay a recording (read here) through a lockstep\n"
            "                              daemon; writes DIR/outputs, loss.npy, params/\n"
            "  keygen                      print a new CURVE key pair (local)\n"
            "  shutdown                    stop the daemon (after a checkpoint when periodic\n"
            "                              checkpoints are on)\n"
            "  top                         a live view of the stats (q quits)\n"
            "  help                        this text (also --help); --version the version\n"
            "exit codes: 0 ok, 1 error reply or invalid input, 2 no answer, 64 usage\n"
            "see etracectl(1)\n");
    return EXIT_USAGE;
}

/* A usage error: one line naming what is wrong, exit status 64. */
static int
usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "etracectl: %s%s%s%s (etracectl --help)\n", what, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static int
rc_exit(int rc)
{
    return rc == ETRACE_OK ? 0 : rc == ETRACE_ETIMEOUT ? EXIT_NO_ANSWER : EXIT_REPLY;
}

/* ---- --config: the endpoints: section of a daemon config ------------------------------ */

static void
trim(char *s)
{
    char *h = strchr(s, '#');
    if (h)
        *h = '\0';
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
}

static void
set_ep(char **store, const char *key, const char *val)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(key, ep_names[i]) && !store[i])
            store[i] = strdup(val);
}

/* Reads endpoints.{input,output,control,stats} from a daemon config (block or flow style). */
static int
read_config_endpoints(const char *path, char **store)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int in_block = 0;
    if (!f) {
        fprintf(stderr, "etracectl: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "endpoints:", 10)) {
            char *rest = line + 10, *open = strchr(rest, '{');
            in_block = !open;
            if (open) {
                char *close = strchr(open, '}');
                if (close)
                    *close = '\0';
                for (char *tok = strtok(open + 1, ","); tok; tok = strtok(NULL, ",")) {
                    char *colon = strchr(tok, ':');
                    if (!colon)
                        continue;
                    *colon = '\0';
                    char *k = tok, *v = colon + 1;
                    while (*k == ' ')
                        k++;
                    while (*v == ' ')
                        v++;
                    trim(k);
                    trim(v);
                    set_ep(store, k, v);
                }
            }
            continue;
        }
        if (in_block) {
            if (line[0] != ' ' && line[0] != '\t' && line[0] != '\n' && line[0] != '#') {
                in_block = 0;
                continue;
            }
            char *k = line;
            while (*k == ' ' || *k == '\t')
                k++;
            char *colon = strchr(k, ':');
            if (!colon)
                continue;
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            trim(k);
            trim(v);
            set_ep(store, k, v);
        }
    }
    fclose(f);
    return 0;
}

/* ---- printing ------------------------------------------------------------------------- */

static void
print_status(const Etrace__Status *s)
{
    printf("model        %s (hash %016llx)\n", s->model_name, (unsigned long long)s->model_hash);
    printf("clock        %s\n", s->clock == ETRACE__STATUS__CLOCK__LOCKSTEP ? "lockstep" : "timer");
    if (s->period_ns != s->dt_ns)
        printf("period       %.3f us (dt %.3f us)\n", (double)s->period_ns / 1e3,
               (double)s->dt_ns / 1e3);
    else
        printf("period       %.3f us\n", (double)s->period_ns / 1e3);
    printf("tick         %llu\n", (unsigned long long)s->tick);
    printf("period_index %llu\n", (unsigned long long)s->period_index);
    printf("state        %s\n", s->paused ? "paused" : "running");
    printf("learning     %s%s\n", s->learning ? "on" : "off",
           s->has_learning ? "" : " (the model has no learning section)");
    printf("lr           %g\n", s->lr);
    printf("uptime       %.3f s\n", (double)s->uptime_ns / 1e9);
    printf("pid          %u\n", s->pid);
    if (s->version && *s->version)
        printf("version      %s\n", s->version);
    for (size_t i = 0; i < s->n_inputs; i++)
        printf("input        %s [%u] %s\n", s->inputs[i]->name, s->inputs[i]->size,
               s->inputs[i]->spikes ? "spikes" : "analog");
    for (size_t i = 0; i < s->n_readouts; i++) {
        printf("readout      %s [%u] %s", s->readouts[i]->name, s->readouts[i]->size,
               s->readouts[i]->kind);
        if (s->readouts[i]->action_size)
            printf(", action [%u]", s->readouts[i]->action_size);
        printf("\n");
    }
}

static void
print_pct(const char *name, const Etrace__Percentiles *p)
{
    if (!p) {
        printf("%-10s (none)\n", name);
        return;
    }
    printf("%-10s n %llu  p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n", name,
           (unsigned long long)p->count, (double)p->p50_ns / 1e3, (double)p->p99_ns / 1e3,
           (double)p->p999_ns / 1e3, (double)p->max_ns / 1e3);
}

static void
print_stats(const Etrace__Stats *s)
{
    printf("stats #%llu  tick %llu  period_index %llu  period %.1f us  %s\n",
           (unsigned long long)s->seq, (unsigned long long)s->tick,
           (unsigned long long)s->period_index, (double)s->period_ns / 1e3,
           s->paused ? "paused" : "running");
    print_pct("tick time", s->tick_time);
    print_pct("lateness", s->lateness);
    printf("overruns %llu  skipped %llu  invalid_ticks %llu\n", (unsigned long long)s->overruns,
           (unsigned long long)s->skipped, (unsigned long long)s->invalid_ticks);
    printf("learning %s  lr %g  loss_avg %g  reward_avg %g  steps %llu  updates_refused %llu  "
           "state_resets %llu\n",
           s->learning ? "on" : "off", s->lr, s->loss_avg, s->reward_avg,
           (unsigned long long)s->optimizer_steps, (unsigned long long)s->updates_refused,
           (unsigned long long)s->state_resets);
    printf("swaps %llu  last_swap_gap %.1f us  curve_denials %llu\n", (unsigned long long)s->swaps,
           (double)s->last_swap_gap_ns / 1e3, (unsigned long long)s->curve_denials);
    printf("daemon %s  uptime %.1f s  cpu %.2f s  rss %.1f MiB  ticks_total %llu  output_wakes "
           "%llu\n",
           s->version && *s->version ? s->version : "?", (double)s->uptime_ns / 1e9, s->cpu_seconds,
           (double)s->rss_bytes / 1048576.0, (unsigned long long)s->ticks_total,
           (unsigned long long)s->output_wakes);
    for (size_t i = 0; i < s->n_sockets; i++) {
        const Etrace__SocketStats *k = s->sockets[i];
        printf("socket %-8s accepted %llu  undecodable %llu  wrong_size %llu  unknown_name %llu"
               "  non_finite %llu  oversized %llu  unknown_command %llu  bad_argument %llu"
               "  peer_dropped %llu  dropped %llu  curve_denied %llu  over_ring %llu"
               "  connections %llu  connections_refused %llu  handler_max %.3f ms\n",
               k->name, (unsigned long long)k->accepted, (unsigned long long)k->undecodable,
               (unsigned long long)k->wrong_size, (unsigned long long)k->unknown_name,
               (unsigned long long)k->non_finite, (unsigned long long)k->oversized,
               (unsigned long long)k->unknown_command, (unsigned long long)k->bad_argument,
               (unsigned long long)k->peer_dropped, (unsigned long long)k->dropped,
               (unsigned long long)k->curve_denied, (unsigned long long)k->over_ring,
               (unsigned long long)k->connections, (unsigned long long)k->connections_refused,
               (double)k->handler_max_ns / 1e6);
    }
    for (size_t i = 0; i < s->n_inputs; i++)
        printf("input %-10s frames %llu  superseded %llu  dropped_overflow %llu  stale_ticks "
               "%llu\n",
               s->inputs[i]->name, (unsigned long long)s->inputs[i]->frames,
               (unsigned long long)s->inputs[i]->superseded,
               (unsigned long long)s->inputs[i]->dropped_overflow,
               (unsigned long long)s->inputs[i]->stale_ticks);
    for (size_t i = 0; i < s->n_readouts; i++)
        printf("readout %-8s targets %llu  superseded %llu\n", s->readouts[i]->name,
               (unsigned long long)s->readouts[i]->targets,
               (unsigned long long)s->readouts[i]->superseded);
    for (size_t i = 0; i < s->n_projections; i++) {
        const Etrace__ProjectionStats *p = s->projections[i];
        printf("proj %-12s |W| %.6g  |W-W0| %.6g  |dW| %.6g  |grad| %.6g  |trace| %.6g\n", p->name,
               p->w_norm, p->drift_norm, p->delta_norm, p->grad_norm, p->trace_norm);
    }
    for (size_t i = 0; i < s->n_cells; i++)
        printf("cell %-12s rate %.6g\n", s->cells[i]->name, s->cells[i]->rate);
}

static void
print_output(const Etrace__Output *o)
{
    printf("%s tick %llu%s:", o->readout, (unsigned long long)o->tick, o->valid ? "" : " INVALID");
    for (size_t i = 0; i < o->n_values; i++)
        printf(" %.9g", (double)o->values[i]);
    if (o->n_action) {
        printf("  action:");
        for (size_t i = 0; i < o->n_action; i++)
            printf(" %.9g", (double)o->action[i]);
    }
    printf("  loss %.9g\n", o->loss);
}

/* Prints a Reply: JSON, or the text of its result. */
static void
print_reply(const struct opts *o, const Etrace__Reply *r)
{
    if (!r)
        return;
    if (o->json) {
        ctl_json_print(stdout, &r->base);
        return;
    }
    switch (r->result_case) {
    case ETRACE__REPLY__RESULT_STATUS:
        print_status(r->status);
        break;
    case ETRACE__REPLY__RESULT_STATS:
        print_stats(r->stats);
        break;
    case ETRACE__REPLY__RESULT_OP:
        if (r->op->name && *r->op->name)
            printf("name         %s\n", r->op->name);
        if (r->op->model_name && *r->op->model_name)
            printf("model        %s (hash %016llx)\n", r->op->model_name,
                   (unsigned long long)r->op->model_hash);
        printf("tick         %llu\n", (unsigned long long)r->op->tick);
        if (r->op->bytes)
            printf("bytes        %llu\n", (unsigned long long)r->op->bytes);
        if (r->op->events)
            printf("events       %llu\n", (unsigned long long)r->op->events);
        if (r->op->swap_gap_ns)
            printf("swap gap     %.1f us\n", (double)r->op->swap_gap_ns / 1e3);
        break;
    case ETRACE__REPLY__RESULT_STEP:
        for (size_t i = 0; i < r->step->n_outputs; i++)
            print_output(r->step->outputs[i]);
        break;
    default:
        break;
    }
}

/* ---- arguments ------------------------------------------------------------------------- */

/* Parses "v1,v2,..." into floats (at most max). Returns the count, or -1. */
static long
parse_floats(const char *s, float *out, long max)
{
    long n = 0;
    const char *p = s;
    if (!*p)
        return 0;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || n >= max)
            return -1;
        out[n++] = (float)v;
        if (*end == '\0')
            return n;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

static long
parse_ints(const char *s, int32_t *out, long max)
{
    long n = 0;
    const char *p = s;
    if (!*p)
        return 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || n >= max || v < INT32_MIN || v > INT32_MAX)
            return -1;
        out[n++] = (int32_t)v;
        if (*end == '\0')
            return n;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

static int
is_class_text(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* An Input assembled from command-line items. */
struct input_build {
    Etrace__Input in;
    Etrace__Frame frames[MAX_ITEMS], *frames_p[MAX_ITEMS];
    Etrace__Signal signals[MAX_ITEMS], *signals_p[MAX_ITEMS];
    Etrace__Signal__Target targets[MAX_ITEMS];
    void *bufs[2 * MAX_ITEMS];
    int n_bufs;
};

static void
build_init(struct input_build *b)
{
    memset(b, 0, sizeof(*b));
    etrace__input__init(&b->in);
    b->in.frames = b->frames_p;
    b->in.signals = b->signals_p;
}

static void
build_fini(struct input_build *b)
{
    for (int i = 0; i < b->n_bufs; i++)
        free(b->bufs[i]);
}

/* NAME=v1,... -> name (in place) and the values text. */
static char *
split_eq(char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return NULL;
    *eq = '\0';
    return eq + 1;
}

static int
add_frame(struct input_build *b, char *arg, int spikes)
{
    char *vals = split_eq(arg);
    if (!vals || b->in.n_frames >= MAX_ITEMS)
        return -1;
    size_t max = strlen(vals) / 2 + 2;
    Etrace__Frame *f = &b->frames[b->in.n_frames];
    etrace__frame__init(f);
    f->name = arg;
    void *buf = malloc(max * 4);
    if (!buf)
        return -1;
    b->bufs[b->n_bufs++] = buf;
    long n = spikes ? parse_ints(vals, buf, (long)max) : parse_floats(vals, buf, (long)max);
    if (n < 0)
        return -1;
    if (spikes) {
        f->spikes = buf;
        f->n_spikes = (size_t)n;
    } else {
        f->values = buf;
        f->n_values = (size_t)n;
    }
    b->frames_p[b->in.n_frames++] = f;
    return 0;
}

static int
add_target(struct input_build *b, char *arg)
{
    char *vals = split_eq(arg);
    if (!vals || b->in.n_signals >= MAX_ITEMS)
        return -1;
    Etrace__Signal *s = &b->signals[b->in.n_signals];
    etrace__signal__init(s);
    s->readout = arg;
    if (is_class_text(vals)) {
        s->kind_case = ETRACE__SIGNAL__KIND_CLASS_INDEX;
        s->class_index = atoi(vals);
    } else {
        size_t max = strlen(vals) / 2 + 2;
        float *buf = malloc(max * sizeof(float));
        if (!buf)
            return -1;
        b->bufs[b->n_bufs++] = buf;
        long n = parse_floats(vals, buf, (long)max);
        if (n < 0)
            return -1;
        Etrace__Signal__Target *t = &b->targets[b->in.n_signals];
        etrace__signal__target__init(t);
        t->values = buf;
        t->n_values = (size_t)n;
        s->kind_case = ETRACE__SIGNAL__KIND_TARGET;
        s->target = t;
    }
    b->signals_p[b->in.n_signals++] = s;
    return 0;
}

static int
add_reward(struct input_build *b, const char *text)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || b->in.n_signals >= MAX_ITEMS)
        return -1;
    Etrace__Signal *s = &b->signals[b->in.n_signals];
    etrace__signal__init(s);
    s->kind_case = ETRACE__SIGNAL__KIND_REWARD;
    s->reward = (float)v;
    b->signals_p[b->in.n_signals++] = s;
    return 0;
}

/* --terminal: flags the last reward of b, or adds a reward of 0 with the flag. */
static int
mark_terminal(struct input_build *b)
{
    for (size_t i = b->in.n_signals; i-- > 0;)
        if (b->signals[i].kind_case == ETRACE__SIGNAL__KIND_REWARD) {
            b->signals[i].terminal = 1;
            return 0;
        }
    if (add_reward(b, "0"))
        return -1;
    b->signals[b->in.n_signals - 1].terminal = 1;
    return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */

static int
finish(const struct opts *o, etrace_client_t *c, int rc, Etrace__Reply **rp)
{
    Etrace__Reply *r = *rp; /* read after the request ran: rp, not *rp, is the argument */
    if (rc == ETRACE_OK)
        print_reply(o, r);
    else if (o->json && r)
        ctl_json_print(stdout, &r->base);
    if (rc != ETRACE_OK)
        fprintf(stderr, "etracectl: %s\n", etrace_client_error(c));
    etrace_reply_free(r);
    return rc_exit(rc);
}

static int
cmd_stats_watch(const struct opts *o, long count)
{
    etrace_sub_t *s =
        o->curve[0] ? etrace_sub_new_curve(o->ep[3], "stats", o->curve[0], o->curve[1], o->curve[2])
                    : etrace_sub_new(o->ep[3], "stats");
    int rc = 0;
    if (!s) {
        fprintf(stderr, "etracectl: cannot subscribe to the stats socket\n");
        return EXIT_REPLY;
    }
    for (long n = 0; count <= 0 || n < count; n++) {
        Etrace__Stats *st = NULL;
        int r = etrace_sub_recv_stats(s, o->timeout_ms > 0 ? 3 * o->timeout_ms : 15000, &st);
        if (r == ETRACE_ETIMEOUT) {
            fprintf(stderr, "etracectl: no Stats from the daemon\n");
            rc = EXIT_NO_ANSWER;
            break;
        }
        if (r) {
            fprintf(stderr, "etracectl: a stats message was not a Stats\n");
            continue;
        }
        if (o->json) {
            /* The shape of `stats`: a Reply carrying the Stats. */
            Etrace__Reply wrap = ETRACE__REPLY__INIT;
            wrap.result_case = ETRACE__REPLY__RESULT_STATS;
            wrap.stats = st;
            ctl_json_print(stdout, &wrap.base);
        } else {
            print_stats(st);
            printf("\n");
        }
        fflush(stdout);
        etrace__stats__free_unpacked(st, NULL);
    }
    etrace_sub_free(&s);
    return rc;
}

static const char *const commands[] = {"status", "stats",  "pause",  "resume",     "learn",
                                       "lr",     "reset",  "step",   "send",       "target",
                                       "reward", "export", "load",   "checkpoint", "restore",
                                       "record", "replay", "keygen", "shutdown",   "top"};

static int
run_command(const struct opts *o, etrace_client_t *c, int argc, char **argv)
{
    const char *cmd = argv[0];
    Etrace__Reply *r = NULL;
    int rc = ETRACE_OK;

    if (!strcmp(cmd, "status") && argc == 1)
        return finish(o, c, etrace_status(c, &r), &r);
    if (!strcmp(cmd, "stats")) {
        long count = 0;
        int watch = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--watch"))
                watch = 1;
            else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
                char *end;
                count = strtol(argv[++i], &end, 10);
                if (end == argv[i] || *end || count <= 0)
                    return usage_error("--count takes a positive number, not", argv[i]);
            } else
                return usage_error("stats: unknown or incomplete argument", argv[i]);
        }
        if (watch)
            return cmd_stats_watch(o, count);
        rc = etrace_stats(c, &r);
        return finish(o, c, rc, &r);
    }
    if (!strcmp(cmd, "top") && argc == 1)
        return ctl_top_run(o->ep[3], o->curve[0] ? o->curve : NULL);
    if (!strcmp(cmd, "pause") && argc == 1)
        return finish(o, c, etrace_pause(c, &r), &r);
    if (!strcmp(cmd, "resume") && argc == 1)
        return finish(o, c, etrace_resume(c, &r), &r);
    if (!strcmp(cmd, "shutdown") && argc == 1)
        return finish(o, c, etrace_shutdown(c, &r), &r);
    if (!strcmp(cmd, "learn") && argc == 2) {
        if (strcmp(argv[1], "on") && strcmp(argv[1], "off"))
            return usage_error("learn takes on or off, not", argv[1]);
        rc = etrace_learn(c, !strcmp(argv[1], "on"), &r);
        return finish(o, c, rc, &r);
    }
    if (!strcmp(cmd, "lr") && argc == 2) {
        char *end;
        double lr = strtod(argv[1], &end);
        if (end == argv[1] || *end)
            return usage_error("lr takes a number, not", argv[1]);
        rc = etrace_lr(c, lr, &r);
        return finish(o, c, rc, &r);
    }
    if (!strcmp(cmd, "reset") && argc <= 2) {
        Etrace__Reset__What w = ETRACE__RESET__WHAT__ALL;
        if (argc == 2 && !strcmp(argv[1], "states"))
            w = ETRACE__RESET__WHAT__STATES;
        else if (argc == 2 && !strcmp(argv[1], "traces"))
            w = ETRACE__RESET__WHAT__TRACES;
        else if (argc == 2 && strcmp(argv[1], "all"))
            return usage_error("reset takes states, traces or all, not", argv[1]);
        rc = etrace_reset(c, w, &r);
        return finish(o, c, rc, &r);
    }
    if (!strcmp(cmd, "export") && argc == 2) {
        char err[512];
        rc = etrace_export(c, &r);
        if (rc == ETRACE_OK && r->result_case == ETRACE__REPLY__RESULT_EXPORT) {
            if (etrace_export_write(r->export, argv[1], err, sizeof(err))) {
                fprintf(stderr, "etracectl: %s\n", err);
                etrace_reply_free(r);
                return EXIT_REPLY;
            }
            if (!o->json)
                printf("%zu tensors as of tick %llu written to %s/params\n", r->export->n_tensors,
                       (unsigned long long)r->export->tick, argv[1]);
        }
        return finish(o, c, rc, &r);
    }
    if (!strcmp(cmd, "load") && argc >= 2) {
        int kw = 0, ks = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--keep-weights"))
                kw = 1;
            else if (!strcmp(argv[i], "--keep-state"))
                ks = 1;
            else
                return usage_error("load: unknown argument", argv[i]);
        }
        return finish(o, c, etrace_load(c, argv[1], kw, ks, &r), &r);
    }
    if (!strcmp(cmd, "checkpoint") && argc <= 2)
        return finish(o, c, etrace_checkpoint(c, argc == 2 ? argv[1] : NULL, &r), &r);
    if (!strcmp(cmd, "restore") && argc == 2)
        return finish(o, c, etrace_restore(c, argv[1], &r), &r);
    if (!strcmp(cmd, "replay") && argc == 4 && !strcmp(argv[2], "--out")) {
        struct etrace_replay_summary sum;
        rc = etrace_replay(c, argv[1], argv[3], &sum);
        if (rc != ETRACE_OK) {
            fprintf(stderr, "etracectl: replay: %s\n", etrace_client_error(c));
            return rc_exit(rc);
        }
        if (!sum.has_end)
            fprintf(stderr,
                    "etracectl: replay: %s has no end record; replayed up to the "
                    "last whole event\n",
                    argv[1]);
        printf("replayed %s: %llu events, ticks %llu to %llu (%llu ticks); wrote %s/\n", argv[1],
               (unsigned long long)sum.events, (unsigned long long)sum.first_tick,
               (unsigned long long)sum.last_tick, (unsigned long long)sum.ticks, argv[3]);
        return EXIT_SUCCESS;
    }
    if (!strcmp(cmd, "record") && argc == 3 && !strcmp(argv[1], "start"))
        return finish(o, c, etrace_record_start(c, argv[2], &r), &r);
    if (!strcmp(cmd, "record") && argc == 2 && !strcmp(argv[1], "stop"))
        return finish(o, c, etrace_record_stop(c, &r), &r);
    if (!strcmp(cmd, "step") || !strcmp(cmd, "send") || !strcmp(cmd, "target") ||
        !strcmp(cmd, "reward")) {
        struct input_build b;
        int reset = 0, bad = 0, terminal = 0;
        build_init(&b);
        if (!strcmp(cmd, "target")) {
            bad = argc != 2 || add_target(&b, argv[1]);
        } else if (!strcmp(cmd, "reward")) {
            terminal = argc == 3 && !strcmp(argv[2], "--terminal");
            bad = (argc != 2 && !terminal) || add_reward(&b, argv[1]);
        } else {
            for (int i = 1; i < argc && !bad; i++) {
                if (!strcmp(argv[i], "--input") && i + 1 < argc)
                    bad = add_frame(&b, argv[++i], 0);
                else if (!strcmp(argv[i], "--spikes") && i + 1 < argc)
                    bad = add_frame(&b, argv[++i], 1);
                else if (!strcmp(cmd, "step") && !strcmp(argv[i], "--target") && i + 1 < argc)
                    bad = add_target(&b, argv[++i]);
                else if (!strcmp(cmd, "step") && !strcmp(argv[i], "--reward") && i + 1 < argc)
                    bad = add_reward(&b, argv[++i]);
                else if (!strcmp(cmd, "step") && !strcmp(argv[i], "--reset"))
                    reset = 1;
                else if (!strcmp(cmd, "step") && !strcmp(argv[i], "--terminal"))
                    terminal = 1;
                else
                    bad = 1;
            }
            if (!strcmp(cmd, "send") && !b.in.n_frames)
                bad = 1;
        }
        if (!bad && terminal)
            bad = mark_terminal(&b);
        if (bad) {
            build_fini(&b);
            return usage_error("bad or missing arguments to", cmd);
        }
        if (!strcmp(cmd, "step")) {
            rc = etrace_step(c, &b.in, reset, &r);
            build_fini(&b);
            return finish(o, c, rc, &r);
        }
        /* Refused here, with the size the model expects, rather than only counted as a
         * rejection in the daemon's stats. */
        rc = etrace_check_input(c, &b.in);
        if (rc == ETRACE_OK)
            rc = etrace_send_input(c, &b.in);
        build_fini(&b);
        if (rc)
            fprintf(stderr, "etracectl: %s\n", etrace_client_error(c));
        return rc_exit(rc);
    }
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (!strcmp(cmd, commands[k]))
            return usage_error("wrong arguments to", cmd);
    return usage_error("unknown command", cmd);
}

int
main(int argc, char **argv)
{
    struct opts o = {{NULL, NULL, NULL, NULL}, 5000, 0, {NULL, NULL, NULL}};
    char *from_cfg[4] = {NULL, NULL, NULL, NULL};
    const char *cfg = NULL, *curve_server = NULL, *curve_keys = NULL;
    int i = 1, rc;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        int found = 0;
        for (int k = 0; k < 4; k++) {
            char flag[16];
            snprintf(flag, sizeof(flag), "--%s", ep_names[k]);
            if (!strcmp(a, flag) && i + 1 < argc) {
                o.ep[k] = argv[++i];
                found = 1;
            }
        }
        if (found)
            continue;
        if (!strcmp(a, "--config") && i + 1 < argc)
            cfg = argv[++i];
        else if (!strcmp(a, "--curve-server") && i + 1 < argc)
            curve_server = argv[++i];
        else if (!strcmp(a, "--curve-keys") && i + 1 < argc)
            curve_keys = argv[++i];
        else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            char *end;
            long ms = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || ms <= 0 || ms > 86400000)
                return usage_error("--timeout takes milliseconds (1 to 86400000), not", argv[i]);
            o.timeout_ms = (int)ms;
        } else if (!strcmp(a, "--json"))
            o.json = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
            printf("etracectl %s\n", ETRACE_VERSION);
            return 0;
        } else
            return usage_error("unknown or incomplete option", a);
    }
    if (i >= argc)
        return usage_error("give a COMMAND", NULL);
    if (o.timeout_ms <= 0)
        return usage_error("--timeout wants a positive number of milliseconds", NULL);
    if (!curve_server != !curve_keys)
        return usage_error("--curve-server and --curve-keys go together", NULL);
    if (!strcmp(argv[i], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[i], "keygen") && i + 1 == argc) {
        char pub[41], sec[41];
        if (etrace_curve_keypair(pub, sec)) {
            fprintf(stderr, "etracectl: this libzmq has no CURVE support\n");
            return EXIT_REPLY;
        }
        printf("public: %s\nsecret: %s\n", pub, sec);
        return 0;
    }
    if (cfg) {
        if (read_config_endpoints(cfg, from_cfg))
            return EXIT_REPLY;
        for (int k = 0; k < 4; k++)
            if (!o.ep[k])
                o.ep[k] = from_cfg[k];
    }
    etrace_client_t *c = NULL;
    if (curve_keys) {
        /* The key file is what `etracectl keygen` prints: "public: KEY" and "secret: KEY". */
        static char pub[64], sec[64]; /* outlive this block: o.curve points at them */
        char line[256];
        FILE *kf = fopen(curve_keys, "r");
        if (!kf) {
            fprintf(stderr, "etracectl: %s: %s\n", curve_keys, strerror(errno));
            return EXIT_REPLY;
        }
        while (fgets(line, sizeof line, kf)) {
            if (!strncmp(line, "public:", 7))
                sscanf(line + 7, " %40s", pub);
            else if (!strncmp(line, "secret:", 7))
                sscanf(line + 7, " %40s", sec);
        }
        fclose(kf);
        o.curve[0] = curve_server;
        o.curve[1] = pub;
        o.curve[2] = sec;
        c = etrace_client_new_curve(o.ep[2], o.ep[0], o.timeout_ms, curve_server, pub, sec);
        if (!c) {
            fprintf(stderr,
                    "etracectl: %s: no Z85 public/secret key pair, or a bad "
                    "--curve-server key\n",
                    curve_keys);
            return EXIT_REPLY;
        }
    } else
        c = etrace_client_new(o.ep[2], o.ep[0], o.timeout_ms);
    if (!c) {
        fprintf(stderr, "etracectl: out of memory\n");
        return EXIT_REPLY;
    }
    rc = run_command(&o, c, argc - i, argv + i);
    etrace_client_free(&c);
    for (int k = 0; k < 4; k++)
        free(from_cfg[k]);
    return rc;
}
