/* The `learning:` section of the model file (DESIGN §2.4, §4): algorithm, decays,
 * signal, loss, optimizer, and for signal: reward the policy and the critic, with their
 * defaults. Engine layer, part of the model reader. */
#include "mlearn.h"

#include <stdio.h>
#include <string.h>

/* ---- learning ----------------------------------------------------------------------- */

/* One side of decay_or_rank: an integer literal is a rank R >= 1 -> (R-1)/(R+1); a number
 * with a point or an exponent is a decay in [0, 1). */
static int
read_one_decay(struct mschema *x, const yaml_node_t *n, const char *field, double *lambda)
{
    if (mschema_is_plain(n) && mschema_is_int_text(mschema_sval(n))) {
        long long r;
        if (mschema_read_int64(x, n, field, &r) < 0)
            return -1;
        if (r < 1)
            return mschema_fail(x, n, ERR_MODEL, field, "a rank must be >= 1, got %lld", r);
        *lambda = (double)(r - 1) / (double)(r + 1);
        return 0;
    }
    double v;
    if (mschema_scalar_number(n, &v) < 0)
        return mschema_fail_type(x, n, field, "a decay, a rank or a pair [x, f]");
    if (mschema_read_number(x, n, field, &v) < 0)
        return -1;
    if (!(v >= 0 && v < 1))
        return mschema_fail(x, n, ERR_MODEL, field, "a decay must be in [0, 1), got %g", v);
    *lambda = v;
    return 0;
}

static int
read_decay(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    char sub[MSCHEMA_FIELD_LEN];
    l->has_decay = 1;
    if (n->type != YAML_SEQUENCE_NODE) {
        if (read_one_decay(x, n, field, &l->lambda_x) < 0)
            return -1;
        l->lambda_f = l->lambda_x;
        return 0;
    }
    if (mschema_n_items(n) != 2)
        return mschema_fail(x, n, ERR_MODEL, field, "a pair [x, f] has 2 elements, got %d",
                            mschema_n_items(n));
    mschema_fieldf(sub, "%s[0]", field);
    if (read_one_decay(x, mschema_seq_item(x, n, 0), sub, &l->lambda_x) < 0)
        return -1;
    mschema_fieldf(sub, "%s[1]", field);
    return read_one_decay(x, mschema_seq_item(x, n, 1), sub, &l->lambda_f);
}

static int
read_betas(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    char sub[MSCHEMA_FIELD_LEN];
    double b[2];
    if (n->type != YAML_SEQUENCE_NODE || mschema_n_items(n) != 2)
        return mschema_fail_type(x, n, field, "a pair [beta1, beta2]");
    for (int i = 0; i < 2; i++) {
        mschema_fieldf(sub, "%s[%d]", field, i);
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        if (mschema_read_number(x, it, sub, &b[i]) < 0 ||
            mschema_check_number(x, it, sub, MSCHEMA_CHECK_DECAY, b[i]) < 0)
            return -1;
    }
    l->beta1 = b[0];
    l->beta2 = b[1];
    return 0;
}

static const struct mschema_enum optim_names[] = {
    {"sgd", MODEL_OPTIM_SGD, 0},
    {"momentum", MODEL_OPTIM_MOMENTUM, 0},
    {"adam", MODEL_OPTIM_ADAM, 0},
    {NULL, 0, 0},
};

enum { OF_KIND, OF_LR, OF_MOMENTUM, OF_BETAS, OF_EPS, OF_WD, OF_CLIP, OF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field optim_fields[OF_N] = {
    [OF_KIND] = {.key = "kind", .type = MSCHEMA_TYPE_ENUM, .names = optim_names,
                 .offset = MSCHEMA_AT(model_learning, optimizer)},
    [OF_LR] = {.key = "lr", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
               .offset = MSCHEMA_AT(model_learning, lr)},
    [OF_MOMENTUM] = {.key = "momentum", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_DECAY,
                     .offset = MSCHEMA_AT(model_learning, momentum)},
    [OF_BETAS] = {.key = "betas", .type = MSCHEMA_TYPE_FUNC, .fn = read_betas},
    [OF_EPS] = {.key = "eps", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                .offset = MSCHEMA_AT(model_learning, eps)},
    [OF_WD] = {.key = "weight_decay", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_NONNEG,
               .offset = MSCHEMA_AT(model_learning, weight_decay)},
    [OF_CLIP] = {.key = "clip_norm", .type = MSCHEMA_TYPE_NUM_OR_NULL, .check = MSCHEMA_CHECK_POS,
                 .offset = MSCHEMA_AT(model_learning, clip_norm)},
};
/* clang-format on */

static int
read_optimizer(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    struct mschema_seen s;
    char sub[MSCHEMA_FIELD_LEN];
    if (mschema_apply(x, n, optim_fields, OF_N, l, field, &s) < 0)
        return -1;
    /* Keys of another optimizer kind are mistakes, not options to ignore. */
    static const struct {
        int key;
        enum model_optim kind;
    } only[] = {
        {OF_MOMENTUM, MODEL_OPTIM_MOMENTUM},
        {OF_BETAS, MODEL_OPTIM_ADAM},
        {OF_EPS, MODEL_OPTIM_ADAM},
    };
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        if (s.key[only[i].key] && l->optimizer != only[i].kind) {
            mschema_join(sub, field, optim_fields[only[i].key].key);
            return mschema_fail(x, s.key[only[i].key], ERR_MODEL, sub, "only with kind %s",
                                optim_names[only[i].kind].name);
        }
    return 0;
}

static int
read_policy_readout(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "a readout name");
    if ((l->policy_readout = model_find_readout(x->d, mschema_sval(n))) < 0)
        return mschema_fail(x, n, ERR_MODEL, field, "unknown readout '%s'", mschema_sval(n));
    return 0;
}

