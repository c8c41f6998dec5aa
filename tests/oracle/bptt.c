/* The independent reference of bptt.h: hand-written cells (forward and reverse mode),
 * an exact BPTT, and DESIGN §4.2's rules transcribed literally. Plain double loops;
 * clarity over speed. */
#include "bptt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char oracle_adapt_yaml[] =
    "    states: {v: 0.0, a: 0.0}\n"
    "    slots: [i]\n"
    "    params: {tau_v: 20.0e-3, tau_a: 200.0e-3, beta: 1.8, v_th: 1.0}\n"
    "    define:\n"
    "      thr: v_th + beta * a\n"
    "      s: spike((v - thr) / v_th)\n"
    "    update:\n"
    "      v: v + dt / tau_v * (-v + i) - thr * s\n"
    "      a: a * exp(-dt / tau_a) + s\n"
    "    output: spike((v - v_th - beta * a) / v_th)\n"
    "    surrogate: {kind: sigmoid, alpha: 4.0}\n";

const char oracle_tri_yaml[] =
    "    states: {v: 0.0, w: 0.0, q: 0.5}\n"
    "    slots: [i, j]\n"
    "    params: {tau: 10.0e-3, tau_w: 50.0e-3, k: 0.7, th: 0.6}\n"
    "    define:\n"
    "      s: spike((v - th) / th)\n"
    "      drive: 0.15 * tanh(i) + 0.05 * sigmoid(j) * q ** 2\n"
    "    update:\n"
    "      v: v * exp(-dt / tau) + drive - 0.05 * w - stop_gradient(v) * s\n"
    "      w: w + dt / tau_w * (relu(min(v, 0.5) - 0.2) - w) + k * s * abs(q - 0.3)\n"
    "      q: clip(q + 0.1 * (sqrt(1 + v * v) - 1) - 0.05 * max(w, 0.1)"
    " - 0.02 * log(1 + w * w), 0.05, 1.0)\n"
    "    output: spike((v - th) / th)\n"
    "    surrogate: {kind: gaussian, sigma: 0.5}\n";

/* ---- cells ------------------------------------------------------------------------- */

void
oracle_cell_defaults(enum oracle_kind kind, double dt, struct oracle_cell *c)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->dt = dt;
    /* DESIGN §3 */
    c->tau = 20.0e-3;
    c->tau_b = 200.0e-3;
    c->tau_syn = 5.0e-3;
    c->beta = 1.8;
    c->v_th = 1.0;
    c->v_reset = 0.0;
    c->v_rest = 0.0;
    c->r = 1.0;
    c->a = 0.02;
    c->b = 0.2;
    c->c = -65.0;
    c->d = 8.0;
    c->surr = ORACLE_SURR_RELU;
    c->alpha = 0.3;
    c->width = 1.0;
    c->sigma = 0.5;
    switch (kind) {
    case ORACLE_IZHIKEVICH:
        c->v_th = 30.0;
        break;
    case ORACLE_ADAPT: /* oracle_adapt_yaml */
        c->tau_v = 20.0e-3;
        c->tau_a = 200.0e-3;
        c->beta = 1.8;
        c->v_th = 1.0;
        c->surr = ORACLE_SURR_SIGMOID;
        c->alpha = 4.0;
        break;
    case ORACLE_TRI: /* oracle_tri_yaml */
        c->tau = 10.0e-3;
        c->tau_w = 50.0e-3;
        c->k = 0.7;
        c->th = 0.6;
        c->surr = ORACLE_SURR_GAUSSIAN;
        c->sigma = 0.5;
        break;
    default:
        break;
    }
}

int
oracle_cell_K(enum oracle_kind kind)
{
    switch (kind) {
    case ORACLE_LIF:
    case ORACLE_GRU:
    case ORACLE_LINEAR:
        return 1;
    case ORACLE_TRI:
        return 3;
    default:
        return 2;
    }
}

int
oracle_cell_S(enum oracle_kind kind)
{
    switch (kind) {
    case ORACLE_LIF:
    case ORACLE_ALIF:
    case ORACLE_TRI:
        return 2;
    case ORACLE_GRU:
    case ORACLE_LSTM:
        return 4;
    default:
        return 1;
    }
}

int
oracle_cell_spiking(enum oracle_kind kind)
{
    return !(kind == ORACLE_GRU || kind == ORACLE_LSTM || kind == ORACLE_LINEAR);
}

void
oracle_cell_init(const struct oracle_cell *c, double *h)
{
    for (int k = 0; k < ORACLE_MAX_K; k++)
        h[k] = 0.0;
    if (c->kind == ORACLE_IZHIKEVICH) {
        h[0] = -65.0;
        h[1] = -13.0;
    } else if (c->kind == ORACLE_TRI) {
        h[2] = 0.5;
    }
}

/* The surrogate: the derivative DESIGN §2.2 gives spike() at x. */
static double
surr(const struct oracle_cell *c, double x)
{
    switch (c->surr) {
    case ORACLE_SURR_RELU: {
        double m = c->width - fabs(x);
        return m > 0.0 ? c->alpha * m : 0.0;
    }
    case ORACLE_SURR_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-c->alpha * x));
        return c->alpha * s * (1.0 - s);
    }
    case ORACLE_SURR_GAUSSIAN:
        return exp(-x * x / (2.0 * c->sigma * c->sigma)) /
               (sqrt(2.0 * 3.14159265358979323846) * c->sigma);
    case ORACLE_SURR_EXP:
        return c->alpha / 2.0 * exp(-c->alpha * fabs(x));
    }
    return 0.0;
}

