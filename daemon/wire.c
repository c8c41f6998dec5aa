/* Layout, input records and output records (see wire.h). */
#include "wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

static size_t
round8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

int
layout_init(struct layout *l, struct engine *eng)
{
    const struct model_desc *d = engine_model(eng);
    memset(l, 0, sizeof(*l));
    l->model_name = strdup(d->name ? d->name : "");
    l->model_hash = d->hash;
    l->dt_s = d->dt;
    l->has_learning = d->learning.present;
    l->n_inputs = engine_n_inputs(eng);
    l->n_readouts = engine_n_readouts(eng);
    l->n_projs = engine_n_projs(eng);
    l->n_cells = engine_n_cells(eng);
    l->inputs = calloc((size_t)l->n_inputs + 1, sizeof(*l->inputs));
    l->readouts = calloc((size_t)l->n_readouts + 1, sizeof(*l->readouts));
    l->projs = calloc((size_t)l->n_projs + 1, sizeof(*l->projs));
    l->cells = calloc((size_t)l->n_cells + 1, sizeof(*l->cells));
    if (!l->model_name || !l->inputs || !l->readouts || !l->projs || !l->cells)
        goto fail;
    for (int i = 0; i < l->n_inputs; i++) {
        l->inputs[i].size = engine_input_size(eng, i);
        l->inputs[i].is_spikes = d->inputs[i].kind == MODEL_INPUT_SPIKES;
        if (!(l->inputs[i].name = strdup(d->inputs[i].name)))
            goto fail;
    }
    l->output_bytes = sizeof(struct wire_output);
    for (int r = 0; r < l->n_readouts; r++) {
        struct layout_readout *ro = &l->readouts[r];
        ro->size = engine_readout_size(eng, r);
        if (d->learning.present && d->learning.signal == MODEL_SIGNAL_REWARD &&
            d->learning.policy_readout == r)
            ro->action_size = d->learning.policy_kind == MODEL_POLICY_SOFTMAX ? 1 : ro->size;
        ro->is_class = d->learning.present && d->learning.loss == MODEL_LOSS_CROSS_ENTROPY;
        if (!(ro->name = strdup(d->readouts[r].name)))
            goto fail;
        l->output_bytes += round8((size_t)ro->size * sizeof(real)) +
                           round8((size_t)ro->action_size * sizeof(real));
    }
    size_t off = 0;
    for (int p = 0; p < l->n_projs; p++) {
        struct engine_param_view v;
        struct layout_proj *pr = &l->projs[p];
        engine_param(eng, p, &v);
        if (!(pr->name = strdup(v.name)))
            goto fail;
        pr->op = v.op;
        pr->in_size = v.in_size;
        pr->out_size = v.out_size;
        pr->count = v.count;
        pr->has_bias = v.bias != NULL;
        pr->exp_weight = off;
        off += round8((size_t)v.count * sizeof(real));
        if (pr->has_bias) {
            pr->exp_bias = off;
            off += round8((size_t)v.out_size * sizeof(real));
        }
        if (v.op == MODEL_OP_SPARSE) {
            pr->exp_indptr = off;
            off += (size_t)(v.in_size + 1) * sizeof(int64_t);
            pr->exp_indices = off;
            off += (size_t)v.count * sizeof(int64_t);
        }
    }
    l->export_bytes = off;
    for (int c = 0; c < l->n_cells; c++) {
        l->cells[c].is_spiking = d->cells[c].is_spiking;
        if (!(l->cells[c].name = strdup(d->cells[c].name)))
            goto fail;
    }
    return 0;
fail:
    layout_fini(l);
    return -1;
}

void
layout_fini(struct layout *l)
{
    for (int i = 0; l->inputs && i < l->n_inputs; i++)
        free(l->inputs[i].name);
    for (int i = 0; l->readouts && i < l->n_readouts; i++)
        free(l->readouts[i].name);
    for (int i = 0; l->projs && i < l->n_projs; i++)
        free(l->projs[i].name);
    for (int i = 0; l->cells && i < l->n_cells; i++)
        free(l->cells[i].name);
    free(l->inputs);
    free(l->readouts);
    free(l->projs);
    free(l->cells);
    free(l->model_name);
    memset(l, 0, sizeof(*l));
}

