/* The daemon's start, loop and stop (see daemon.h). */
#include "daemon.h"

#include <signal.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conns.h"
#include "control.h"
#include "curve.h"
#include "decode.h"
#include "ops.h"
#include "log.h"
#include "pending.h"
#include "root.h"
#include "sdnotify.h"
#include "security.h"
#include "stats.h"

static const char *const ep_names[CONFIG_N_EP] = {"input", "output", "control", "stats"};

enum { HOUSEKEEPING_MS = 10, CONTROL_HWM = 64, WAKE_MAX_OUTPUTS = 256 };

/* What libzmq may queue on the input socket over all its connections: limits.input_bytes
 * times the RCVHWM times limits.connections (their values at start). */
#define INPUT_QUEUE_BYTES (256LL << 20)

static void stop_daemon(struct daemon *d);

/* ---- the input socket ----------------------------------------------------------------- */

static void
on_input(struct endpoint *ep, zmq_msg_t *parts, int n_parts)
{
    struct daemon *d = ep->data;
    char err[200];
    size_t bytes;

    if (n_parts != 1) {
        ep->c.rejected[WIRE_REJECT_UNDECODABLE]++;
        return;
    }
    size_t len = zmq_msg_size(&parts[0]);
    if ((int64_t)len > d->cfg.limit_input_bytes) {
        ep->c.rejected[WIRE_REJECT_OVERSIZED]++;
        return;
    }
    /* Pay for the decoding only when the record could reach a tick: the item count bounds
     * the record from below, the budget bounds what the unpack may allocate. */
    size_t max_record = d->tick.in_q.max_record_bytes;
    enum wire_reject why = wire_input_prescan(zmq_msg_data(&parts[0]), len, max_record, NULL);
    if (why != WIRE_OK) {
        ep->c.rejected[why]++;
        return;
    }
    struct decode_budget budget;
    decode_budget_init(&budget, wire_input_budget(len, max_record));
    Etrace__Input *in = etrace__input__unpack(&budget.a, len, zmq_msg_data(&parts[0]));
    if (!in) {
        ep->c.rejected[budget.exceeded ? WIRE_REJECT_OVER_RING : WIRE_REJECT_UNDECODABLE]++;
        return;
    }
    why = wire_input_check(&d->lay, in, &bytes, err, sizeof(err));
    if (why == WIRE_OK && bytes > max_record)
        why = WIRE_REJECT_OVER_RING; /* it would never fit, however empty the ring */
    if (why != WIRE_OK) {
        ep->c.rejected[why]++;
    } else if (in->n_frames || in->n_signals) {
        void *rec = spsc_reserve(&d->tick.in_q, bytes);
        if (rec) {
            wire_input_write(&d->lay, in, ticker_now_ns(), rec);
            ((struct wire_input *)rec)->gen = ops_input_gen(d);
            spsc_commit(&d->tick.in_q, bytes);
            ep->c.accepted++;
        } else {
            ep->c.dropped++; /* the tick thread is behind: the ring is full */
        }
    } else {
        ep->c.accepted++;
    }
    etrace__input__free_unpacked(in, &budget.a);
}

/* ---- the control socket --------------------------------------------------------------- */

static void
on_control(struct endpoint *ep, zmq_msg_t *parts, int n_parts)
{
    struct daemon *d = ep->data;
    control_on_message(d, parts, n_parts);
    if (d->stop_requested)
        stop_daemon(d); /* the shutdown request was answered */
}

/* ---- outputs, results, stats ---------------------------------------------------------- */

static void
publish_output(struct daemon *d, const struct layout *l, const struct wire_output *o)
{
    struct endpoint *ep = &d->ep[CONFIG_EP_OUTPUT];
    for (int r = 0; r < l->n_readouts; r++) {
        Etrace__Output m;
        wire_output_to_msg(l, o, r, d->out_floats, &m);
        size_t len = etrace__output__get_packed_size(&m);
        if (len > d->out_buf_len) {
            uint8_t *nb = realloc(d->out_buf, len);
            if (!nb) {
                ep->c.dropped++;
                continue;
            }
            d->out_buf = nb;
            d->out_buf_len = len;
        }
        etrace__output__pack(&m, d->out_buf);
        const void *data[2] = {l->readouts[r].name, d->out_buf};
        const size_t lens[2] = {strlen(l->readouts[r].name), len};
        endpoint_send(ep, 2, data, lens);
    }
}