static double
spike(double x, double *margin)
{
    if (margin && fabs(x) < *margin)
        *margin = fabs(x);
    return x > 0.0 ? 1.0 : 0.0;
}

static double
sigm(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* The forward pass of every kind, written once; vjp recomputes what it needs. */
void
oracle_cell_forward(const struct oracle_cell *c, const double *h, const double *s, double *hn,
                    double *out, double *margin)
{
    double dt = c->dt;
    switch (c->kind) {
    case ORACLE_LIF: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau);
        double v = h[0], i = s[0], delta = s[1];
        double so = spike((v - c->v_th) / c1, margin);
        double vr = c->hard ? v - (v - c->v_reset) * so : v - c1 * so;
        hn[0] = c->v_rest + c->r * i + (vr - c->v_rest - c->r * i) * a + delta;
        *out = spike((hn[0] - c->v_th) / c1, margin);
        break;
    }
    case ORACLE_ALIF: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau), ab = exp(-dt / c->tau_b);
        double v = h[0], b = h[1], i = s[0], delta = s[1];
        double thr = c->v_th + c->beta * b;
        double so = spike((v - thr) / c1, margin);
        double vr = c->hard ? v - (v - c->v_reset) * so : v - (thr - c->v_reset) * so;
        hn[0] = c->v_rest + c->r * i + (vr - c->v_rest - c->r * i) * a + delta;
        hn[1] = b * ab + so;
        *out = spike((hn[0] - c->v_th - c->beta * hn[1]) / c1, margin);
        break;
    }
    case ORACLE_LIF_EXPON: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau), ag = exp(-dt / c->tau_syn);
        double v = h[0], g = h[1], delta = s[0];
        double so = spike((v - c->v_th) / c1, margin);
        double vr = c->hard ? v - (v - c->v_reset) * so : v - c1 * so;
        hn[0] = c->v_rest + c->r * g + (vr - c->v_rest - c->r * g) * a; /* old g */
        hn[1] = g * ag + delta;
        *out = spike((hn[0] - c->v_th) / c1, margin);
        break;
    }
    case ORACLE_IZHIKEVICH: {
        double hm = dt * 1000.0; /* the step in ms */
        double v = h[0], u = h[1], i = s[0];
        double so = spike((v - c->v_th) / c->v_th, margin);
        double vr = v - (v - c->c) * so;
        double ur = u + c->d * so;
        hn[0] = vr + hm * (0.04 * vr * vr + 5.0 * vr + 140.0 - ur + i);
        hn[1] = ur + hm * c->a * (c->b * vr - ur);
        *out = spike((hn[0] - c->v_th) / c->v_th, margin);
        break;
    }
    case ORACLE_GRU: {
        double zs = sigm(s[0]), rs = sigm(s[1]);
        double n = tanh(s[2] + rs * s[3]);
        hn[0] = (1.0 - zs) * n + zs * h[0];
        *out = hn[0];
        break;
    }
    case ORACLE_LSTM: {
        double cn = sigm(s[1]) * h[0] + sigm(s[0]) * tanh(s[2]);
        hn[0] = cn;
        hn[1] = sigm(s[3]) * tanh(cn);
        *out = hn[1];
        break;
    }
    case ORACLE_ADAPT: {
        double v = h[0], a = h[1], i = s[0];
        double thr = c->v_th + c->beta * a;
        double so = spike((v - thr) / c->v_th, margin);
        hn[0] = v + dt / c->tau_v * (-v + i) - thr * so;
        hn[1] = a * exp(-dt / c->tau_a) + so;
        *out = spike((hn[0] - c->v_th - c->beta * hn[1]) / c->v_th, margin);
        break;
    }
    case ORACLE_TRI: {
        double v = h[0], w = h[1], q = h[2], i = s[0], j = s[1];
        double so = spike((v - c->th) / c->th, margin);
        double drive = 0.15 * tanh(i) + 0.05 * sigm(j) * (q * q);
        hn[0] = v * exp(-dt / c->tau) + drive - 0.05 * w - v * so;
        double mv = v <= 0.5 ? v : 0.5;
        double rv = mv - 0.2 > 0.0 ? mv - 0.2 : 0.0;
        hn[1] = w + dt / c->tau_w * (rv - w) + c->k * so * fabs(q - 0.3);
        double mw = w >= 0.1 ? w : 0.1;
        double xq = q + 0.1 * (sqrt(1.0 + v * v) - 1.0) - 0.05 * mw - 0.02 * log(1.0 + w * w);
        hn[2] = xq < 0.05 ? 0.05 : xq > 1.0 ? 1.0 : xq;
        *out = spike((hn[0] - c->th) / c->th, margin);
        break;
    }
    case ORACLE_LINEAR:
        hn[0] = s[0];
        *out = hn[0];
        break;
    }
}

/* Reverse mode, by hand, kind by kind: A* are the adjoints of the new states, adj_* of
 * the intermediates, read from the forward formulas above bottom-up. A stop_gradient
 * factor passes nothing to its argument. */
