/* etracectl top (see ctl_top.h). */
#include "ctl_top.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "etrace_client.h"

enum {
    TOP_MAX_PROJ = 64,      /* projections shown */
    TOP_HIST = 4096,        /* drift samples kept per projection */
    TOP_SPARK_MAX = 60,     /* sparkline columns at most */
    TOP_POLL_MS = 100,      /* how often stdin is looked at */
    TOP_AWAY_MIN_MS = 2500, /* no Stats for this long (or 3 periods): the daemon is away */
    TOP_MAX_IN = 64,        /* inputs shown */
    TOP_COLS = 80,          /* the widest the view draws, whatever the terminal */
};

/* One input's counts at the previous Stats and its rates over the last interval. */
struct top_in {
    char name[64];
    uint64_t frames, stale_ticks;
    double fps, stale_pct; /* frames/s; % of the interval's ticks it was stale (< 0: unknown) */
};

static const int64_t TOP_WINDOW_NS = 60 * (int64_t)1000000000; /* the sparkline's minute */

/* One projection's row: its name and its drift history (a ring of (time, drift)). */
struct top_proj {
    char name[64];
    int64_t t_ns[TOP_HIST];
    double drift[TOP_HIST];
    int head, n; /* next slot, samples held */
};

/* The view's state: the last Stats and the figures derived from the two last ones. */
struct top {
    Etrace__Stats *last; /* owned; NULL before the first */
    uint64_t prev_tick, prev_frames;
    int64_t prev_time_ns;
    double prev_cpu_s;
    double tick_rate, frame_rate; /* per second, over the last interval; < 0: unknown */
    double cpu_pct;               /* the daemon's CPU over the last interval, % of one CPU */
    struct top_in in[TOP_MAX_IN];
    int n_in;
    int64_t last_rx_ms; /* when the last Stats arrived (local clock) */
    int away;           /* no Stats lately */
    struct top_proj proj[TOP_MAX_PROJ];
    int n_proj;
    int utf8;
    const char *ep;
};

/* Set by the signal handler: the one piece of state a handler may touch. */
static volatile sig_atomic_t top_stop;

static void
on_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
sum_frames(const Etrace__Stats *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n_inputs; i++)
        n += s->inputs[i]->frames;
    return n;
}

static uint64_t
rejected(const Etrace__SocketStats *k)
{
    return k->undecodable + k->wrong_size + k->unknown_name + k->non_finite + k->oversized +
           k->unknown_command + k->bad_argument + k->over_ring;
}