int
layout_find_input(const struct layout *l, const char *name)
{
    for (int i = 0; i < l->n_inputs; i++)
        if (!strcmp(l->inputs[i].name, name))
            return i;
    return -1;
}

int
layout_find_readout(const struct layout *l, const char *name)
{
    for (int i = 0; i < l->n_readouts; i++)
        if (!strcmp(l->readouts[i].name, name))
            return i;
    return -1;
}

static const char *const reject_names[] = {
#define X(name, text) text,
    WIRE_REJECT_MAP(X)
#undef X
};

const char *
wire_reject_name(enum wire_reject r)
{
    return r >= 0 && r < WIRE_N_REJECT ? reject_names[r] : "ok";
}

Etrace__Error__Code
wire_reject_code(enum wire_reject r)
{
    switch (r) {
    case WIRE_REJECT_UNDECODABLE:
        return ETRACE__ERROR__CODE__UNDECODABLE;
    case WIRE_REJECT_WRONG_SIZE:
        return ETRACE__ERROR__CODE__WRONG_SIZE;
    case WIRE_REJECT_UNKNOWN_NAME:
        return ETRACE__ERROR__CODE__UNKNOWN_NAME;
    case WIRE_REJECT_NON_FINITE:
        return ETRACE__ERROR__CODE__NON_FINITE;
    case WIRE_REJECT_OVERSIZED:
        return ETRACE__ERROR__CODE__OVERSIZED;
    case WIRE_REJECT_UNKNOWN_COMMAND:
        return ETRACE__ERROR__CODE__UNKNOWN_COMMAND;
    case WIRE_REJECT_BAD_ARGUMENT:
        return ETRACE__ERROR__CODE__BAD_ARGUMENT;
    case WIRE_REJECT_OVER_RING:
        return ETRACE__ERROR__CODE__OVERSIZED;
    default:
        return ETRACE__ERROR__CODE__NONE;
    }
}

static int
all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

#define REJECT(code, ...)                                                                          \
    do {                                                                                           \
        snprintf(err, err_len, __VA_ARGS__);                                                       \
        return WIRE_REJECT_##code;                                                                 \
    } while (0)