void
oracle_cell_vjp(const struct oracle_cell *c, const double *h, const double *s, const double *A,
                double *ao, double *as)
{
    double dt = c->dt;
    for (int k = 0; k < ORACLE_MAX_K; k++)
        ao[k] = 0.0;
    for (int k = 0; k < ORACLE_MAX_S; k++)
        as[k] = 0.0;
    switch (c->kind) {
    case ORACLE_LIF: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau);
        double v = h[0];
        double u = (v - c->v_th) / c1;
        double adj_vr = A[0] * a;
        as[0] = A[0] * c->r * (1.0 - a); /* i */
        as[1] = A[0];                    /* delta */
        /* vr = v - X * so, X = c1 (soft) or stop_gradient(v - v_reset) (hard) */
        double X = c->hard ? v - c->v_reset : c1;
        double adj_so = -adj_vr * X;
        ao[0] = adj_vr + adj_so * surr(c, u) / c1;
        break;
    }
    case ORACLE_ALIF: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau), ab = exp(-dt / c->tau_b);
        double v = h[0], b = h[1];
        double thr = c->v_th + c->beta * b;
        double u = (v - thr) / c1;
        double so = u > 0.0 ? 1.0 : 0.0;
        double adj_vr = A[0] * a;
        as[0] = A[0] * c->r * (1.0 - a);
        as[1] = A[0];
        double adj_b = A[1] * ab, adj_so = A[1], adj_thr = 0.0, adj_v = adj_vr;
        if (c->hard) {
            adj_so += -adj_vr * (v - c->v_reset);
        } else {
            adj_so += -adj_vr * (thr - c->v_reset);
            adj_thr += -adj_vr * so;
        }
        double adj_u = adj_so * surr(c, u);
        adj_v += adj_u / c1;
        adj_thr += -adj_u / c1;
        adj_b += adj_thr * c->beta;
        ao[0] = adj_v;
        ao[1] = adj_b;
        break;
    }
    case ORACLE_LIF_EXPON: {
        double c1 = c->v_th - c->v_reset, a = exp(-dt / c->tau), ag = exp(-dt / c->tau_syn);
        double v = h[0];
        double u = (v - c->v_th) / c1;
        double adj_g = A[1] * ag;
        as[0] = A[1];
        double adj_vr = A[0] * a;
        adj_g += A[0] * c->r * (1.0 - a);
        double X = c->hard ? v - c->v_reset : c1;
        double adj_so = -adj_vr * X;
        ao[0] = adj_vr + adj_so * surr(c, u) / c1;
        ao[1] = adj_g;
        break;
    }
    case ORACLE_IZHIKEVICH: {
        double hm = dt * 1000.0;
        double v = h[0];
        double u0 = (v - c->v_th) / c->v_th;
        double so = u0 > 0.0 ? 1.0 : 0.0;
        double vr = v - (v - c->c) * so;
        double adj_vr = A[0] * (1.0 + hm * (0.08 * vr + 5.0)) + A[1] * hm * c->a * c->b;
        double adj_ur = -A[0] * hm + A[1] * (1.0 - hm * c->a);
        as[0] = A[0] * hm;
        double adj_so = adj_ur * c->d - adj_vr * (v - c->c); /* (v - c) is stop_gradient */
        ao[0] = adj_vr + adj_so * surr(c, u0) / c->v_th;
        ao[1] = adj_ur;
        break;
    }
    case ORACLE_GRU: {
        double zs = sigm(s[0]), rs = sigm(s[1]);
        double n = tanh(s[2] + rs * s[3]);
        ao[0] = A[0] * zs;
        double adj_zs = A[0] * (h[0] - n);
        double adj_pre = A[0] * (1.0 - zs) * (1.0 - n * n);
        double adj_rs = adj_pre * s[3];
        as[0] = adj_zs * zs * (1.0 - zs);
        as[1] = adj_rs * rs * (1.0 - rs);
        as[2] = adj_pre;
        as[3] = adj_pre * rs;
        break;
    }
    case ORACLE_LSTM: {
        double si = sigm(s[0]), sf = sigm(s[1]), tg = tanh(s[2]), so = sigm(s[3]);
        double cn = sf * h[0] + si * tg;
        double tc = tanh(cn);
        double adj_cn = A[0] + A[1] * so * (1.0 - tc * tc);
        as[3] = A[1] * tc * so * (1.0 - so);
        ao[0] = adj_cn * sf;
        as[1] = adj_cn * h[0] * sf * (1.0 - sf);
        as[0] = adj_cn * tg * si * (1.0 - si);
        as[2] = adj_cn * si * (1.0 - tg * tg);
        ao[1] = 0.0;
        break;
    }
    case ORACLE_ADAPT: {
        double v = h[0], a = h[1];
        double thr = c->v_th + c->beta * a;
        double u = (v - thr) / c->v_th;
        double so = u > 0.0 ? 1.0 : 0.0;
        double kv = dt / c->tau_v;
        double adj_v = A[0] * (1.0 - kv);
        as[0] = A[0] * kv;
        double adj_thr = -A[0] * so;
        double adj_so = -A[0] * thr + A[1];
        double adj_a = A[1] * exp(-dt / c->tau_a);
        double adj_u = adj_so * surr(c, u);
        adj_v += adj_u / c->v_th;
        adj_thr += -adj_u / c->v_th;
        adj_a += adj_thr * c->beta;
        ao[0] = adj_v;
        ao[1] = adj_a;
        break;
    }
    case ORACLE_TRI: {
        double v = h[0], w = h[1], q = h[2], i = s[0], j = s[1];
        double u = (v - c->th) / c->th;
        double so = u > 0.0 ? 1.0 : 0.0;
        double ti = tanh(i), sj = sigm(j);
        double kw = dt / c->tau_w;
        double sq = sqrt(1.0 + v * v);
        double mw = w >= 0.1 ? w : 0.1;
        double xq = q + 0.1 * (sq - 1.0) - 0.05 * mw - 0.02 * log(1.0 + w * w);
        double adj_v = 0.0, adj_w = 0.0, adj_q = 0.0, adj_so = 0.0;
        /* q: clip passes the derivative of x inside [lo, hi], bounds included */
        double adj_xq = (xq >= 0.05 && xq <= 1.0) ? A[2] : 0.0;
        adj_q += adj_xq;
        adj_v += adj_xq * 0.1 * v / sq;
        adj_w += adj_xq * (-0.05 * (w >= 0.1 ? 1.0 : 0.0) - 0.02 * 2.0 * w / (1.0 + w * w));
        /* w: w + kw (relu(min(v, 0.5) - 0.2) - w) + k so |q - 0.3| */
        adj_w += A[1] * (1.0 - kw);
        double mv = v <= 0.5 ? v : 0.5;
        double adj_rv = A[1] * kw;
        double adj_mv = mv - 0.2 > 0.0 ? adj_rv : 0.0;
        adj_v += v <= 0.5 ? adj_mv : 0.0;
        adj_so += A[1] * c->k * fabs(q - 0.3);
        double dq = q - 0.3;
        adj_q += A[1] * c->k * so * (dq > 0.0 ? 1.0 : dq < 0.0 ? -1.0 : 0.0);
        /* v: v e + drive - 0.05 w - stop_gradient(v) so */
        adj_v += A[0] * exp(-dt / c->tau);
        adj_w += -0.05 * A[0];
        adj_so += -A[0] * v;
        double adj_drive = A[0];
        as[0] = adj_drive * 0.15 * (1.0 - ti * ti);
        as[1] = adj_drive * 0.05 * (q * q) * sj * (1.0 - sj);
        adj_q += adj_drive * 0.05 * sj * 2.0 * q;
        adj_v += adj_so * surr(c, u) / c->th;
        ao[0] = adj_v;
        ao[1] = adj_w;
        ao[2] = adj_q;
        break;
    }
    case ORACLE_LINEAR:
        as[0] = A[0];
        break;
    }
}