static struct top_proj *
find_proj(struct top *t, const char *name)
{
    for (int i = 0; i < t->n_proj; i++)
        if (!strcmp(t->proj[i].name, name))
            return &t->proj[i];
    if (t->n_proj >= TOP_MAX_PROJ)
        return NULL;
    struct top_proj *p = &t->proj[t->n_proj++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

/* Takes ownership of s. A Stats with a lower seq than the last means a new daemon: the
 * rates and histories start again. */
static void
top_take(struct top *t, Etrace__Stats *s)
{
    int restarted = t->last && s->seq < t->last->seq;
    if (restarted)
        t->n_proj = t->n_in = 0;
    /* ticks_total never goes back (a restore sets `tick` back); 0 from an older daemon */
    uint64_t ticks = s->ticks_total ? s->ticks_total : s->tick;
    int have_prev = t->last && !restarted && s->time_ns > t->prev_time_ns;
    double dt_s = have_prev ? (double)(s->time_ns - t->prev_time_ns) / 1e9 : 0.0;
    uint64_t d_ticks = have_prev && ticks >= t->prev_tick ? ticks - t->prev_tick : 0;
    if (have_prev && ticks >= t->prev_tick) {
        t->tick_rate = (double)d_ticks / dt_s;
        t->frame_rate = (double)(sum_frames(s) - t->prev_frames) / dt_s;
        t->cpu_pct = (s->cpu_seconds - t->prev_cpu_s) / dt_s * 100.0;
    } else {
        t->tick_rate = t->frame_rate = t->cpu_pct = -1.0;
    }
    t->prev_cpu_s = s->cpu_seconds;
    for (size_t i = 0; i < s->n_inputs; i++) {
        const Etrace__InputStats *is = s->inputs[i];
        struct top_in *ti = NULL;
        for (int k = 0; k < t->n_in && !ti; k++)
            if (!strcmp(t->in[k].name, is->name))
                ti = &t->in[k];
        if (!ti && t->n_in < TOP_MAX_IN) {
            ti = &t->in[t->n_in++];
            memset(ti, 0, sizeof(*ti));
            snprintf(ti->name, sizeof(ti->name), "%s", is->name);
            ti->fps = ti->stale_pct = -1.0;
        } else if (ti && have_prev && is->frames >= ti->frames) {
            ti->fps = (double)(is->frames - ti->frames) / dt_s;
            ti->stale_pct =
                d_ticks ? 100.0 * (double)(is->stale_ticks - ti->stale_ticks) / (double)d_ticks
                        : 0.0;
        }
        if (ti) {
            ti->frames = is->frames;
            ti->stale_ticks = is->stale_ticks;
        }
    }
    t->prev_tick = ticks;
    t->prev_frames = sum_frames(s);
    t->prev_time_ns = s->time_ns;
    for (size_t i = 0; i < s->n_projections; i++) {
        struct top_proj *p = find_proj(t, s->projections[i]->name);
        if (!p)
            continue;
        p->t_ns[p->head] = s->time_ns;
        p->drift[p->head] = s->projections[i]->drift_norm;
        p->head = (p->head + 1) % TOP_HIST;
        if (p->n < TOP_HIST)
            p->n++;
    }
    if (t->last)
        etrace__stats__free_unpacked(t->last, NULL);
    t->last = s;
}

/* The drift over the last minute, `cols` columns of one minute / cols each (the newest
 * sample in a column), scaled from the minute's minimum to its maximum. */
static void
sparkline(const struct top *t, const struct top_proj *p, int cols, char *out, size_t len)
{
    static const char *const blocks[8] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                          "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii[] = "_.-~=+*#";
    double col_v[TOP_SPARK_MAX];
    int has[TOP_SPARK_MAX] = {0};
    size_t off = 0;
    if (p->n == 0 || cols <= 0) {
        out[0] = '\0';
        return;
    }
    int64_t t_end = p->t_ns[(p->head + TOP_HIST - 1) % TOP_HIST];
    int64_t t_start = t_end - TOP_WINDOW_NS;
    double lo = 0.0, hi = 0.0;
    int any = 0;
    for (int k = 0; k < p->n; k++) {
        int i = (p->head + TOP_HIST - p->n + k) % TOP_HIST;
        if (p->t_ns[i] <= t_start)
            continue;
        int c = (int)((p->t_ns[i] - t_start) * cols / (TOP_WINDOW_NS + 1));
        if (c >= cols)
            c = cols - 1;
        col_v[c] = p->drift[i];
        has[c] = 1;
        if (!any || p->drift[i] < lo)
            lo = p->drift[i];
        if (!any || p->drift[i] > hi)
            hi = p->drift[i];
        any = 1;
    }
    for (int c = 0; c < cols && off + 4 < len; c++) {
        if (!has[c]) {
            out[off++] = ' ';
            continue;
        }
        int level = hi > lo ? (int)((col_v[c] - lo) / (hi - lo) * 7.0 + 0.5) : 0;
        if (t->utf8) {
            size_t n = strlen(blocks[level]);
            memcpy(out + off, blocks[level], n);
            off += n;
        } else {
            out[off++] = ascii[level];
        }
    }
    out[off] = '\0';
}

static void
fmt_us(char *buf, size_t len, int64_t ns)
{
    snprintf(buf, len, "%.1f us", (double)ns / 1e3);
}

static void
line_pct(const char *name, const Etrace__Percentiles *p)
{
    char a[32], b[32], c[32];
    if (!p || !p->count) {
        printf("%-12s (no ticks in this period)\033[K\r\n", name);
        return;
    }
    fmt_us(a, sizeof(a), p->p50_ns);
    fmt_us(b, sizeof(b), p->p99_ns);
    fmt_us(c, sizeof(c), p->max_ns);
    printf("%-12s p50 %-12s p99 %-12s max %-12s\033[K\r\n", name, a, b, c);
}

static int
term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 100;
}

/* "1d02h03m", "2h03m04s" or "3m04s": an uptime in 8 columns at most. */
static void
fmt_uptime(char *buf, size_t len, int64_t ns)
{
    long long sec = ns / 1000000000;
    if (sec >= 86400)
        snprintf(buf, len, "%lldd%02lldh%02lldm", sec / 86400, sec / 3600 % 24, sec / 60 % 60);
    else if (sec >= 3600)
        snprintf(buf, len, "%lldh%02lldm%02llds", sec / 3600, sec / 60 % 60, sec % 60);
    else
        snprintf(buf, len, "%lldm%02llds", sec / 60, sec % 60);
}

/* Redraws the whole screen from the top-left corner; every line clears its own rest and
 * none is wider than TOP_COLS (80) columns, so the view never wraps in an 80-column
 * terminal. */
static void
top_draw(const struct top *t)
{
    const Etrace__Stats *s = t->last;
    int cols = term_cols();
    char up[32], rate[32], cpu[32];
    if (cols > TOP_COLS)
        cols = TOP_COLS;
    printf("\033[H");
    if (t->away || !s) {
        printf("\033[1metraced top\033[0m  waiting for daemon%s  q quits\033[K\r\n",
               s ? " (last view below)" : "");
        printf("%.*s\033[K\r\n", cols, t->ep);
        if (!s) {
            printf("\033[J");
            fflush(stdout);
            return;
        }
    } else {
        fmt_uptime(up, sizeof(up), s->uptime_ns);
        printf("\033[1metraced top\033[0m  model %-20.20s up %-9s %-7s q quits\033[K\r\n",
               s->model_name ? s->model_name : "?", up, s->paused ? "paused" : "running");
        printf("stats #%-6llu tick %-12llu learning %-3s lr %-10.4g hash %016llx\033[K\r\n",
               (unsigned long long)s->seq, (unsigned long long)s->tick, s->learning ? "on" : "off",
               s->lr, (unsigned long long)s->model_hash);
    }
    if (t->tick_rate >= 0.0)
        snprintf(rate, sizeof(rate), "%.1f", t->tick_rate);
    else
        snprintf(rate, sizeof(rate), "-");
    if (t->cpu_pct >= 0.0)
        snprintf(cpu, sizeof(cpu), "%.1f%%", t->cpu_pct);
    else
        snprintf(cpu, sizeof(cpu), "-");
    printf("tick rate %9s /s  period %.1f us  cpu %-7s rss %.1f MiB\033[K\r\n", rate,
           (double)s->period_ns / 1e3, cpu, (double)s->rss_bytes / 1048576.0);
    line_pct("tick time", s->tick_time);
    line_pct("lateness", s->lateness);
    printf("skipped %-8llu overruns %-8llu invalid %-6llu refused %-6llu resets %llu\033[K\r\n",
           (unsigned long long)s->skipped, (unsigned long long)s->overruns,
           (unsigned long long)s->invalid_ticks, (unsigned long long)s->updates_refused,
           (unsigned long long)s->state_resets);
    printf("rejected   ");
    for (size_t i = 0; i < s->n_sockets; i++)
        if (strcmp(s->sockets[i]->name, "output") && strcmp(s->sockets[i]->name, "stats"))
            printf(" %s %llu (of %llu)", s->sockets[i]->name,
                   (unsigned long long)rejected(s->sockets[i]),
                   (unsigned long long)(s->sockets[i]->accepted + rejected(s->sockets[i])));
    printf("\033[K\r\n");
    printf("loss avg %-11.5g reward avg %-11.5g steps %-10llu swaps %llu\033[K\r\n", s->loss_avg,
           s->reward_avg, (unsigned long long)s->optimizer_steps, (unsigned long long)s->swaps);
    printf("\033[7m%-24s %12s %12s %12s%*s\033[0m\033[K\r\n", "input", "frames/s", "stale %",
           "frames", cols - 63 > 0 ? cols - 63 : 0, "");
    for (int i = 0; i < t->n_in; i++) {
        const struct top_in *ti = &t->in[i];
        char fps[32] = "-", st[32] = "-";
        if (ti->fps >= 0.0)
            snprintf(fps, sizeof(fps), "%.1f", ti->fps);
        if (ti->stale_pct >= 0.0)
            snprintf(st, sizeof(st), "%.1f", ti->stale_pct);
        printf("%-24.24s %12s %12s %12llu\033[K\r\n", ti->name, fps, st,
               (unsigned long long)ti->frames);
    }
    if (s->n_cells) {
        printf("\033[7m%-24s %12s%*s\033[0m\033[K\r\n", "cell", "spikes/tick",
               cols - 37 > 0 ? cols - 37 : 0, "");
        for (size_t i = 0; i < s->n_cells; i++)
            printf("%-24.24s %12.4f\033[K\r\n", s->cells[i]->name, s->cells[i]->rate);
    }
    int spark = cols - 16 - 3 * 12 - 4;
    if (spark > TOP_SPARK_MAX)
        spark = TOP_SPARK_MAX;
    if (spark < 0)
        spark = 0;
    printf("\033[7m%-16s %11s %11s %11s  %-*s\033[0m\033[K\r\n", "projection", "|W-W0|", "|dW|",
           "|grad|", spark, spark >= 18 ? "drift, last minute" : "");
    for (size_t i = 0; i < s->n_projections; i++) {
        const Etrace__ProjectionStats *ps = s->projections[i];
        char line[TOP_SPARK_MAX * 4 + 8] = "";
        for (int k = 0; k < t->n_proj; k++)
            if (!strcmp(t->proj[k].name, ps->name))
                sparkline(t, &t->proj[k], spark, line, sizeof(line));
        printf("%-16.16s %11.4e %11.4e %11.4e  %s\033[K\r\n", ps->name, ps->drift_norm,
               ps->delta_norm, ps->grad_norm, line);
    }
    printf("\033[J");
    fflush(stdout);
}

/* Reads what was typed; returns 1 when it asks to quit. */
static int
top_keys(int *stdin_open)
{
    struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
    while (*stdin_open && poll(&pfd, 1, 0) > 0) {
        char buf[64];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n <= 0) {
            *stdin_open = 0; /* EOF (not a terminal): only a signal stops us then */
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 3 /* ^C in raw mode */)
                return 1;
    }
    return 0;
}