static void
publish_stats(struct daemon *d)
{
    struct stats_msg m;
    int64_t interval = d->stats_prev_ns ? d->stats_last->time_ns - d->stats_prev_ns : 0;
    d->stats_prev_ns = d->stats_last->time_ns;
    if (stats_build(&m, d, d->stats_last, interval, d->stats_seq++)) {
        log_warning("stats: out of memory");
        return;
    }
    size_t len = etrace__stats__get_packed_size(&m.msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        etrace__stats__pack(&m.msg, buf);
        const void *data[2] = {"stats", buf};
        const size_t lens[2] = {5, len};
        endpoint_send(&d->ep[CONFIG_EP_STATS], 2, data, lens);
        free(buf);
    }
    stats_msg_fini(&m);
}

/* STATUS= for systemd: the model, the tick rate over the last stats period and learning,
 * sent when it changes (each Stats, after a reload). */
static void
update_status(struct daemon *d, const struct tick_stats *s, int64_t interval_ns)
{
    char line[sizeof(d->status_line)];
    double rate = interval_ns > 0
                      ? (double)(s->life_ticks - d->status_prev_ticks) * 1e9 / (double)interval_ns
                      : 0.0;
    d->status_prev_ticks = s->life_ticks;
    snprintf(line, sizeof(line), "model %s, %s clock, %.0f ticks/s, learning %s%s",
             d->lay.model_name, d->cfg.clock == CONFIG_CLOCK_LOCKSTEP ? "lockstep" : "timer", rate,
             !d->lay.has_learning          ? "none"
             : s->learn == ENGINE_LEARN_ON ? "on"
                                           : "off",
             s->paused ? ", paused" : "");
    if (strcmp(line, d->status_line) == 0)
        return;
    memcpy(d->status_line, line, sizeof(line));
    sdnotify_status(line);
}

static void
on_stats_result(struct daemon *d)
{
    struct tick_stats *done = d->stats_pend;
    d->stats_pend = d->stats_last ? d->stats_last : &d->stats_buf[1];
    d->stats_last = done;
    d->stats_in_flight = 0;
    update_status(d, d->stats_last,
                  d->stats_prev_ns ? d->stats_last->time_ns - d->stats_prev_ns : 0);
    publish_stats(d);
    control_on_stats(d);
}

/* Publishes at most max output records, oldest first. Returns 1 if some are left. */
static int
drain_outputs(struct daemon *d, size_t max)
{
    size_t len;
    struct wire_output *o;
    for (size_t n = 0; n < max; n++) {
        if (!(o = spsc_peek(&d->tick.out_q, &len)))
            return 0;
        const struct layout *l = &d->lay;
        if (!ops_output_marker(d, o, len, &l) && !d->stopping)
            publish_output(d, l, o);
        spsc_pop(&d->tick.out_q);
    }
    return spsc_peek(&d->tick.out_q, &len) != NULL;
}

/* Hands each tick result to the module that answers it: an operation's to ops (whose
 * outcome control answers), a request's to control, the daemon's own here. */
static void
drain_results(struct daemon *d)
{
    size_t len;
    struct tick_result *r;
    while ((r = spsc_peek(&d->tick.res_q, &len))) {
        struct pending *p = pending_find(&d->pending, r->serial);
        if (p && (r->type == TICK_CMD_SWAP || r->type == TICK_CMD_SNAPSHOT ||
                  r->type == TICK_CMD_RECORD_STOP)) {
            /* The old model's outputs go out with its layout before ops swaps it. */
            if (r->type == TICK_CMD_SWAP)
                drain_outputs(d, SIZE_MAX);
            ops_on_result(d, p, r);
            control_reply_ops(d);
        } else if (p && p->command) {
            control_on_result(d, p, r, len);
        } else if (p) {
            if (r->type == TICK_CMD_STATS)
                on_stats_result(d);
            pending_free(p);
        }
        spsc_pop(&d->tick.res_q);
    }
}

static void
on_wake(uv_async_t *h)
{
    struct daemon *d = h->data;
    control_reply_ops(d); /* operations a worker finished */
    drain_results(d);
    /* A long backlog (the loop was held up) goes out in slices, the loop polling its
     * sockets in between, so that control requests are answered meanwhile. */
    if (drain_outputs(d, WAKE_MAX_OUTPUTS))
        uv_async_send(&d->wake);
    if (d->stop_requested)
        stop_daemon(d);
}