void
oracle_cell_dout(const struct oracle_cell *c, const double *hn, double *dout)
{
    for (int k = 0; k < ORACLE_MAX_K; k++)
        dout[k] = 0.0;
    switch (c->kind) {
    case ORACLE_LIF:
    case ORACLE_LIF_EXPON: {
        double c1 = c->v_th - c->v_reset;
        dout[0] = surr(c, (hn[0] - c->v_th) / c1) / c1;
        break;
    }
    case ORACLE_ALIF: {
        double c1 = c->v_th - c->v_reset;
        double sp = surr(c, (hn[0] - c->v_th - c->beta * hn[1]) / c1);
        dout[0] = sp / c1;
        dout[1] = -c->beta * sp / c1;
        break;
    }
    case ORACLE_IZHIKEVICH:
        dout[0] = surr(c, (hn[0] - c->v_th) / c->v_th) / c->v_th;
        break;
    case ORACLE_GRU:
    case ORACLE_LINEAR:
        dout[0] = 1.0;
        break;
    case ORACLE_LSTM:
        dout[1] = 1.0;
        break;
    case ORACLE_ADAPT: {
        double sp = surr(c, (hn[0] - c->v_th - c->beta * hn[1]) / c->v_th);
        dout[0] = sp / c->v_th;
        dout[1] = -c->beta * sp / c->v_th;
        break;
    }
    case ORACLE_TRI:
        dout[0] = surr(c, (hn[0] - c->th) / c->th) / c->th;
        break;
    }
}

void
oracle_cell_jacobians(const struct oracle_cell *c, const double *h, const double *s,
                      double D[ORACLE_MAX_K][ORACLE_MAX_K], double F[ORACLE_MAX_K][ORACLE_MAX_S])
{
    int K = oracle_cell_K(c->kind);
    for (int k = 0; k < K; k++) {
        double e[ORACLE_MAX_K] = {0}, ao[ORACLE_MAX_K], as[ORACLE_MAX_S];
        e[k] = 1.0;
        oracle_cell_vjp(c, h, s, e, ao, as);
        for (int j = 0; j < ORACLE_MAX_K; j++)
            D[k][j] = ao[j];
        for (int j = 0; j < ORACLE_MAX_S; j++)
            F[k][j] = as[j];
    }
}

/* ---- the network ---------------------------------------------------------------------- */

int
oracle_net_I(const struct oracle_net *n)
{
    return n->elemwise ? n->n_to * n->N : n->n_x + (n->recurrent ? n->N : 0);
}

int
oracle_net_O(const struct oracle_net *n)
{
    return n->n_to * n->N;
}