static const struct mschema_enum policy_names[] = {
    {"softmax", MODEL_POLICY_SOFTMAX, 0},
    {"gaussian", MODEL_POLICY_GAUSSIAN, 0},
    {NULL, 0, 0},
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field policy_fields[] = {
    {.key = "readout", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = read_policy_readout},
    {.key = "kind", .type = MSCHEMA_TYPE_ENUM, .required = 1, .names = policy_names,
     .offset = MSCHEMA_AT(model_learning, policy_kind)},
    {.key = "sigma", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
     .offset = MSCHEMA_AT(model_learning, sigma)},
    {.key = "tau_explore", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
     .offset = MSCHEMA_AT(model_learning, tau_explore)},
    {.key = "action_hold", .type = MSCHEMA_TYPE_INT, .check = MSCHEMA_CHECK_GE1,
     .offset = MSCHEMA_AT(model_learning, action_hold)},
    {.key = "explore_when_frozen", .type = MSCHEMA_TYPE_BOOL,
     .offset = MSCHEMA_AT(model_learning, explore_when_frozen)},
};
/* clang-format on */

static int
read_policy(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct mschema_seen s;
    return mschema_apply(x, n, policy_fields, 6, target, field, &s);
}

static int
read_critic_readout(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "a readout name");
    if ((l->critic_readout = model_find_readout(x->d, mschema_sval(n))) < 0)
        return mschema_fail(x, n, ERR_MODEL, field, "unknown readout '%s'", mschema_sval(n));
    const struct model_readout *r = &x->d->readouts[l->critic_readout];
    if (x->d->cells[r->cell].size != 1)
        return mschema_fail(x, n, ERR_MODEL, field, "readout '%s' has size %d; a critic has size 1",
                            mschema_sval(n), x->d->cells[r->cell].size);
    return 0;
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field critic_fields[] = {
    {.key = "readout", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = read_critic_readout},
    {.key = "weight", .type = MSCHEMA_TYPE_NUM,
     .offset = MSCHEMA_AT(model_learning, critic_weight)},
};
/* clang-format on */

static int
read_critic(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct mschema_seen s;
    return mschema_apply(x, n, critic_fields, 2, target, field, &s);
}

static const struct mschema_enum algo_names[] = {
    {"d_rtrl", MODEL_ALGO_D_RTRL, 0},
    {"es_d_rtrl", MODEL_ALGO_ES_D_RTRL, 0},
    {"hybrid", MODEL_ALGO_HYBRID, 0},
    {NULL, 0, 0},
};

static const struct mschema_enum signal_names[] = {
    {"target", MODEL_SIGNAL_TARGET, 0},
    {"reward", MODEL_SIGNAL_REWARD, 0},
    {"none", MODEL_SIGNAL_NONE, 0},
    {NULL, 0, 0},
};

static const struct mschema_enum loss_names[] = {
    {"mse", MODEL_LOSS_MSE, 0},
    {"cross_entropy", MODEL_LOSS_CROSS_ENTROPY, 0},
    {NULL, 0, 0},
};

enum {
    LF_ALGORITHM,
    LF_DECAY,
    LF_BUDGET,
    LF_SIGNAL,
    LF_LOSS,
    LF_OPTIMIZER,
    LF_UPDATE_EVERY,
    LF_POLICY,
    LF_TAU_E,
    LF_TAU_BASELINE,
    LF_CRITIC,
    LF_TAU_GAMMA,
    LF_TAU_LAMBDA,
    LF_DEFER,
    LF_N
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field learning_fields[LF_N] = {
    [LF_ALGORITHM] = {.key = "algorithm", .type = MSCHEMA_TYPE_ENUM, .required = 1,
                      .names = algo_names,
                      .offset = MSCHEMA_AT(model_learning, algorithm)},
    [LF_DECAY] = {.key = "decay_or_rank", .type = MSCHEMA_TYPE_FUNC, .fn = read_decay},
    [LF_BUDGET] = {.key = "hybrid_budget", .type = MSCHEMA_TYPE_INT, .check = MSCHEMA_CHECK_GE1,
                   .offset = MSCHEMA_AT(model_learning, hybrid_budget)},
    [LF_SIGNAL] = {.key = "signal", .type = MSCHEMA_TYPE_ENUM, .names = signal_names,
                   .offset = MSCHEMA_AT(model_learning, signal)},
    [LF_LOSS] = {.key = "loss", .type = MSCHEMA_TYPE_ENUM, .names = loss_names,
                 .offset = MSCHEMA_AT(model_learning, loss)},
    [LF_OPTIMIZER] = {.key = "optimizer", .type = MSCHEMA_TYPE_FUNC, .fn = read_optimizer},
    [LF_UPDATE_EVERY] = {.key = "update_every", .type = MSCHEMA_TYPE_INT,
                         .check = MSCHEMA_CHECK_GE1,
                         .offset = MSCHEMA_AT(model_learning, update_every)},
    [LF_POLICY] = {.key = "policy", .type = MSCHEMA_TYPE_FUNC, .fn = read_policy},
    [LF_TAU_E] = {.key = "tau_e", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                  .offset = MSCHEMA_AT(model_learning, tau_e)},
    [LF_TAU_BASELINE] = {.key = "tau_baseline", .type = MSCHEMA_TYPE_NUM,
                         .check = MSCHEMA_CHECK_POS,
                         .offset = MSCHEMA_AT(model_learning, tau_baseline)},
    [LF_CRITIC] = {.key = "critic", .type = MSCHEMA_TYPE_FUNC, .fn = read_critic},
    [LF_TAU_GAMMA] = {.key = "tau_gamma", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                      .offset = MSCHEMA_AT(model_learning, tau_gamma)},
    [LF_TAU_LAMBDA] = {.key = "tau_lambda", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                       .offset = MSCHEMA_AT(model_learning, tau_lambda)},
    [LF_DEFER] = {.key = "defer", .type = MSCHEMA_TYPE_INT, .check = MSCHEMA_CHECK_GE1,
                  .offset = MSCHEMA_AT(model_learning, defer)},
};
/* clang-format on */

int
mlearn_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    struct model_learning *l = &d->learning;
    struct mschema_seen s;
    char sub[MSCHEMA_FIELD_LEN];
    l->present = 1;
    l->pos = mschema_pos(n);
    if (mschema_apply(x, n, learning_fields, LF_N, l, field, &s) < 0)
        return -1;
    if (l->algorithm != MODEL_ALGO_D_RTRL && !s.val[LF_DECAY]) {
        mschema_join(sub, field, "decay_or_rank");
        return mschema_fail(x, n, ERR_MODEL, sub, "missing required field (algorithm %s needs it)",
                            mschema_sval(s.val[LF_ALGORITHM]));
    }
    /* hybrid_budget, tau_e and tau_baseline are accepted (and unused) with any algorithm
     * and signal, as DESIGN §2's example writes hybrid_budget beside es_d_rtrl; a policy
     * is different: it makes the engine sample actions, so it needs signal: reward. */
    if (s.key[LF_POLICY] && l->signal != MODEL_SIGNAL_REWARD) {
        mschema_join(sub, field, "policy");
        return mschema_fail(x, s.key[LF_POLICY], ERR_MODEL, sub, "only with signal: reward");
    }
    if (l->signal == MODEL_SIGNAL_REWARD && !s.val[LF_POLICY]) {
        mschema_join(sub, field, "policy");
        return mschema_fail(x, n, ERR_MODEL, sub,
                            "missing required field (signal: reward needs it)");
    }
    if (s.key[LF_CRITIC] && l->signal != MODEL_SIGNAL_REWARD) {
        mschema_join(sub, field, "critic");
        return mschema_fail(x, s.key[LF_CRITIC], ERR_MODEL, sub, "only with signal: reward");
    }
    if (l->critic_readout >= 0 &&
        x->d->readouts[l->critic_readout].cell == x->d->readouts[l->policy_readout].cell) {
        char sub2[MSCHEMA_FIELD_LEN];
        mschema_join(sub2, field, "critic");
        mschema_join(sub, sub2, "readout");
        return mschema_fail(x, s.val[LF_CRITIC], ERR_MODEL, sub,
                            "the critic needs a cell of its own (the policy's cell is '%s')",
                            x->d->cells[x->d->readouts[l->policy_readout].cell].name);
    }
    /* tau_e and tau_baseline belong to REINFORCE: beside a critic they are ignored, and the
     * compile report says so */
    l->critic_ignores = l->critic_readout >= 0 && (s.key[LF_TAU_E] || s.key[LF_TAU_BASELINE]);
    return 0;
}

void
mlearn_defaults(struct model_learning *l)
{
    l->algorithm = MODEL_ALGO_D_RTRL;
    l->hybrid_budget = 4;
    l->signal = MODEL_SIGNAL_TARGET;
    l->loss = MODEL_LOSS_MSE;
    l->optimizer = MODEL_OPTIM_SGD;
    l->lr = 1e-3;
    l->momentum = 0.9;
    l->beta1 = 0.9;
    l->beta2 = 0.999;
    l->eps = 1e-8;
    l->update_every = 1;
    l->defer = 1;
    l->policy_readout = -1;
    l->sigma = 0.1;
    l->tau_explore = 0.05;
    l->action_hold = 1;
    l->tau_e = 0.5;
    l->tau_baseline = 5.0;
    l->critic_readout = -1;
    l->critic_weight = 1.0;
    l->tau_gamma = 1.0;
    l->tau_lambda = 0.5;
}
