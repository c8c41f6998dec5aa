/* The compile report of DESIGN §6 (`etraced compile`), as text or one JSON object. */
#include "engine.h"

#include <string.h>

static const char *const op_names[] = {"dense", "sparse", "elemwise"};
static const char *const rule_names[] = {"frozen", "instant", "d_rtrl", "es_d_rtrl"};

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void
print_expand(FILE *f, const struct model_cell *c)
{
    fprintf(f, "  %s: %s (size %d)\n    states: {", c->name, c->model, c->size);
    for (int k = 0; k < c->n_states; k++)
        fprintf(f, "%s%s: %.17g", k ? ", " : "", c->state_names[k], c->state_init[k]);
    fprintf(f, "}\n    slots: [");
    for (int s = 0; s < c->n_slots; s++)
        fprintf(f, "%s%s", s ? ", " : "", c->slot_names[s]);
    fprintf(f, "]\n    params: {");
    for (int p = 0; p < c->n_params; p++)
        fprintf(f, "%s%s: %.17g", p ? ", " : "", c->param_names[p], c->param_values[p]);
    fprintf(f, "}\n");
    if (c->n_defines) {
        fprintf(f, "    define:\n");
        for (int i = 0; i < c->n_defines; i++)
            fprintf(f, "      %s: %s\n", c->defines[i].name, c->defines[i].text);
    }
    fprintf(f, "    update:\n");
    for (int k = 0; k < c->n_states; k++)
        fprintf(f, "      %s: %s\n", c->state_names[k], c->updates[k].text);
    fprintf(f, "    output: %s\n", c->output.text);
}