void
oracle_tape_free(struct oracle_tape *tp)
{
    free(tp->x);
    free(tp->slot);
    free(tp->h);
    free(tp->out);
    free(tp->o);
    free(tp->dlo);
    memset(tp, 0, sizeof *tp);
}

int
oracle_forward(const struct oracle_net *n, int T, const double *xs, const double *tgt,
               const unsigned char *has_tgt, struct oracle_tape *tp)
{
    int I = oracle_net_I(n), O = oracle_net_O(n), N = n->N, M = n->M;
    int K = oracle_cell_K(n->cell.kind), S = oracle_cell_S(n->cell.kind);
    memset(tp, 0, sizeof *tp);
    tp->T = T;
    tp->I = I;
    tp->K = K;
    tp->S = S;
    tp->N = N;
    tp->M = M;
    tp->margin = INFINITY;
    tp->x = calloc((size_t)T * I, sizeof(double));
    tp->slot = calloc((size_t)T * S * N, sizeof(double));
    tp->h = calloc((size_t)(T + 1) * K * N, sizeof(double));
    tp->out = calloc((size_t)T * N, sizeof(double));
    tp->o = calloc((size_t)T * M, sizeof(double));
    tp->dlo = calloc((size_t)T * M, sizeof(double));
    double *y = calloc((size_t)O, sizeof(double));
    if (!tp->x || !tp->slot || !tp->h || !tp->out || !tp->o || !tp->dlo || !y) {
        free(y);
        oracle_tape_free(tp);
        return -1;
    }
    for (int nn = 0; nn < N; nn++) {
        double h0[ORACLE_MAX_K];
        oracle_cell_init(&n->cell, h0);
        for (int k = 0; k < K; k++)
            tp->h[k * N + nn] = h0[k];
    }
    for (int t = 0; t < T; t++) {
        double *x = tp->x + (size_t)t * I;
        /* the pre-synaptic vector: the input, then (recurrent) the previous output, which
         * is 0 before the first tick (the output of the initial states) */
        for (int i = 0; i < n->n_x && i < I; i++)
            x[i] = xs[(size_t)t * n->n_x + i];
        if (n->recurrent)
            for (int nn = 0; nn < N; nn++)
                x[n->n_x + nn] = t > 0 ? tp->out[(size_t)(t - 1) * N + nn] : 0.0;
        for (int o = 0; o < O; o++) {
            double acc = 0.0;
            if (n->elemwise)
                acc = x[o] * n->w_in[o];
            else
                for (int i = 0; i < I; i++)
                    acc += x[i] * n->w_in[(size_t)i * O + o];
            y[o] = acc + (n->b_in ? n->b_in[o] : 0.0);
        }
        double *sl = tp->slot + (size_t)t * S * N;
        for (int b = 0; b < n->n_to; b++)
            for (int nn = 0; nn < N; nn++)
                sl[n->to_slots[b] * N + nn] += y[b * N + nn];
        const double *hp = tp->h + (size_t)t * K * N;
        double *hn = tp->h + (size_t)(t + 1) * K * N;
        for (int nn = 0; nn < N; nn++) {
            double ho[ORACLE_MAX_K] = {0}, hv[ORACLE_MAX_K] = {0}, sv[ORACLE_MAX_S] = {0}, out;
            for (int k = 0; k < K; k++)
                ho[k] = hp[k * N + nn];
            for (int s = 0; s < S; s++)
                sv[s] = sl[s * N + nn];
            oracle_cell_forward(&n->cell, ho, sv, hv, &out, &tp->margin);
            for (int k = 0; k < K; k++)
                hn[k * N + nn] = hv[k];
            tp->out[(size_t)t * N + nn] = out;
            if (oracle_cell_spiking(n->cell.kind))
                tp->spikes += out;
        }
        /* the linear readout and the loss */
        for (int m = 0; m < M; m++) {
            double acc = 0.0;
            for (int nn = 0; nn < N; nn++)
                acc += tp->out[(size_t)t * N + nn] * n->w_out[(size_t)nn * M + m];
            double o = acc + (n->b_out ? n->b_out[m] : 0.0);
            tp->o[(size_t)t * M + m] = o;
            if (!has_tgt || has_tgt[t]) {
                double d = o - tgt[(size_t)t * M + m];
                tp->loss += d * d / M;
                tp->dlo[(size_t)t * M + m] = 2.0 * d / M;
            }
        }
    }
    free(y);
    return 0;
}

static void
zero_grad(const struct oracle_net *n, const struct oracle_grad *g)
{
    int I = oracle_net_I(n), O = oracle_net_O(n);
    size_t nw = n->elemwise ? (size_t)O : (size_t)I * O;
    if (g->w_in)
        memset(g->w_in, 0, nw * sizeof(double));
    if (g->b_in)
        memset(g->b_in, 0, (size_t)O * sizeof(double));
    if (g->w_out)
        memset(g->w_out, 0, (size_t)n->N * n->M * sizeof(double));
    if (g->b_out)
        memset(g->b_out, 0, (size_t)n->M * sizeof(double));
}

/* dL^t/d(hidden output)[N] = w_out dL^t/do (the readout is linear: d o / d y = 1) */
static void
dl_dout(const struct oracle_net *n, const struct oracle_tape *tp, int t, double *dl)
{
    for (int nn = 0; nn < n->N; nn++) {
        double acc = 0.0;
        for (int m = 0; m < n->M; m++)
            acc += n->w_out[(size_t)nn * n->M + m] * tp->dlo[(size_t)t * n->M + m];
        dl[nn] = acc;
    }
}