/* ---- connections ---------------------------------------------------------------------- */

/* The connection limit of each endpoint: limits.connections (input, control) and
 * limits.subscribers (output, stats), scaled down together when their sum would not leave
 * CONNS_RESERVE_FDS descriptors under RLIMIT_NOFILE for checkpoints and recordings. */
static void
apply_conn_limits(struct daemon *d, int at_start)
{
    uint64_t want[CONFIG_N_EP] = {
        (uint64_t)d->cfg.limit_connections, (uint64_t)d->cfg.limit_subscribers,
        (uint64_t)d->cfg.limit_connections, (uint64_t)d->cfg.limit_subscribers};
    uint64_t sum = 0, room = 0;
    for (int i = 0; i < CONFIG_N_EP; i++)
        sum += want[i];
    if (d->n_fds > d->fd_base + CONNS_RESERVE_FDS)
        room = d->n_fds - d->fd_base - CONNS_RESERVE_FDS;
    if (sum > room) {
        for (int i = 0; i < CONFIG_N_EP; i++)
            want[i] = want[i] * room / sum > 0 ? want[i] * room / sum : 1;
        log_warning("limits.connections %lld and limits.subscribers %lld need %llu descriptors, "
                    "RLIMIT_NOFILE %zu leaves %llu (%zu in use, %d kept in reserve): each "
                    "endpoint keeps at most %llu (input, control) and %llu (output, stats)",
                    (long long)d->cfg.limit_connections, (long long)d->cfg.limit_subscribers,
                    (unsigned long long)sum, d->n_fds, (unsigned long long)room, d->fd_base,
                    CONNS_RESERVE_FDS, (unsigned long long)want[CONFIG_EP_INPUT],
                    (unsigned long long)want[CONFIG_EP_OUTPUT]);
    } else if (at_start) {
        log_info("descriptors: RLIMIT_NOFILE %zu, %zu in use, up to %llu connections", d->n_fds,
                 d->fd_base, (unsigned long long)sum);
    }
    for (int i = 0; i < CONFIG_N_EP; i++)
        d->ep[i].conns.limit = want[i];
}

/* ---- configuration ------------------------------------------------------------------- */

/* Sends the inputs.<name> settings to the tick thread. */
static void
send_input_cfg(struct daemon *d)
{
    struct tick_input_cfg *cfg = calloc((size_t)d->lay.n_inputs + 1, sizeof(*cfg));
    if (!cfg)
        return;
    for (int i = 0; i < d->lay.n_inputs; i++) {
        const struct config_input *ci = config_find_input(&d->cfg, d->lay.inputs[i].name);
        if (!ci)
            continue;
        cfg[i].max_age_ns = ci->max_age_ms * 1000000LL;
        cfg[i].zero = ci->on_stale == CONFIG_ON_STALE_ZERO;
    }
    struct pending *p = pending_new(&d->pending);
    if (!p) {
        free(cfg);
        return;
    }
    p->buf = cfg;
    struct tick_cmd cmd = {.type = TICK_CMD_INPUT_CFG, .serial = p->serial};
    cmd.arg.input_cfg = cfg;
    if (ticker_send(&d->tick, &cmd, NULL, 0))
        pending_free(p);
}

static int
check_inputs(const struct daemon *d, const struct config *c, int fatal)
{
    for (int i = 0; i < c->n_inputs; i++) {
        if (layout_find_input(&d->lay, c->inputs[i].name) >= 0)
            continue;
        if (fatal)
            log_error("%s:%d: inputs.%s: the model has no input of that name", c->path,
                      c->inputs[i].line, c->inputs[i].name);
        else
            log_warning("%s:%d: inputs.%s: the model has no input of that name", c->path,
                        c->inputs[i].line, c->inputs[i].name);
        if (fatal)
            return -1;
    }
    return 0;
}

static void
log_change(void *ctx, const char *name, int reloadable)
{
    (void)ctx;
    if (reloadable)
        log_info("config: %s changed: applied", name);
    else
        log_warning("config: %s changed: needs a restart (the running value is kept)", name);
}

