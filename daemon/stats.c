/* Stats messages (see stats.h). */
#include "stats.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int
stats_snapshot_init(struct tick_stats *s, const struct layout *l)
{
    memset(s, 0, sizeof(*s));
    s->inputs = calloc((size_t)l->n_inputs + 1, sizeof(*s->inputs));
    s->readouts = calloc((size_t)l->n_readouts + 1, sizeof(*s->readouts));
    s->norms = calloc((size_t)l->n_projs + 1, sizeof(*s->norms));
    s->rates = calloc((size_t)l->n_cells + 1, sizeof(*s->rates));
    if (!s->inputs || !s->readouts || !s->norms || !s->rates) {
        stats_snapshot_fini(s);
        return -1;
    }
    return 0;
}

void
stats_snapshot_fini(struct tick_stats *s)
{
    free(s->inputs);
    free(s->readouts);
    free(s->norms);
    free(s->rates);
    memset(s, 0, sizeof(*s));
}

static void
percentiles(Etrace__Percentiles *p, const struct hist *h, uint64_t count_total,
            int64_t sum_ns_total)
{
    etrace__percentiles__init(p);
    p->count = h->count;
    p->p50_ns = hist_quantile(h, 0.5);
    p->p99_ns = hist_quantile(h, 0.99);
    p->p999_ns = hist_quantile(h, 0.999);
    p->max_ns = h->max;
    p->count_total = count_total;
    p->sum_ns_total = sum_ns_total;
}

static void
socket_stats(Etrace__SocketStats *m, const struct endpoint *ep, const char *name)
{
    etrace__socket_stats__init(m);
    m->name = (char *)name;
    m->accepted = ep->c.accepted;
    m->undecodable = ep->c.rejected[WIRE_REJECT_UNDECODABLE];
    m->wrong_size = ep->c.rejected[WIRE_REJECT_WRONG_SIZE];
    m->unknown_name = ep->c.rejected[WIRE_REJECT_UNKNOWN_NAME];
    m->non_finite = ep->c.rejected[WIRE_REJECT_NON_FINITE];
    m->oversized = ep->c.rejected[WIRE_REJECT_OVERSIZED];
    m->unknown_command = ep->c.rejected[WIRE_REJECT_UNKNOWN_COMMAND];
    m->bad_argument = ep->c.rejected[WIRE_REJECT_BAD_ARGUMENT];
    m->peer_dropped = ep->c.peer_dropped;
    m->dropped = ep->c.dropped;
    m->over_ring = ep->c.rejected[WIRE_REJECT_OVER_RING];
    m->connections = ep->conns.n_open;
    m->connections_refused = ep->conns.refused;
    m->handler_max_ns = ep->c.handler_max_ns;
}

/* This process's CPU time (every thread) and resident memory; 0 where unknown. */
static void
process_usage(double *cpu_s, uint64_t *rss_bytes)
{
    struct rusage ru;
    *cpu_s = 0.0;
    *rss_bytes = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        *cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    /* read(2) into a stack buffer: no stdio buffer allocated every stats period */
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) == 2)
        *rss_bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static const char *const ep_names[CONFIG_N_EP] = {"input", "output", "control", "stats"};