int
oracle_bptt(const struct oracle_net *n, const struct oracle_tape *tp, const struct oracle_grad *g)
{
    int T = tp->T, I = tp->I, K = tp->K, S = tp->S, N = tp->N, M = tp->M;
    int O = oracle_net_O(n);
    zero_grad(n, g);
    double *adj_h = calloc((size_t)K * N, sizeof(double)); /* dL/dh^t from ticks > t */
    double *adj_out = calloc((size_t)N, sizeof(double));   /* dL/dout^t from tick t+1 */
    double *dl = calloc((size_t)N, sizeof(double));
    double *adj_y = calloc((size_t)O, sizeof(double));
    if (!adj_h || !adj_out || !dl || !adj_y) {
        free(adj_h);
        free(adj_out);
        free(dl);
        free(adj_y);
        return -1;
    }
    for (int t = T - 1; t >= 0; t--) {
        dl_dout(n, tp, t, dl);
        for (int nn = 0; nn < N; nn++)
            dl[nn] += adj_out[nn]; /* the recurrent path: out^t read at tick t+1 */
        const double *hp = tp->h + (size_t)t * K * N;
        const double *hn = tp->h + (size_t)(t + 1) * K * N;
        const double *sl = tp->slot + (size_t)t * S * N;
        for (int nn = 0; nn < N; nn++) {
            double ho[ORACLE_MAX_K] = {0}, hv[ORACLE_MAX_K] = {0}, sv[ORACLE_MAX_S] = {0};
            double dout[ORACLE_MAX_K], lam[ORACLE_MAX_K] = {0}, ao[ORACLE_MAX_K], as[ORACLE_MAX_S];
            for (int k = 0; k < K; k++) {
                ho[k] = hp[k * N + nn];
                hv[k] = hn[k * N + nn];
            }
            for (int s = 0; s < S; s++)
                sv[s] = sl[s * N + nn];
            oracle_cell_dout(&n->cell, hv, dout);
            /* the adjoint of h^t: this tick's loss through the output, plus the future
             * through the element-wise recurrence */
            for (int k = 0; k < K; k++)
                lam[k] = dout[k] * dl[nn] + adj_h[k * N + nn];
            oracle_cell_vjp(&n->cell, ho, sv, lam, ao, as);
            for (int k = 0; k < K; k++)
                adj_h[k * N + nn] = ao[k];
            for (int b = 0; b < n->n_to; b++)
                adj_y[b * N + nn] = as[n->to_slots[b]];
        }
        const double *x = tp->x + (size_t)t * I;
        for (int o = 0; o < O; o++) {
            if (g->b_in)
                g->b_in[o] += adj_y[o];
            if (g->w_in && n->elemwise)
                g->w_in[o] += x[o] * adj_y[o];
        }
        if (g->w_in && !n->elemwise)
            for (int i = 0; i < I; i++)
                for (int o = 0; o < O; o++)
                    g->w_in[(size_t)i * O + o] += x[i] * adj_y[o];
        /* the previous output, read by a recurrent w_in in this tick */
        for (int nn = 0; nn < N; nn++) {
            double acc = 0.0;
            if (n->recurrent)
                for (int o = 0; o < O; o++)
                    acc += n->w_in[(size_t)(n->n_x + nn) * O + o] * adj_y[o];
            adj_out[nn] = acc;
        }
        for (int m = 0; m < M; m++) {
            double d = tp->dlo[(size_t)t * M + m];
            if (g->b_out)
                g->b_out[m] += d;
            if (g->w_out)
                for (int nn = 0; nn < N; nn++)
                    g->w_out[(size_t)nn * M + m] += tp->out[(size_t)t * N + nn] * d;
        }
    }
    free(adj_h);
    free(adj_out);
    free(dl);
    free(adj_y);
    return 0;
}

/* ---- DESIGN §4.2 transcribed --------------------------------------------------------- */

/* One projection's traces. Columns o of a projection into cell slots to_slots[b] are
 * o = b * N + nn; column o uses neuron nn's D, f = d h[:, nn] / d slot, g[:, nn]. */
struct ptrace {
    enum oracle_rule rule;
    int I, O, N, K, n_to, elemwise;
    const int *to_slots;
    double *E;  /* D-RTRL: [K][I][O] dense, [K][O] elemwise */
    double *Eb; /* D-RTRL bias: [K][O] */
    double *ex; /* ES: [I] */
    double *ef; /* ES: [K][O] */
};

static int
ptrace_init(struct ptrace *p, enum oracle_rule rule, int I, int O, int N, int K, int n_to,
            const int *to_slots, int elemwise)
{
    *p = (struct ptrace){rule, I, O, N, K, n_to, elemwise, to_slots, NULL, NULL, NULL, NULL};
    size_t nE = elemwise ? (size_t)K * O : (size_t)K * I * O;
    p->E = calloc(nE, sizeof(double));
    p->Eb = calloc((size_t)K * O, sizeof(double));
    p->ex = calloc((size_t)I, sizeof(double));
    p->ef = calloc((size_t)K * O, sizeof(double));
    return p->E && p->Eb && p->ex && p->ef ? 0 : -1;
}