static void
reload_config(struct daemon *d)
{
    struct config nc;
    char err[512];
    if (!d->cfg.path) {
        log_info("SIGHUP: no config file (started with --model): nothing to re-read");
        return;
    }
    if (config_load(&nc, d->cfg.path, err, sizeof(err))) {
        log_error("SIGHUP: %s; the running settings are kept", err);
        return;
    }
    config_diff(&d->cfg, &nc, log_change, d);
    check_inputs(d, &nc, 0);
    /* Apply the reloadable rows; keep the others as they run. */
    d->cfg.stats_period_ms = nc.stats_period_ms;
    d->cfg.limit_input_bytes = nc.limit_input_bytes;
    d->cfg.limit_control_bytes = nc.limit_control_bytes;
    d->cfg.limit_connections = nc.limit_connections;
    d->cfg.limit_subscribers = nc.limit_subscribers;
    apply_conn_limits(d, 0);
    d->cfg.checkpoint_every_s = nc.checkpoint_every_s;
    d->cfg.checkpoint_keep = nc.checkpoint_keep;
    d->cfg.snapshot_slice_bytes = nc.snapshot_slice_bytes;
    atomic_store_explicit(&d->tick.norm_slice_bytes, nc.snapshot_slice_bytes, memory_order_relaxed);
    for (int i = 0; i < d->cfg.n_curve_allow; i++)
        free(d->cfg.curve_allow[i]);
    free(d->cfg.curve_allow);
    d->cfg.curve_allow = nc.curve_allow;
    d->cfg.n_curve_allow = nc.n_curve_allow;
    nc.curve_allow = NULL;
    nc.n_curve_allow = 0;
    for (int i = 0; i < d->cfg.n_inputs; i++)
        free(d->cfg.inputs[i].name);
    free(d->cfg.inputs);
    d->cfg.inputs = nc.inputs;
    d->cfg.n_inputs = nc.n_inputs;
    nc.inputs = NULL;
    nc.n_inputs = 0;
    config_fini(&nc);
    d->stats_next_ns = ticker_now_ns() + d->cfg.stats_period_ms * 1000000LL;
    send_input_cfg(d);
}

/* ---- signals and housekeeping -------------------------------------------------------- */

static void
on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (signum == SIGPIPE)
        return; /* a peer closed a pipe: the write fails with EPIPE instead */
    if (signum == SIGHUP) {
        log_info("SIGHUP: re-reading %s", d->cfg.path ? d->cfg.path : "(no config file)");
        sdnotify_reloading();
        reload_config(d);
        /* READY=1 ends the reload, with the status line as it stands. */
        sdnotify_ready(d->status_line[0] ? d->status_line : NULL);
        return;
    }
    log_info("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_daemon(d);
}

static void
on_housekeeping(uv_timer_t *h)
{
    struct daemon *d = h->data;
    int64_t now = ticker_now_ns();
    for (int i = 0; i < CONFIG_N_EP; i++)
        endpoint_check_monitor(&d->ep[i]);
    if (now >= d->stats_next_ns) {
        control_request_stats(d);
        d->stats_next_ns += d->cfg.stats_period_ms * 1000000LL;
        if (d->stats_next_ns <= now)
            d->stats_next_ns = now + d->cfg.stats_period_ms * 1000000LL;
    }
    ops_housekeeping(d, now);
    control_reply_ops(d);
    if (d->watchdog_ns && now >= d->watchdog_next_ns) {
        /* In timer mode the watchdog is fed only while `tick` advances (DESIGN §5.7): a
         * stuck tick thread, or one paused longer than WatchdogSec, lets systemd act. In
         * lockstep ticks advance only on request, so the loop's liveness is what counts. */
        struct tick_status ts = ticker_status(&d->tick);
        if (d->cfg.clock == CONFIG_CLOCK_LOCKSTEP || ts.tick != d->watchdog_tick)
            sdnotify_watchdog();
        d->watchdog_tick = ts.tick;
        d->watchdog_next_ns = now + d->watchdog_ns / 2;
    }
}

/* ---- start and stop ------------------------------------------------------------------- */

static void
on_closed_ep(struct endpoint *ep)
{
    (void)ep;
}

