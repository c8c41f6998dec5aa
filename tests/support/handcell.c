/* Hand-written lif/alif/gru kernels with hand-derived derivatives. The value path repeats
 * the equations of DESIGN §3 operation by operation (same association, same folded
 * constants) so h_new and out equal the compiled program's exactly; the derivatives are
 * derived by hand, so they agree with the compiler's only to rounding. Neurons run in
 * blocks of BLOCK so gcc -O2 vectorises the branch-free lif/alif bodies. */
#include "handcell.h"

#include <string.h>

enum { BLOCK = 64 };

static double
param(const struct model_cell *c, const char *name, double dflt)
{
    for (int i = 0; i < c->n_params; i++)
        if (strcmp(c->param_names[i], name) == 0)
            return c->param_values[i];
    return dflt;
}

int
handcell_setup(struct handcell_params *h, const struct model_cell *c, double dt)
{
    if (c->surrogate.kind != MODEL_SURR_RELU)
        return -1;
    memset(h, 0, sizeof *h);
    real rdt = (real)dt;
    real tau = (real)param(c, "tau", 20.0e-3), tau_b = (real)param(c, "tau_b", 200.0e-3);
    h->v_th = (real)param(c, "v_th", 1.0);
    h->v_reset = (real)param(c, "v_reset", 0.0);
    h->v_rest = (real)param(c, "v_rest", 0.0);
    h->r = (real)param(c, "r", 1.0);
    h->beta = (real)param(c, "beta", 1.8);
    h->c1 = h->v_th - h->v_reset;
    h->inv_c1 = R(1.0) / h->c1;
    h->decay = exp(-rdt / tau);
    h->decay_b = exp(-rdt / tau_b);
    h->dv_di = h->r - h->r * h->decay;
    h->surr_alpha = (real)c->surrogate.alpha;
    h->surr_width = (real)c->surrogate.width;
    return 0;
}

/* alpha * max(width - |x|, 0) */
static inline real
surr(real x, const struct handcell_params *h)
{
    real t = h->surr_width - fabs(x);
    return h->surr_alpha * (t > R(0.0) ? t : R(0.0));
}

/* lif, reset soft:
 *   x = (v - v_th) / c1, s = x > 0, v_r = v - c1 * s
 *   v' = v_rest + r i + (v_r - v_rest - r i) * decay + delta
 *   d v'/d v = (1 - c1 * surr(x) / c1) * decay, d v'/d i = r - r decay, d v'/d delta = 1
 *   out = (v' - v_th) / c1 > 0, d out / d v' = surr((v' - v_th) / c1) / c1 */
/* The rows of the arrays, one restrict pointer each, so the vectoriser knows that the rows
 * of one array (dslot[0] and dslot[1], say) do not overlap. */
struct rows {
    real *restrict h_new[2], *restrict out, *restrict jac[4], *restrict dslot[4], *restrict dout[2];
    const real *restrict h_old[2], *restrict slot[2];
};

static struct rows
rows_of(size_t n, int K, real *h_new, real *out, real *jac, real *dslot, real *dout,
        const real *h_old, const real *slot)
{
    struct rows w;
    memset(&w, 0, sizeof w);
    for (int k = 0; k < K; k++) {
        w.h_new[k] = h_new + (size_t)k * n;
        w.h_old[k] = h_old + (size_t)k * n;
        w.dout[k] = dout + (size_t)k * n;
    }
    for (int i = 0; i < K * K; i++)
        w.jac[i] = jac + (size_t)i * n;
    for (int i = 0; i < 2 * K; i++)
        w.dslot[i] = dslot + (size_t)i * n;
    for (int s = 0; s < 2; s++)
        w.slot[s] = slot + (size_t)s * n;
    w.out = out;
    return w;
}

/* lif, reset soft:
 *   x = (v - v_th) / c1, s = x > 0, v_r = v - c1 * s
 *   v' = v_rest + r i + (v_r - v_rest - r i) * decay + delta
 *   d v'/d v = (1 - c1 * surr(x) / c1) * decay, d v'/d i = r - r decay, d v'/d delta = 1
 *   out = (v' - v_th) / c1 > 0, d out / d v' = surr((v' - v_th) / c1) / c1 */
static inline __attribute__((always_inline)) void
lif_block(size_t o0, size_t o1, real *restrict hn_v, real *restrict out, real *restrict j_vv,
          real *restrict ds_vi, real *restrict ds_vd, real *restrict do_v,
          const real *restrict v_old, const real *restrict i_in, const real *restrict delta_in,
          const struct handcell_params *h)
{
    for (size_t o = o0; o < o1; o++) {
        real v = v_old[o], i = i_in[o], delta = delta_in[o];
        real x = (v - h->v_th) / h->c1;
        real s = x > R(0.0) ? R(1.0) : R(0.0);
        real v_r = v - h->c1 * s;
        real ri = h->r * i;
        real vn = ((h->v_rest + ri) + (((v_r - h->v_rest) - ri) * h->decay)) + delta;
        real xo = (vn - h->v_th) / h->c1;
        hn_v[o] = vn;
        out[o] = xo > R(0.0) ? R(1.0) : R(0.0);
        j_vv[o] = (R(1.0) - h->c1 * (surr(x, h) * h->inv_c1)) * h->decay;
        ds_vi[o] = h->dv_di;
        ds_vd[o] = R(1.0);
        do_v[o] = surr(xo, h) * h->inv_c1;
    }
}