static void
ptrace_free(struct ptrace *p)
{
    free(p->E);
    free(p->Eb);
    free(p->ex);
    free(p->ef);
}

/* One tick of one projection. x [I]; D [N][K][K] and F [N][K][S] of the target cell;
 * g [K][N] its learning signal (gw, gb accumulate sum_k g ... as DESIGN §4.2 says);
 * n the tick index since the reset. */
static void
ptrace_tick(struct ptrace *p, const double *x, const double *D, const double *F, int S,
            const double *g, long n, double lx, double lf, double *gw, double *gb)
{
    int I = p->I, O = p->O, N = p->N, K = p->K;
#define DD(nn, k, j) D[((size_t)(nn)*K + (k)) * K + (j)]
#define FF(o, k) F[((size_t)((o) % N) * K + (k)) * S + p->to_slots[(o) / N]]
#define GG(o, k) g[(size_t)(k)*N + (o) % N]
    switch (p->rule) {
    case ORACLE_RULE_FROZEN:
        break;
    case ORACLE_RULE_INSTANT:
        /* weight: sum_k g f x[i] (elemwise x[o]); bias: sum_k g f */
        for (int o = 0; o < O; o++) {
            double q = 0.0;
            for (int k = 0; k < K; k++)
                q += GG(o, k) * FF(o, k);
            if (p->elemwise)
                gw[o] += q * x[o];
            else
                for (int i = 0; i < I; i++)
                    gw[(size_t)i * O + o] += q * x[i];
            if (gb)
                gb[o] += q;
        }
        break;
    case ORACLE_RULE_D_RTRL: {
        /* E^t[k,i,o] = sum_j D^t[o][k,j] E^{t-1}[j,i,o] + f^t[k,o] x^t[i]
         * grad W[i,o] += sum_k g^t[k,o] E^t[k,i,o]; the bias: x = 1 */
        int rows = p->elemwise ? 1 : I;
        double old[ORACLE_MAX_K];
        for (int o = 0; o < O; o++) {
            int nn = o % N;
            for (int i = 0; i < rows; i++) {
                double xi = p->elemwise ? x[o] : x[i];
                for (int j = 0; j < K; j++)
                    old[j] = p->E[((size_t)j * rows + i) * O + o];
                double sum = 0.0;
                for (int k = 0; k < K; k++) {
                    double e = FF(o, k) * xi;
                    for (int j = 0; j < K; j++)
                        e += DD(nn, k, j) * old[j];
                    p->E[((size_t)k * rows + i) * O + o] = e;
                    sum += GG(o, k) * e;
                }
                gw[(size_t)i * O + o] += sum;
            }
            for (int j = 0; j < K; j++)
                old[j] = p->Eb[(size_t)j * O + o];
            double sum = 0.0;
            for (int k = 0; k < K; k++) {
                double e = FF(o, k);
                for (int j = 0; j < K; j++)
                    e += DD(nn, k, j) * old[j];
                p->Eb[(size_t)k * O + o] = e;
                sum += GG(o, k) * e;
            }
            if (gb)
                gb[o] += sum;
        }
        break;
    }
    case ORACLE_RULE_ES: {
        /* e_x^t[i] = lambda_x e_x^{t-1}[i] + x^t[i]
         * e_f^t[k,o] = lambda_f sum_j D^t[o][k,j] e_f^{t-1}[j,o] + (1 - lambda_f) f^t[k,o]
         * grad W[i,o] += sum_k g^t[k,o] e_x^t[i] e_f^t[k,o] / c^t,
         * c^t = 1 - lambda_f^(n+1) while n < 1000, else 1; the bias: sum_k g e_f / c */
        for (int i = 0; i < I; i++)
            p->ex[i] = lx * p->ex[i] + x[i];
        double old[ORACLE_MAX_K];
        for (int o = 0; o < O; o++) {
            int nn = o % N;
            for (int j = 0; j < K; j++)
                old[j] = p->ef[(size_t)j * O + o];
            for (int k = 0; k < K; k++) {
                double e = 0.0;
                for (int j = 0; j < K; j++)
                    e += DD(nn, k, j) * old[j];
                p->ef[(size_t)k * O + o] = lf * e + (1.0 - lf) * FF(o, k);
            }
        }
        double c = n < 1000 ? 1.0 - pow(lf, (double)(n + 1)) : 1.0;
        for (int o = 0; o < O; o++) {
            double q = 0.0;
            for (int k = 0; k < K; k++)
                q += GG(o, k) * p->ef[(size_t)k * O + o];
            for (int i = 0; i < I; i++)
                gw[(size_t)i * O + o] += q * p->ex[i] / c;
            if (gb)
                gb[o] += q / c;
        }
        break;
    }
    }
#undef DD
#undef FF
#undef GG
}