int
ctl_top_run(const char *stats_ep, const char *const curve[3])
{
    char def[4200];
    struct termios saved, raw;
    int is_tty = isatty(STDIN_FILENO), stdin_open = 1;
    struct top *t = calloc(1, sizeof(*t));
    if (!t) {
        fprintf(stderr, "etracectl: out of memory\n");
        return 1;
    }
    if (!stats_ep && etrace_default_endpoint("stats", def, sizeof(def)) == 0)
        stats_ep = def;
    etrace_sub_t *sub = curve
                            ? etrace_sub_new_curve(stats_ep, "stats", curve[0], curve[1], curve[2])
                            : etrace_sub_new(stats_ep, "stats");
    if (!sub) {
        fprintf(stderr, "etracectl: cannot subscribe to %s\n", stats_ep ? stats_ep : "stats");
        free(t);
        return 1;
    }
    const char *lang = getenv("LC_ALL");
    if (!lang || !*lang)
        lang = getenv("LC_CTYPE");
    if (!lang || !*lang)
        lang = getenv("LANG");
    t->utf8 = lang && (strstr(lang, "UTF-8") || strstr(lang, "utf8") || strstr(lang, "UTF8"));
    t->ep = stats_ep ? stats_ep : "stats";
    t->tick_rate = t->frame_rate = t->cpu_pct = -1.0;
    t->last_rx_ms = now_ms();

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (is_tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        is_tty = 0;
    }
    printf("\033[?1049h\033[?25l\033[2J"); /* alternate screen, cursor hidden */
    top_draw(t);

    int64_t last_draw = now_ms();
    while (!top_stop) {
        Etrace__Stats *s = NULL;
        int rc = etrace_sub_recv_stats(sub, TOP_POLL_MS, &s);
        int64_t now = now_ms();
        if (rc == ETRACE_OK) {
            top_take(t, s);
            t->last_rx_ms = now;
            t->away = 0;
            top_draw(t);
            last_draw = now;
        } else {
            int64_t period_ms = t->last ? t->last->interval_ns / 1000000 : 0;
            int64_t away_ms = 3 * period_ms > TOP_AWAY_MIN_MS ? 3 * period_ms : TOP_AWAY_MIN_MS;
            int away = !t->last || now - t->last_rx_ms > away_ms;
            if (away != t->away || now - last_draw >= 1000) {
                t->away = away;
                top_draw(t);
                last_draw = now;
            }
        }
        if (top_keys(&stdin_open))
            break;
    }

    printf("\033[?25h\033[?1049l");
    fflush(stdout);
    if (is_tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    etrace_sub_free(&sub);
    if (t->last)
        etrace__stats__free_unpacked(t->last, NULL);
    free(t);
    return 0;
}