/* Begins an orderly shutdown (tick thread, sockets, loop). */
static void
stop_daemon(struct daemon *d)
{
    if (d->stopping)
        return;
    sdnotify_stopping();
    /* A last checkpoint (periodic checkpoints on) while the tick thread still runs. */
    ops_stop_checkpoint(d);
    d->stopping = 1;
    /* Reverse order of start: the tick thread, then the sockets, then the loop. */
    if (d->tick.started) {
        struct tick_cmd cmd = {.type = TICK_CMD_QUIT, .serial = 0};
        while (ticker_send(&d->tick, &cmd, NULL, 0))
            usleep(1000); /* the ring frees as the tick thread drains it */
        ticker_join(&d->tick);
    }
    drain_results(d);
    drain_outputs(d, SIZE_MAX);
    control_reply_ops(d);
    pending_free_all(&d->pending);
    for (int i = 0; i < d->n_stats_waiting; i++)
        pending_free(&d->stats_waiting[i]);
    d->n_stats_waiting = 0;
    for (int i = CONFIG_N_EP - 1; i >= 0; i--)
        endpoint_close(&d->ep[i]);
    curve_stop(d);
    uv_timer_stop(&d->housekeeping);
    uv_close((uv_handle_t *)&d->housekeeping, NULL);
    uv_close((uv_handle_t *)&d->sig_pipe, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->wake, NULL);
}

/* RUN, mode 0700 (DESIGN §5.6). An existing path must be a real directory of ours: a
 * symlink, or a directory another user made first (say /tmp/etraced-UID), is refused
 * rather than trusted with the sockets. */
static int
make_dir(const char *path)
{
    if (mkdir(path, 0700) && errno != EEXIST)
        return -1;
    struct stat st;
    if (lstat(path, &st))
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if (st.st_uid != geteuid()) {
        errno = EPERM;
        return -1;
    }
    if ((st.st_mode & 0777) != 0700 && chmod(path, 0700))
        return -1;
    return 0;
}

/* RUN and the state directory (DESIGN §5.6). The environment wins over the uid rule so
 * that tests and systemd (RUNTIME_DIRECTORY, STATE_DIRECTORY) can place them. */
static void
resolve_dirs(struct daemon *d)
{
    const char *rd = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");
    if (rd && *rd)
        snprintf(d->run_dir, sizeof(d->run_dir), "%s", rd);
    else if (xdg && *xdg)
        snprintf(d->run_dir, sizeof(d->run_dir), "%s/etraced", xdg);
    else if (geteuid() == 0)
        snprintf(d->run_dir, sizeof(d->run_dir), "/run/etraced");
    else
        snprintf(d->run_dir, sizeof(d->run_dir), "/tmp/etraced-%u", (unsigned)geteuid());
    const char *sd = getenv("STATE_DIRECTORY"), *xs = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (sd && *sd)
        snprintf(d->state_dir, sizeof(d->state_dir), "%s", sd);
    else if (xs && *xs)
        snprintf(d->state_dir, sizeof(d->state_dir), "%s/etraced", xs);
    else if (geteuid() == 0)
        snprintf(d->state_dir, sizeof(d->state_dir), "/var/lib/etraced");
    else
        snprintf(d->state_dir, sizeof(d->state_dir), "%s/.local/state/etraced",
                 home ? home : "/tmp");
}

/* Endpoint i's url: the config's, or ipc://RUN/<name>. */
static void
endpoint_url(const struct daemon *d, int i, char *url, size_t len)
{
    if (d->cfg.endpoints[i])
        snprintf(url, len, "%s", d->cfg.endpoints[i]);
    else
        snprintf(url, len, "ipc://%s/%s", d->run_dir, ep_names[i]);
}

/* A usage error: one line naming what is wrong ("what 'arg'"), exit status 64. */
static int
usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "etraced: %s%s%s%s (etraced --help)\n", what, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "");
    return 64;
}

static void
apply_mlock(struct daemon *d)
{
    struct rlimit rl;
    size_t need = 2 * engine_resident_bytes(d->eng);
    if (!d->cfg.rt_mlockall)
        return;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        log_warning("realtime.mlockall: RLIMIT_MEMLOCK is %llu bytes, below twice the "
                    "resident estimate (%zu); memory is not locked",
                    (unsigned long long)rl.rlim_cur, need);
        return;
    }
    if (mlockall(MCL_CURRENT | MCL_FUTURE))
        log_warning("realtime.mlockall: %s; memory is not locked", strerror(errno));
}