enum wire_reject
wire_input_check(const struct layout *l, const Etrace__Input *msg, size_t *bytes, char *err,
                 size_t err_len)
{
    size_t total = sizeof(struct wire_input);
    for (size_t f = 0; f < msg->n_frames; f++) {
        const Etrace__Frame *fr = msg->frames[f];
        int i = layout_find_input(l, fr->name);
        if (i < 0)
            REJECT(UNKNOWN_NAME, "frame %zu: unknown input '%.64s'", f, fr->name);
        const struct layout_input *in = &l->inputs[i];
        if (in->is_spikes) {
            if (fr->n_values)
                REJECT(WRONG_SIZE, "input '%s' takes spikes, not values", in->name);
            if (fr->n_spikes > (size_t)in->size * 4 + 64)
                REJECT(WRONG_SIZE, "input '%s': %zu spike indices for size %d", in->name,
                       fr->n_spikes, in->size);
            for (size_t k = 0; k < fr->n_spikes; k++)
                if (fr->spikes[k] < 0 || fr->spikes[k] >= in->size)
                    REJECT(WRONG_SIZE, "input '%s': spike index %d outside [0, %d)", in->name,
                           (int)fr->spikes[k], in->size);
            total += sizeof(struct wire_item) + round8(fr->n_spikes * sizeof(int32_t));
        } else {
            if (fr->n_spikes)
                REJECT(WRONG_SIZE, "input '%s' is analog: send values, not spikes", in->name);
            if (fr->n_values != (size_t)in->size)
                REJECT(WRONG_SIZE, "input '%s': %zu values, expected %d", in->name, fr->n_values,
                       in->size);
            if (!all_finite(fr->values, fr->n_values))
                REJECT(NON_FINITE, "input '%s': a value is NaN or infinite", in->name);
            total += sizeof(struct wire_item) + round8(fr->n_values * sizeof(real));
        }
    }
    for (size_t s = 0; s < msg->n_signals; s++) {
        const Etrace__Signal *sg = msg->signals[s];
        if (sg->kind_case == ETRACE__SIGNAL__KIND_REWARD) {
            if (!isfinite(sg->reward))
                REJECT(NON_FINITE, "reward is NaN or infinite");
            total += sizeof(struct wire_item);
            continue;
        }
        if (sg->terminal)
            REJECT(UNDECODABLE, "signal %zu: terminal is a flag of a reward signal", s);
        if (sg->kind_case == ETRACE__SIGNAL__KIND__NOT_SET)
            REJECT(UNDECODABLE, "signal %zu: no target, class_index or reward", s);
        int r = layout_find_readout(l, sg->readout);
        if (r < 0)
            REJECT(UNKNOWN_NAME, "signal %zu: unknown readout '%.64s'", s, sg->readout);
        const struct layout_readout *ro = &l->readouts[r];
        if (sg->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX) {
            if (!ro->is_class)
                REJECT(WRONG_SIZE, "readout '%s' takes target values, not a class", ro->name);
            if (sg->class_index < 0 || sg->class_index >= ro->size)
                REJECT(WRONG_SIZE, "readout '%s': class %d outside [0, %d)", ro->name,
                       (int)sg->class_index, ro->size);
            total += sizeof(struct wire_item);
        } else {
            size_t n = sg->target ? sg->target->n_values : 0;
            if (ro->is_class)
                REJECT(WRONG_SIZE, "readout '%s' takes a class index, not values", ro->name);
            if (n != (size_t)ro->size)
                REJECT(WRONG_SIZE, "readout '%s': target of %zu values, expected %d", ro->name, n,
                       ro->size);
            if (!all_finite(sg->target->values, n))
                REJECT(NON_FINITE, "readout '%s': a target value is NaN or infinite", ro->name);
            total += sizeof(struct wire_item) + round8(n * sizeof(real));
        }
    }
    *bytes = total;
    return WIRE_OK;
}

size_t
wire_input_min_bytes(size_t n_items)
{
    return sizeof(struct wire_input) + n_items * sizeof(struct wire_item);
}

enum wire_reject
wire_input_prescan(const uint8_t *buf, size_t len, size_t max_record_bytes, size_t *n_items)
{
    struct decode_field f[3]; /* Input: frames = 1, signals = 2 */
    if (decode_scan(buf, len, f, 3))
        return WIRE_REJECT_UNDECODABLE;
    size_t n = (size_t)f[1].count + f[2].count;
    if (n_items)
        *n_items = n;
    return wire_input_min_bytes(n) > max_record_bytes ? WIRE_REJECT_OVER_RING : WIRE_OK;
}

size_t
wire_input_budget(size_t len, size_t max_record_bytes)
{
    return max_record_bytes + 2 * len + 65536;
}