int
oracle_online(const struct oracle_net *n, const struct oracle_tape *tp, int t_end,
              enum oracle_rule rule_in, enum oracle_rule rule_out, double lx, double lf,
              const struct oracle_grad *g)
{
    int I = tp->I, K = tp->K, S = tp->S, N = tp->N, M = tp->M, O = oracle_net_O(n);
    zero_grad(n, g);
    struct oracle_cell lin;
    oracle_cell_defaults(ORACLE_LINEAR, n->cell.dt, &lin);
    static const int slot0[1] = {0};
    struct ptrace pin, pout;
    double *Dh = calloc((size_t)N * K * K, sizeof(double));
    double *Fh = calloc((size_t)N * K * S, sizeof(double));
    double *gh = calloc((size_t)K * N, sizeof(double));
    double *Do = calloc((size_t)M, sizeof(double));
    double *Fo = calloc((size_t)M, sizeof(double));
    double *go = calloc((size_t)M, sizeof(double));
    double *dl = calloc((size_t)N, sizeof(double));
    size_t nw = n->elemwise ? (size_t)O : (size_t)I * O;
    double *gw_in = calloc(nw, sizeof(double)), *gb_in = calloc((size_t)O, sizeof(double));
    double *gw_out = calloc((size_t)N * M, sizeof(double));
    double *gb_out = calloc((size_t)M, sizeof(double));
    int rc = -1;
    int ok_in = ptrace_init(&pin, rule_in, I, O, N, K, n->n_to, n->to_slots, n->elemwise);
    int ok_out = ptrace_init(&pout, rule_out, N, M, M, 1, 1, slot0, 0);
    if (ok_in || ok_out || !Dh || !Fh || !gh || !Do || !Fo || !go || !dl || !gw_in || !gb_in ||
        !gw_out || !gb_out)
        goto done;
    for (int t = 0; t < t_end; t++) {
        const double *hp = tp->h + (size_t)t * K * N;
        const double *hn = tp->h + (size_t)(t + 1) * K * N;
        const double *sl = tp->slot + (size_t)t * S * N;
        dl_dout(n, tp, t, dl);
        for (int nn = 0; nn < N; nn++) {
            double ho[ORACLE_MAX_K] = {0}, hv[ORACLE_MAX_K] = {0}, sv[ORACLE_MAX_S] = {0};
            double D[ORACLE_MAX_K][ORACLE_MAX_K], F[ORACLE_MAX_K][ORACLE_MAX_S];
            double dout[ORACLE_MAX_K];
            for (int k = 0; k < K; k++) {
                ho[k] = hp[k * N + nn];
                hv[k] = hn[k * N + nn];
            }
            for (int s = 0; s < S; s++)
                sv[s] = sl[s * N + nn];
            oracle_cell_jacobians(&n->cell, ho, sv, D, F);
            oracle_cell_dout(&n->cell, hv, dout);
            for (int k = 0; k < K; k++) {
                for (int j = 0; j < K; j++)
                    Dh[((size_t)nn * K + k) * K + j] = D[k][j];
                for (int s = 0; s < S; s++)
                    Fh[((size_t)nn * K + k) * S + s] = F[k][s];
                /* g^t = dL^t/dh^t within the tick: the output's derivative times w_out
                 * times dL/do (previous-tick values are constants) */
                gh[(size_t)k * N + nn] = dout[k] * dl[nn];
            }
        }
        /* the linear readout: o = y, from its own equations */
        for (int m = 0; m < M; m++) {
            double ho[ORACLE_MAX_K] = {0}, sv[ORACLE_MAX_S] = {0}, hv[ORACLE_MAX_K] = {0};
            double D[ORACLE_MAX_K][ORACLE_MAX_K], F[ORACLE_MAX_K][ORACLE_MAX_S];
            double dout[ORACLE_MAX_K], out;
            sv[0] = tp->o[(size_t)t * M + m];
            oracle_cell_forward(&lin, ho, sv, hv, &out, NULL);
            oracle_cell_jacobians(&lin, ho, sv, D, F);
            oracle_cell_dout(&lin, hv, dout);
            Do[m] = D[0][0];
            Fo[m] = F[0][0];
            go[m] = dout[0] * tp->dlo[(size_t)t * M + m];
        }
        ptrace_tick(&pin, tp->x + (size_t)t * I, Dh, Fh, S, gh, t, lx, lf, gw_in,
                    n->b_in ? gb_in : NULL);
        ptrace_tick(&pout, tp->out + (size_t)t * N, Do, Fo, 1, go, t, lx, lf, gw_out,
                    n->b_out ? gb_out : NULL);
    }
    if (g->w_in)
        memcpy(g->w_in, gw_in, nw * sizeof(double));
    if (g->b_in)
        memcpy(g->b_in, gb_in, (size_t)O * sizeof(double));
    if (g->w_out)
        memcpy(g->w_out, gw_out, (size_t)N * M * sizeof(double));
    if (g->b_out)
        memcpy(g->b_out, gb_out, (size_t)M * sizeof(double));
    rc = 0;
done:
    ptrace_free(&pin);
    ptrace_free(&pout);
    free(Dh);
    free(Fh);
    free(gh);
    free(Do);
    free(Fo);
    free(go);
    free(dl);
    free(gw_in);
    free(gb_in);
    free(gw_out);
    free(gb_out);
    return rc;
}

/* ---- test data ---------------------------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double
oracle_uniform(struct oracle_rng *r)
{
    return (double)(splitmix64(&r->s) >> 11) * 0x1.0p-53;
}

double
oracle_normal(struct oracle_rng *r)
{
    double u1 = oracle_uniform(r), u2 = oracle_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

double
oracle_rel_err(int64_t n, const double *a, const double *b)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= num)) /* NaN propagates */
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / (den > 1e-12 ? den : 1e-12);
}