void
engine_report(const struct engine *eng, FILE *f, int json, int expand)
{
    const struct model_desc *d = engine_model(eng);
    const struct model_learning *l = &d->learning;
    if (json) {
        fprintf(f, "{\"model\": ");
        json_str(f, d->name);
        fprintf(f, ", \"dt\": %.17g, \"hash\": \"%016llx\", \"real\": \"%s\", \"cells\": [", d->dt,
                (unsigned long long)d->hash, REAL_NAME);
        for (int c = 0; c < d->n_cells; c++) {
            const struct model_cell *mc = &d->cells[c];
            fprintf(f, "%s{\"name\": ", c ? ", " : "");
            json_str(f, mc->name);
            fprintf(f, ", \"model\": ");
            json_str(f, mc->model);
            fprintf(f, ", \"size\": %d, \"K\": %d, \"states\": [", mc->size, mc->n_states);
            for (int k = 0; k < mc->n_states; k++) {
                fprintf(f, "%s", k ? ", " : "");
                json_str(f, mc->state_names[k]);
            }
            fprintf(f, "], \"slots\": [");
            for (int s = 0; s < mc->n_slots; s++) {
                fprintf(f, "%s", s ? ", " : "");
                json_str(f, mc->slot_names[s]);
            }
            fprintf(f, "], \"spiking\": %s}", mc->is_spiking ? "true" : "false");
        }
        fprintf(f, "], \"projections\": [");
    } else {
        fprintf(f, "model %s: dt %.6g s, hash %016llx, real %s\n", d->name, d->dt,
                (unsigned long long)d->hash, REAL_NAME);
        fprintf(f, "cells (evaluated in this order):\n");
        for (int c = 0; c < d->n_cells; c++) {
            const struct model_cell *mc = &d->cells[c];
            fprintf(f, "  %-12s %-13s size %-8d K %d (", mc->name, mc->model, mc->size,
                    mc->n_states);
            for (int k = 0; k < mc->n_states; k++)
                fprintf(f, "%s%s", k ? ", " : "", mc->state_names[k]);
            fprintf(f, ") slots [");
            for (int s = 0; s < mc->n_slots; s++)
                fprintf(f, "%s%s", s ? ", " : "", mc->slot_names[s]);
            fprintf(f, "]%s\n", mc->is_spiking ? " spiking" : "");
        }
        fprintf(f, "projections:\n");
    }
    for (int p = 0; p < d->n_projs; p++) {
        const struct model_proj *mp = &d->projs[p];
        struct engine_param_view v;
        engine_param(eng, p, &v);
        int K = d->cells[mp->to_cell].n_states;
        int reaches = v.reaches_loss;
        long long cost_d = (long long)K * v.count;
        long long cost_es = (long long)l->hybrid_budget * (v.in_size + (long long)K * v.out_size);
        if (json) {
            fprintf(f, "%s{\"name\": ", p ? ", " : "");
            json_str(f, mp->name);
            fprintf(f,
                    ", \"op\": \"%s\", \"shape\": [%lld, %lld], \"nnz\": %lld, \"rule\": \"%s\", "
                    "\"trace_bytes\": %lld, \"reaches_loss\": %s",
                    op_names[mp->op], (long long)v.in_size, (long long)v.out_size,
                    (long long)v.count, rule_names[v.rule], (long long)v.trace_bytes,
                    reaches ? "true" : "false");
            if (l->present && l->algorithm == MODEL_ALGO_HYBRID)
                fprintf(f, ", \"hybrid_cost\": {\"d_rtrl\": %lld, \"budget_es\": %lld}", cost_d,
                        cost_es);
            fprintf(f, ", \"bias\": %s, \"defers\": %s}", v.bias ? "true" : "false",
                    v.defers ? "true" : "false");
        } else {
            fprintf(f, "  %-12s %-8s [%lld, %lld] nnz %-10lld rule %-9s trace %lld bytes%s\n",
                    mp->name, op_names[mp->op], (long long)v.in_size, (long long)v.out_size,
                    (long long)v.count, rule_names[v.rule], (long long)v.trace_bytes,
                    v.bias ? ", bias" : "");
            if (l->present && l->algorithm == MODEL_ALGO_HYBRID && mp->op != MODEL_OP_ELEMWISE)
                fprintf(f, "               hybrid: K*P = %lld vs budget*(I+K*O) = %lld -> %s\n",
                        cost_d, cost_es, rule_names[v.rule]);
            if (v.rule != ENGINE_RULE_FROZEN)
                fprintf(f, "               within-tick path to a loss: %s\n",
                        reaches ? "yes" : "NO (warning: this projection gets no gradient)");
            if (v.defer_why != ENGINE_DEFER_NOT_ASKED)
                fprintf(f, "               deferred steps: %s\n",
                        v.defer_why == ENGINE_DEFER_YES ? "yes"
                        : v.defer_why == ENGINE_DEFER_TOO_SMALL
                            ? "no (r (I + O) pair values would not be fewer than its weights)"
                            : "no (not a rank-one sgd step)");
        }
    }
    size_t bytes = engine_resident_bytes(eng);
    /* bytes per synapse: everything resident over the stored weights (nnz) of every
     * projection, the figure of a model's memory cost per connection */
    long long nnz = 0;
    int n_defer = 0;
    for (int p = 0; p < engine_n_projs(eng); p++) {
        struct engine_param_view v;
        engine_param(eng, p, &v);
        nnz += (long long)v.count;
        n_defer += v.defers;
    }
    double per_syn = nnz > 0 ? (double)bytes / (double)nnz : 0.0;
    if (json) {
        fprintf(f, "], \"resident_bytes\": %zu, \"bytes_per_synapse\": %.3f, \"defer\": %d}\n",
                bytes, per_syn, l->present ? l->defer : 1);
        return;
    }
    fprintf(f, "resident: %zu bytes (%.2f MiB: weights, %straces, accumulators, optimizer)\n",
            bytes, (double)bytes / 1048576.0, d->stats_drift ? "W0 and drift mark, " : "");
    fprintf(f, "bytes per synapse: %.2f (resident / %lld stored weights)\n", per_syn, nnz);
    if (l->present && l->defer > 1 && n_defer)
        fprintf(f, "deferred rank-one steps: up to %d pending pairs, written every %d ticks\n",
                l->defer, l->defer);
    else if (l->present && l->defer > 1)
        fprintf(f, "deferred rank-one steps: none (defer: %d, but no projection qualifies)\n",
                l->defer);
    if (l->present && l->critic_readout >= 0)
        fprintf(f, "learning: actor-critic, policy %s, critic %s (weight %g)%s\n",
                d->readouts[l->policy_readout].name, d->readouts[l->critic_readout].name,
                l->critic_weight,
                l->critic_ignores ? "; warning: tau_e and tau_baseline are ignored beside a critic"
                                  : "");
    if (expand) {
        fprintf(f, "equations:\n");
        for (int c = 0; c < d->n_cells; c++)
            print_expand(f, &d->cells[c]);
    }
}