void
wire_input_write(const struct layout *l, const Etrace__Input *msg, int64_t recv_ns, void *buf)
{
    struct wire_input *h = buf;
    uint8_t *p = (uint8_t *)buf + sizeof(*h);
    h->n_items = 0;
    h->gen = 0;
    h->pad = 0;
    for (size_t f = 0; f < msg->n_frames; f++) {
        const Etrace__Frame *fr = msg->frames[f];
        int i = layout_find_input(l, fr->name);
        struct wire_item *it = (struct wire_item *)(void *)p;
        memset(it, 0, sizeof(*it));
        it->index = i;
        it->seq = fr->seq;
        it->sender_time_ns = fr->sender_time_ns;
        it->recv_ns = recv_ns;
        if (l->inputs[i].is_spikes) {
            it->kind = WIRE_SPIKES;
            it->n = (int32_t)fr->n_spikes;
            if (fr->n_spikes) /* protobuf-c leaves spikes NULL when there are none */
                memcpy(it + 1, fr->spikes, fr->n_spikes * sizeof(int32_t));
            it->bytes = (uint32_t)(sizeof(*it) + round8(fr->n_spikes * sizeof(int32_t)));
        } else {
            real *v = (real *)(void *)(it + 1);
            it->kind = WIRE_ANALOG;
            it->n = (int32_t)fr->n_values;
            for (size_t k = 0; k < fr->n_values; k++)
                v[k] = (real)fr->values[k];
            it->bytes = (uint32_t)(sizeof(*it) + round8(fr->n_values * sizeof(real)));
        }
        p += it->bytes;
        h->n_items++;
    }
    for (size_t s = 0; s < msg->n_signals; s++) {
        const Etrace__Signal *sg = msg->signals[s];
        struct wire_item *it = (struct wire_item *)(void *)p;
        memset(it, 0, sizeof(*it));
        it->recv_ns = recv_ns;
        it->bytes = sizeof(*it);
        if (sg->kind_case == ETRACE__SIGNAL__KIND_REWARD) {
            it->kind = WIRE_REWARD;
            it->reward = (double)sg->reward;
            it->terminal = sg->terminal ? 1 : 0;
        } else if (sg->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX) {
            it->kind = WIRE_CLASS;
            it->index = layout_find_readout(l, sg->readout);
            it->class_index = sg->class_index;
        } else {
            real *v = (real *)(void *)(it + 1);
            it->kind = WIRE_TARGET;
            it->index = layout_find_readout(l, sg->readout);
            it->n = (int32_t)sg->target->n_values;
            for (size_t k = 0; k < sg->target->n_values; k++)
                v[k] = (real)sg->target->values[k];
            it->bytes = (uint32_t)(sizeof(*it) + round8(sg->target->n_values * sizeof(real)));
        }
        p += it->bytes;
        h->n_items++;
    }
    h->bytes = (uint32_t)(p - (uint8_t *)buf);
}

static const uint8_t *
readout_at(const struct layout *l, const struct wire_output *o, int r)
{
    const uint8_t *p = (const uint8_t *)(o + 1);
    for (int k = 0; k < r; k++)
        p += round8((size_t)l->readouts[k].size * sizeof(real)) +
             round8((size_t)l->readouts[k].action_size * sizeof(real));
    return p;
}

const real *
wire_output_values(const struct layout *l, const struct wire_output *o, int r)
{
    return (const real *)(const void *)readout_at(l, o, r);
}

const real *
wire_output_action(const struct layout *l, const struct wire_output *o, int r)
{
    if (!l->readouts[r].action_size)
        return NULL;
    return (const real *)(const void *)(readout_at(l, o, r) +
                                        round8((size_t)l->readouts[r].size * sizeof(real)));
}

void
wire_output_to_msg(const struct layout *l, const struct wire_output *o, int r, float *scratch,
                   Etrace__Output *m)
{
    const struct layout_readout *ro = &l->readouts[r];
    const real *v = wire_output_values(l, o, r);
    const real *a = wire_output_action(l, o, r);
    etrace__output__init(m);
    m->tick = o->tick;
    m->period_index = o->period_index;
    m->readout = ro->name;
    for (int k = 0; k < ro->size; k++)
        scratch[k] = (float)v[k];
    m->n_values = (size_t)ro->size;
    m->values = scratch;
    if (a) {
        for (int k = 0; k < ro->action_size; k++)
            scratch[ro->size + k] = (float)a[k];
        m->n_action = (size_t)ro->action_size;
        m->action = scratch + ro->size;
    }
    m->valid = o->valid != 0;
    m->deadline_ns = o->deadline_ns;
    m->finish_ns = o->finish_ns;
    m->input_seq = o->input_seq;
    m->input_sender_time_ns = o->input_sender_time_ns;
    m->loss = o->loss;
}