static int
tick_cpu(const struct daemon *d)
{
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int cpu = (int)d->cfg.rt_cpu;
    if (cpu < 0 && d->cfg.rt_priority > 0)
        cpu = (int)n_cpu - 1;
    if (cpu >= n_cpu) {
        log_warning("realtime.cpu %d: only %ld CPUs; the tick thread is not pinned", cpu, n_cpu);
        return -1;
    }
    return cpu;
}

/* The loop thread (this one) avoids the tick thread's CPU. */
static void
avoid_cpu(int cpu)
{
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (cpu < 0 || n_cpu < 2)
        return;
    CPU_ZERO(&set);
    for (int i = 0; i < n_cpu; i++)
        if (i != cpu)
            CPU_SET(i, &set);
    if (sched_setaffinity(0, sizeof(set), &set))
        log_warning("cannot keep the loop thread off CPU %d: %s", cpu, strerror(errno));
}

static int
load_model(struct daemon *d, const char *path)
{
    struct model_desc *desc = NULL;
    struct err e;
    err_clear(&e);
    if (model_load_file(path, mem_default(), &desc, &e)) {
        fprintf(stderr, "etraced: %s\n", e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    struct engine_opts eo = {.track_grad_sum = 0};
    int rc = engine_compile(desc, &eo, &d->eng, &e); /* on success the engine owns desc */
    if (rc) {
        model_free(&desc, mem_default());
        fprintf(stderr, "etraced: %s\n", e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    return 0;
}

/* Joins the config file's directory and a relative model path. */
static char *
model_path(const struct config *c, const char *cli_model)
{
    const char *m = cli_model ? cli_model : c->model;
    if (!m)
        return NULL;
    if (cli_model || m[0] == '/' || !c->path || !strchr(c->path, '/'))
        return strdup(m);
    size_t dir_len = (size_t)(strrchr(c->path, '/') - c->path);
    char *p = malloc(dir_len + strlen(m) + 2);
    if (p)
        sprintf(p, "%.*s/%s", (int)dir_len, c->path, m);
    return p;
}

int
daemon_main(int argc, char **argv)
{
    const char *cfg_path = NULL, *cli_model = NULL;
    char err[512];
    struct daemon *d;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfg_path = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            cli_model = argv[++i];
        else if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--model"))
            return usage_error("a FILE must follow", argv[i]);
        else
            return usage_error("unknown argument", argv[i]);
    }
    if (!cfg_path && !cli_model)
        return usage_error("give --model FILE or --config FILE", NULL);
    d = calloc(1, sizeof(*d));
    if (!d)
        return 1;
    d->exit_code = 0;
    pidlock_init(&d->locks);
    setenv("UV_THREADPOOL_SIZE", "2", 0);
    /* libzmq aborts when accept() hits the descriptor limit: take all the system gives. */
    d->n_fds = conns_raise_nofile();

    /* 1. settings */
    if (cfg_path ? config_load(&d->cfg, cfg_path, err, sizeof(err))
                 : config_init_defaults(&d->cfg, cli_model)) {
        fprintf(stderr, "etraced: %s\n", cfg_path ? err : "out of memory");
        goto out_cfg;
    }
    char *mpath = model_path(&d->cfg, cli_model);
    if (!mpath) {
        fprintf(stderr, "etraced: %s: no model (set `model:` or give --model FILE)\n",
                cfg_path ? cfg_path : "");
        goto out_cfg;
    }
    /* 2. the model */
    if (load_model(d, mpath)) {
        free(mpath);
        goto out_cfg;
    }
    free(mpath);
    resolve_dirs(d);
    if (security_start(d, err, sizeof(err))) {
        fprintf(stderr, "etraced: %s\n", err);
        goto out_engine;
    }
    if (ops_resume(d))
        goto out_engine;
    /* 3. layout and timing */
    if (layout_init(&d->lay, d->eng)) {
        fprintf(stderr, "etraced: out of memory\n");
        goto out_engine;
    }
    if (check_inputs(d, &d->cfg, 1))
        goto out_layout;
    d->dt_ns = (int64_t)llround(d->lay.dt_s * 1e9);
    d->period_ns = d->cfg.period_us ? d->cfg.period_us * 1000 : d->dt_ns;
    if (d->cfg.clock == CONFIG_CLOCK_TIMER && d->period_ns < 10000) {
        fprintf(stderr,
                "etraced: the model's dt (%g s) is below the 10 us period floor; set "
                "period_us\n",
                d->lay.dt_s);
        goto out_layout;
    }
    if (d->cfg.period_us && d->period_ns != d->dt_ns)
        log_warning("period_us %lld differs from the model's dt (%g s): model time runs at "
                    "%.3gx wall time",
                    (long long)d->cfg.period_us, d->lay.dt_s,
                    (double)d->dt_ns / (double)d->period_ns);
    if (engine_model(d->eng)->learning.critic_ignores)
        log_warning("learning: tau_e and tau_baseline are ignored beside a critic");
    if (ops_init(d)) {
        fprintf(stderr, "etraced: out of memory\n");
        goto out_layout;
    }
    /* 4. the loop and the tick thread's rings */
    if (uv_loop_init(&d->loop)) {
        fprintf(stderr, "etraced: cannot start the event loop\n");
        goto out_layout;
    }
    uv_async_init(&d->loop, &d->wake, on_wake);
    d->wake.data = d;
    int cpu = tick_cpu(d);
    struct ticker_opts to = {.lockstep = d->cfg.clock == CONFIG_CLOCK_LOCKSTEP,
                             .period_ns = d->period_ns,
                             .rt_priority = (int)d->cfg.rt_priority,
                             .rt_cpu = cpu,
                             .in_q_bytes = (size_t)(4 * d->cfg.limit_input_bytes + (1 << 20)),
                             .publish_every_ns = d->cfg.publish_every_us * 1000,
                             .threads = (int)d->cfg.engine_threads,
                             .wake = &d->wake};
    if (to.in_q_bytes > ((size_t)1 << 30))
        to.in_q_bytes = (size_t)1 << 30;
    if (to.threads > 1) /* DESIGN §5.2: the threshold the daemon states */
        log_info("engine.threads %d: a tick runs its passes on %d threads when the largest "
                 "learning or dense weight has >= %lld values (this model: %lld, %s)",
                 to.threads, to.threads, (long long)POOL_MIN_WORK,
                 (long long)engine_tick_work(d->eng),
                 engine_tick_work(d->eng) >= POOL_MIN_WORK ? "on" : "one thread");
    if (ticker_init(&d->tick, d->eng, &d->lay, &to) ||
        stats_snapshot_init(&d->stats_buf[0], &d->lay) ||
        stats_snapshot_init(&d->stats_buf[1], &d->lay)) {
        fprintf(stderr, "etraced: out of memory\n");
        goto out_loop;
    }
    atomic_store_explicit(&d->tick.norm_slice_bytes, d->cfg.snapshot_slice_bytes,
                          memory_order_relaxed);
    d->stats_pend = &d->stats_buf[0];
    size_t max_floats = 1;
    for (int r = 0; r < d->lay.n_readouts; r++)
        if ((size_t)(d->lay.readouts[r].size + d->lay.readouts[r].action_size) > max_floats)
            max_floats = (size_t)(d->lay.readouts[r].size + d->lay.readouts[r].action_size);
    d->out_floats = calloc(max_floats, sizeof(float));
    if (!d->out_floats)
        goto out_loop;
    /* 5. sockets */
    d->zctx = zmq_ctx_new();
    zmq_ctx_set(d->zctx, ZMQ_IO_THREADS, 1);
    for (int i = 0; i < CONFIG_N_EP; i++) {
        if (!d->cfg.endpoints[i] && make_dir(d->run_dir)) {
            fprintf(stderr,
                    "etraced: cannot use %s as the socket directory (mode 0700, ours): %s\n",
                    d->run_dir, strerror(errno));
            goto out_sockets;
        }
    }
    /* Every lock before any bind: binding an ipc path replaces the socket file of a
     * daemon already there, which would keep running, unreachable. */
    for (int i = 0; i < CONFIG_N_EP; i++) {
        char url[PATH_MAX + 16];
        endpoint_url(d, i, url, sizeof(url));
        if (pidlock_take(&d->locks, url, err, sizeof(err))) {
            fprintf(stderr, "etraced: %s\n", err);
            goto out_sockets;
        }
    }
    if (curve_start(d, err, sizeof(err))) {
        fprintf(stderr, "etraced: %s\n", err);
        goto out_sockets;
    }
    static const int types[CONFIG_N_EP] = {ZMQ_PULL, ZMQ_PUB, ZMQ_ROUTER, ZMQ_PUB};
    /* High-water marks bound what libzmq queues per connection: a share of
     * INPUT_QUEUE_BYTES of Input (at least 2, at most 1000 messages), limits.subscriber_queue
     * messages per subscriber, a few requests. */
    int64_t in_hwm = INPUT_QUEUE_BYTES / d->cfg.limit_input_bytes / d->cfg.limit_connections;
    const int hwm[CONFIG_N_EP] = {in_hwm < 2      ? 2
                                  : in_hwm > 1000 ? 1000
                                                  : (int)in_hwm,
                                  (int)d->cfg.limit_subscriber_queue, CONTROL_HWM,
                                  (int)d->cfg.limit_subscriber_queue};
    const endpoint_recv_fn fns[CONFIG_N_EP] = {on_input, NULL, on_control, NULL};
    for (int i = 0; i < CONFIG_N_EP; i++) {
        char url[PATH_MAX + 16];
        endpoint_url(d, i, url, sizeof(url));
        int64_t maxmsg = fns[i] ? d->cfg.max_msg_bytes : -1;
        if (endpoint_open(&d->ep[i], &d->loop, d->zctx, types[i], ep_names[i], url, maxmsg, hwm[i],
                          fns[i], d, curve_secret(d), err, sizeof(err)) ||
            endpoint_track_conns(&d->ep[i], d->n_fds, 0)) {
            fprintf(stderr, "etraced: %s\n", d->ep[i].sock ? "out of memory" : err);
            goto out_sockets;
        }
        d->ep[i].on_closed = on_closed_ep;
        log_info("%s: %s", ep_names[i], url);
    }
    if (security_sockets_bound(d, err, sizeof(err))) {
        fprintf(stderr, "etraced: %s\n", err);
        goto out_sockets;
    }
    d->fd_base = conns_count_open_fds();
    apply_conn_limits(d, 1);
    /* 6. the tick thread */
    apply_mlock(d);
    d->start_ns = ticker_now_ns();
    if (ticker_start(&d->tick)) {
        fprintf(stderr, "etraced: cannot start the tick thread: %s\n", strerror(errno));
        goto out_sockets;
    }
    avoid_cpu(cpu);
    send_input_cfg(d);
    /* 7. signals, housekeeping, ready */
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_hup);
    d->sig_int.data = d->sig_term.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    uv_signal_init(&d->loop, &d->sig_pipe);
    d->sig_pipe.data = d;
    uv_signal_start(&d->sig_pipe, on_signal, SIGPIPE);
    uv_timer_init(&d->loop, &d->housekeeping);
    d->housekeeping.data = d;
    d->stats_next_ns = d->start_ns + d->cfg.stats_period_ms * 1000000LL;
    d->watchdog_ns = sdnotify_watchdog_ns();
    d->watchdog_next_ns = d->start_ns;
    uv_timer_start(&d->housekeeping, on_housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    char ready[256];
    snprintf(ready, sizeof(ready), "model %s, clock %s, period %lld us", d->lay.model_name,
             d->cfg.clock == CONFIG_CLOCK_LOCKSTEP ? "lockstep" : "timer",
             (long long)(d->period_ns / 1000));
    log_info("ready: %s", ready);
    snprintf(d->status_line, sizeof(d->status_line), "%s", ready);
    sdnotify_ready(ready);

    uv_run(&d->loop, UV_RUN_DEFAULT);
    rc = d->exit_code;
    log_info("stopped");
    uv_loop_close(&d->loop);
    zmq_ctx_term(d->zctx);
    goto out_tick;

out_sockets:
    for (int i = CONFIG_N_EP - 1; i >= 0; i--)
        endpoint_close(&d->ep[i]);
    curve_stop(d);
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    if (d->zctx)
        zmq_ctx_term(d->zctx);
    goto out_tick;
out_loop:
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
out_tick:
    free(d->out_floats);
    free(d->out_buf);
    stats_snapshot_fini(&d->stats_buf[0]);
    stats_snapshot_fini(&d->stats_buf[1]);
    ticker_fini(&d->tick);
out_layout:
    ops_fini(d);
    layout_fini(&d->lay);
out_engine:
    engine_free(&d->eng);
out_cfg:
    pidlock_release(&d->locks);
    config_fini(&d->cfg);
    free(d);
    return rc;
}