int
stats_build(struct stats_msg *m, const struct daemon *d, const struct tick_stats *s,
            int64_t interval_ns, uint64_t seq)
{
    const struct layout *l = &d->lay;
    int n_spiking = 0;
    memset(m, 0, sizeof(*m));
    etrace__stats__init(&m->msg);
    for (int c = 0; c < l->n_cells; c++)
        n_spiking += l->cells[c].is_spiking;
    m->inputs = calloc((size_t)l->n_inputs + 1, sizeof(*m->inputs));
    m->inputs_p = calloc((size_t)l->n_inputs + 1, sizeof(*m->inputs_p));
    m->readouts = calloc((size_t)l->n_readouts + 1, sizeof(*m->readouts));
    m->readouts_p = calloc((size_t)l->n_readouts + 1, sizeof(*m->readouts_p));
    m->projs = calloc((size_t)l->n_projs + 1, sizeof(*m->projs));
    m->projs_p = calloc((size_t)l->n_projs + 1, sizeof(*m->projs_p));
    m->cells = calloc((size_t)n_spiking + 1, sizeof(*m->cells));
    m->cells_p = calloc((size_t)n_spiking + 1, sizeof(*m->cells_p));
    if (!m->inputs || !m->inputs_p || !m->readouts || !m->readouts_p || !m->projs || !m->projs_p ||
        !m->cells || !m->cells_p) {
        stats_msg_fini(m);
        return -1;
    }
    Etrace__Stats *st = &m->msg;
    st->time_ns = s->time_ns;
    st->interval_ns = interval_ns;
    st->seq = seq;
    st->tick = s->tick;
    st->period_index = s->period_index;
    st->period_ns = d->period_ns;
    percentiles(&m->tick_time, &s->tick_time, s->tick_time_count_total, s->tick_time_sum_ns_total);
    percentiles(&m->lateness, &s->lateness, s->lateness_count_total, s->lateness_sum_ns_total);
    st->tick_time = &m->tick_time;
    st->lateness = &m->lateness;
    st->overruns = s->overruns;
    st->skipped = s->skipped;
    st->invalid_ticks = s->invalid_ticks;
    st->output_wakes = s->output_wakes;
    for (int i = 0; i < CONFIG_N_EP; i++) {
        socket_stats(&m->sockets[i], &d->ep[i], ep_names[i]);
        m->sockets[i].curve_denied = d->curve_denied[i] + d->ep[i].c.curve_refused;
        m->sockets_p[i] = &m->sockets[i];
    }
    m->sockets[CONFIG_EP_OUTPUT].dropped += s->outputs_dropped;
    st->n_sockets = CONFIG_N_EP;
    st->sockets = m->sockets_p;
    for (int i = 0; i < l->n_inputs; i++) {
        Etrace__InputStats *in = &m->inputs[i];
        etrace__input_stats__init(in);
        in->name = l->inputs[i].name;
        in->frames = s->inputs[i].frames;
        in->superseded = s->inputs[i].superseded;
        in->dropped_overflow = s->inputs[i].dropped_overflow;
        in->stale_ticks = s->inputs[i].stale_ticks;
        in->spikes = l->inputs[i].is_spikes != 0;
        m->inputs_p[i] = in;
    }
    st->n_inputs = (size_t)l->n_inputs;
    st->inputs = m->inputs_p;
    for (int r = 0; r < l->n_readouts; r++) {
        Etrace__ReadoutStats *ro = &m->readouts[r];
        etrace__readout_stats__init(ro);
        ro->name = l->readouts[r].name;
        ro->targets = s->readouts[r].targets;
        ro->superseded = s->readouts[r].superseded;
        m->readouts_p[r] = ro;
    }
    st->n_readouts = (size_t)l->n_readouts;
    st->readouts = m->readouts_p;
    for (int p = 0; p < l->n_projs; p++) {
        Etrace__ProjectionStats *pr = &m->projs[p];
        etrace__projection_stats__init(pr);
        pr->name = l->projs[p].name;
        pr->w_norm = s->norms[p].w;
        pr->drift_norm = s->norms[p].drift;
        pr->delta_norm = s->norms[p].delta;
        pr->no_drift = !s->norms[p].has_drift; /* stats.drift: off: neither is measured */
        pr->grad_norm = s->norms[p].grad;
        pr->trace_norm = s->norms[p].trace;
        m->projs_p[p] = pr;
    }
    st->n_projections = (size_t)l->n_projs;
    st->projections = m->projs_p;
    int k = 0;
    for (int c = 0; c < l->n_cells; c++) {
        if (!l->cells[c].is_spiking)
            continue;
        etrace__cell_stats__init(&m->cells[k]);
        m->cells[k].name = l->cells[c].name;
        m->cells[k].rate = s->rates[c];
        m->cells_p[k] = &m->cells[k];
        k++;
    }
    st->n_cells = (size_t)k;
    st->cells = m->cells_p;
    st->curve_denials = d->curve_denials;
    for (int i = 0; i < CONFIG_N_EP; i++)
        st->curve_denials += d->ep[i].c.curve_refused;
    st->updates_refused = s->eng.updates_refused;
    st->state_resets = s->eng.state_resets;
    st->optimizer_steps = s->eng.steps;
    st->swaps = s->swaps;
    st->last_swap_gap_ns = s->last_swap_gap_ns;
    st->loss_avg = s->loss_n ? s->loss_sum / (double)s->loss_n : 0.0;
    st->reward_avg = s->n_ticks ? s->reward_sum / (double)s->n_ticks : 0.0;
    st->learning = s->learn == ENGINE_LEARN_ON;
    st->lr = s->lr;
    st->paused = s->paused != 0;
    st->ticks_total = s->life_ticks;
    st->optimizer_steps_total = s->life_steps;
    st->updates_refused_total = s->life_refused;
    st->state_resets_total = s->life_resets;
    st->model_name = l->model_name;
    st->model_hash = l->model_hash;
    st->uptime_ns = s->time_ns - d->start_ns;
    process_usage(&st->cpu_seconds, &st->rss_bytes);
    st->version = (char *)ETRACE_VERSION;
    st->lockstep = d->cfg.clock == CONFIG_CLOCK_LOCKSTEP;
    return 0;
}

void
stats_msg_fini(struct stats_msg *m)
{
    free(m->inputs);
    free(m->inputs_p);
    free(m->readouts);
    free(m->readouts_p);
    free(m->projs);
    free(m->projs_p);
    free(m->cells);
    free(m->cells_p);
    memset(m, 0, sizeof(*m));
}