void
handcell_lif(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
             real *restrict dslot, real *restrict dout, const real *restrict h_old,
             const real *restrict slot, const struct handcell_params *h)
{
    const struct handcell_params hp = *h; /* a local copy: stores cannot alias it */
    struct rows w = rows_of(n, 1, h_new, out, jac, dslot, dout, h_old, slot);
    size_t o = 0;
    for (; o + BLOCK <= n; o += BLOCK)
        lif_block(o, o + BLOCK, w.h_new[0], w.out, w.jac[0], w.dslot[0], w.dslot[1], w.dout[0],
                  w.h_old[0], w.slot[0], w.slot[1], &hp);
    lif_block(o, n, w.h_new[0], w.out, w.jac[0], w.dslot[0], w.dslot[1], w.dout[0], w.h_old[0],
              w.slot[0], w.slot[1], &hp);
}

/* alif, reset soft: thr = v_th + beta b, x = (v - thr) / c1, s = x > 0,
 *   v_r = v - (thr - v_reset) s, v' as lif, b' = b decay_b + s
 *   with g = surr(x) / c1: ds/dv = g, ds/db = -beta g, and k = thr - v_reset:
 *   d v'/d v = (1 - k g) decay,  d v'/d b = (k beta g - beta s) decay
 *   d b'/d v = g,                d b'/d b = decay_b - beta g
 *   out = (v' - v_th - beta b') / c1 > 0; d out/d v' = surr / c1, d out/d b' = -beta surr / c1 */
static inline __attribute__((always_inline)) void
alif_block(size_t o0, size_t o1, real *restrict hn_v, real *restrict hn_b, real *restrict out,
           real *restrict j_vv, real *restrict j_vb, real *restrict j_bv, real *restrict j_bb,
           real *restrict ds_vi, real *restrict ds_vd, real *restrict ds_bi, real *restrict ds_bd,
           real *restrict do_v, real *restrict do_b, const real *restrict v_old,
           const real *restrict b_old, const real *restrict i_in, const real *restrict delta_in,
           const struct handcell_params *h)
{
    for (size_t o = o0; o < o1; o++) {
        real v = v_old[o], b = b_old[o], i = i_in[o], delta = delta_in[o];
        real thr = h->v_th + h->beta * b;
        real x = (v - thr) / h->c1;
        real s = x > R(0.0) ? R(1.0) : R(0.0);
        real k = thr - h->v_reset;
        real v_r = v - k * s;
        real ri = h->r * i;
        real vn = ((h->v_rest + ri) + (((v_r - h->v_rest) - ri) * h->decay)) + delta;
        real bn = b * h->decay_b + s;
        real xo = ((vn - h->v_th) - h->beta * bn) / h->c1;
        real g = surr(x, h) * h->inv_c1;
        real go = surr(xo, h) * h->inv_c1;
        hn_v[o] = vn;
        hn_b[o] = bn;
        out[o] = xo > R(0.0) ? R(1.0) : R(0.0);
        j_vv[o] = (R(1.0) - k * g) * h->decay;
        j_vb[o] = (k * h->beta * g - h->beta * s) * h->decay;
        j_bv[o] = g;
        j_bb[o] = h->decay_b - h->beta * g;
        ds_vi[o] = h->dv_di;
        ds_vd[o] = R(1.0);
        ds_bi[o] = R(0.0);
        ds_bd[o] = R(0.0);
        do_v[o] = go;
        do_b[o] = -h->beta * go;
    }
}

void
handcell_alif(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
              real *restrict dslot, real *restrict dout, const real *restrict h_old,
              const real *restrict slot, const struct handcell_params *h)
{
    const struct handcell_params hp = *h;
    struct rows w = rows_of(n, 2, h_new, out, jac, dslot, dout, h_old, slot);
    size_t o = 0;
#define ALIF_ROWS                                                                                  \
    w.h_new[0], w.h_new[1], w.out, w.jac[0], w.jac[1], w.jac[2], w.jac[3], w.dslot[0], w.dslot[1], \
        w.dslot[2], w.dslot[3], w.dout[0], w.dout[1], w.h_old[0], w.h_old[1], w.slot[0],           \
        w.slot[1], &hp
    for (; o + BLOCK <= n; o += BLOCK)
        alif_block(o, o + BLOCK, ALIF_ROWS);
    alif_block(o, n, ALIF_ROWS);
#undef ALIF_ROWS
}

static inline real
sigm(real x)
{
    return R(1.0) / (R(1.0) + exp(-x));
}

/* gru: sz = sigmoid(z), sr = sigmoid(r), t = tanh(nx + sr nh), h' = (1 - sz) t + sz h
 *   d h'/d h = sz, d h'/d z = sz (1 - sz) (h - t), q = (1 - sz)(1 - t^2):
 *   d h'/d nx = q, d h'/d nh = q sr, d h'/d r = q nh sr (1 - sr); out = h', d out = 1 */
void
handcell_gru(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
             real *restrict dslot, real *restrict dout, const real *restrict h_old,
             const real *restrict slot, const struct handcell_params *h)
{
    (void)h;
    for (size_t o = 0; o < n; o++) {
        real hv = h_old[o];
        real z = slot[o], r = slot[n + o], nx = slot[2 * n + o], nh = slot[3 * n + o];
        real sz = sigm(z), sr = sigm(r);
        real t = tanh(nx + sr * nh);
        real hn = (R(1.0) - sz) * t + sz * hv;
        real q = (R(1.0) - sz) * (R(1.0) - t * t);
        h_new[o] = hn;
        out[o] = hn;
        jac[o] = sz;
        dslot[o] = sz * (R(1.0) - sz) * (hv - t);
        dslot[n + o] = q * nh * (sr * (R(1.0) - sr));
        dslot[2 * n + o] = q;
        dslot[3 * n + o] = q * sr;
        dout[o] = R(1.0);
    }
}
