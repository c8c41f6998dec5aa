/* etraced compile and etraced run: the engine driven from files (DESIGN §6). */
#include "offline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "etrace_recording.h"
#include "npy.h"
#include "pool.h"
#include "security.h"
#include "snapshot.h"

static int
load_model(const char *path, struct model_desc **d)
{
    struct err e;
    err_clear(&e);
    if (model_load_file(path, mem_default(), d, &e)) {
        fprintf(stderr, "etraced: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int
compile_model(const char *path, int track, struct engine **eng)
{
    struct model_desc *d;
    if (load_model(path, &d))
        return 1;
    struct err e;
    err_clear(&e);
    struct engine_opts o = {.track_grad_sum = track};
    if (engine_compile(d, &o, eng, &e)) {
        fprintf(stderr, "etraced: %s\n", e.msg);
        model_free(&d, mem_default());
        return 1;
    }
    return 0;
}

int
offline_compile_main(int argc, char **argv)
{
    const char *model = NULL;
    int json = 0, expand = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--expand") == 0)
            expand = 1;
        else if (argv[i][0] != '-' && !model)
            model = argv[i];
        else {
            fprintf(stderr, "etraced compile: unknown argument '%s'\n", argv[i]);
            return 64;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: etraced compile MODEL [--expand] [--json]\n");
        return 64;
    }
    struct engine *eng;
    if (compile_model(model, 0, &eng))
        return 1;
    engine_report(eng, stdout, json, expand);
    engine_free(&eng);
    return 0;
}

/* ---- run --------------------------------------------------------------------------- */

enum { MAX_FILES = 64 };

struct named_file {
    const char *name; /* input or readout name */
    const char *path;
    int index; /* input or readout index */
    struct npy a;
    double *v; /* the array as doubles */
    int64_t rows, cols;
};

struct run {
    const char *model, *out_dir, *reward_path, *terminal_path, *replay;
    struct named_file inputs[MAX_FILES], targets[MAX_FILES];
    int n_inputs, n_targets;
    struct named_file reward;
    struct named_file terminal; /* --terminal: [T], non-zero ends an episode at that tick */
    int64_t ticks;              /* -1: from the files */
    int learn;                  /* -1 default, else enum engine_learn */
    int align;
    int threads; /* --threads: tick threads (engine.threads) */
};

static int
split_named(const char *arg, const char *flag, struct named_file *f)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) {
        fprintf(stderr, "etraced run: %s wants NAME=FILE.npy, got '%s'\n", flag, arg);
        return 64;
    }
    size_t n = (size_t)(eq - arg);
    char *name = malloc(n + 1);
    if (!name)
        return 1;
    memcpy(name, arg, n);
    name[n] = '\0';
    f->name = name;
    f->path = eq + 1;
    return 0;
}

static int
parse_run_args(int argc, char **argv, struct run *r)
{
    memset(r, 0, sizeof *r);
    r->ticks = -1;
    r->learn = -1;
    r->threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (strcmp(a, "--input") == 0 && v) {
            if (r->n_inputs == MAX_FILES)
                return fprintf(stderr, "etraced run: too many --input\n"), 64;
            if ((rc = split_named(v, a, &r->inputs[r->n_inputs++])))
                return rc;
            i++;
        } else if (strcmp(a, "--target") == 0 && v) {
            if (r->n_targets == MAX_FILES)
                return fprintf(stderr, "etraced run: too many --target\n"), 64;
            if ((rc = split_named(v, a, &r->targets[r->n_targets++])))
                return rc;
            i++;
        } else if (strcmp(a, "--reward") == 0 && v) {
            r->reward_path = v;
            i++;
        } else if (strcmp(a, "--terminal") == 0 && v) {
            r->terminal_path = v;
            i++;
        } else if (strcmp(a, "--ticks") == 0 && v) {
            char *end;
            errno = 0;
            long long t = strtoll(v, &end, 10);
            if (errno || *end || t < 0)
                return fprintf(stderr, "etraced run: --ticks wants a count, got '%s'\n", v), 64;
            r->ticks = t;
            i++;
        } else if (strcmp(a, "--learn") == 0 && v) {
            if (strcmp(v, "on") == 0)
                r->learn = ENGINE_LEARN_ON;
            else if (strcmp(v, "off") == 0)
                r->learn = ENGINE_LEARN_OFF;
            else if (strcmp(v, "accumulate") == 0)
                r->learn = ENGINE_LEARN_ACCUMULATE;
            else
                return fprintf(stderr, "etraced run: --learn on|off|accumulate\n"), 64;
            i++;
        } else if (strcmp(a, "--threads") == 0 && v) {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || *end || n < 1 || n > 64)
                return fprintf(stderr, "etraced run: --threads wants 1 to 64, got '%s'\n", v), 64;
            r->threads = (int)n;
            i++;
        } else if (strcmp(a, "--align") == 0) {
            r->align = 1;
        } else if (strcmp(a, "--out") == 0 && v) {
            r->out_dir = v;
            i++;
        } else if (strcmp(a, "--replay") == 0 && v) {
            r->replay = v;
            i++;
        } else if (a[0] != '-' && !r->model) {
            r->model = a;
        } else {
            fprintf(stderr, "etraced run: unknown or incomplete argument '%s'\n", a);
            return 64;
        }
    }
    if (!r->out_dir)
        return fprintf(stderr, "etraced run: --out DIR is required\n"), 64;
    if (r->replay) {
        if (r->model || r->n_inputs || r->n_targets || r->reward_path || r->terminal_path ||
            r->ticks >= 0 || r->align)
            return fprintf(stderr, "etraced run: --replay FILE takes no MODEL and no file "
                                   "flags (only --out, and --learn is not allowed)\n"),
                   64;
        return 0;
    }
    if (!r->model)
        return fprintf(stderr, "etraced run: MODEL is required\n"), 64;
    return 0;
}

/* Loads f->path as a float array of [rows, cols] (1-D: cols 1). */
static int
load_table(struct named_file *f, const char *what)
{
    struct err e;
    err_clear(&e);
    if (npy_load_file(f->path, mem_default(), &f->a, &e)) {
        fprintf(stderr, "etraced run: %s %s: %s\n", what, f->path, e.msg);
        return 1;
    }
    if (f->a.ndim < 1 || f->a.ndim > 2) {
        fprintf(stderr, "etraced run: %s: %s has %d dimensions, expected [T, size]\n", what,
                f->path, f->a.ndim);
        return 1;
    }
    f->rows = f->a.shape[0];
    f->cols = f->a.ndim == 2 ? f->a.shape[1] : 1;
    f->v = malloc((size_t)(f->a.count ? f->a.count : 1) * sizeof(double));
    if (!f->v)
        return fprintf(stderr, "etraced run: out of memory\n"), 1;
    if (npy_to_double(&f->a, f->v) != 0) {
        fprintf(stderr, "etraced run: %s: %s is not float32 or float64\n", what, f->path);
        return 1;
    }
    return 0;
}

static void
free_table(struct named_file *f)
{
    npy_fini(&f->a, mem_default());
    free(f->v);
    free((char *)f->name);
    f->v = NULL;
    f->name = NULL;
}

static int
mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return -1;
    return 0;
}

static int
write_npy(const char *dir, const char *sub, const char *name, const char *suffix, enum npy_dtype t,
          int ndim, const int64_t *shape, const void *data)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (mkdir_p(path)) {
        fprintf(stderr, "etraced run: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s/%s%s.npy", dir, sub, name, suffix);
    struct err e;
    err_clear(&e);
    if (npy_write_file(path, t, ndim, shape, data, &e)) {
        fprintf(stderr, "etraced run: %s\n", e.msg);
        return 1;
    }
    return 0;
}

#if defined(REAL_DOUBLE)
#define NPY_REAL NPY_F64
#else
#define NPY_REAL NPY_F32
#endif

static int
write_params(struct engine *eng, const char *dir, int grads)
{
    engine_sync_grad_sums(eng);
    for (int p = 0; p < engine_n_projs(eng); p++) {
        struct engine_param_view v;
        engine_param(eng, p, &v);
        int64_t shape[2] = {v.in_size, v.out_size};
        int64_t n1[1] = {v.count}, o1[1] = {v.out_size};
        int rc = 0;
        /* W plus any pending rank-one pairs (DESIGN §4.4): what every reader of W sees */
        real *w = malloc((size_t)(v.count ? v.count : 1) * sizeof *w);
        if (!w)
            return 1;
        engine_param_weight(eng, p, w);
        if (v.op == MODEL_OP_DENSE)
            rc |= write_npy(dir, "params", v.name, ".weight", NPY_REAL, 2, shape, w);
        else
            rc |= write_npy(dir, "params", v.name, ".weight", NPY_REAL, 1, n1, w);
        free(w);
        if (v.bias)
            rc |= write_npy(dir, "params", v.name, ".bias", NPY_REAL, 1, o1, v.bias);
        if (v.op == MODEL_OP_SPARSE) {
            int64_t *ind = malloc((size_t)(v.count ? v.count : 1) * sizeof *ind);
            if (!ind)
                return 1;
            for (int64_t k = 0; k < v.count; k++)
                ind[k] = v.indices[k];
            int64_t ip1[1] = {v.in_size + 1};
            rc |= write_npy(dir, "params", v.name, ".indices", NPY_I64, 1, n1, ind);
            rc |= write_npy(dir, "params", v.name, ".indptr", NPY_I64, 1, ip1, v.indptr);
            free(ind);
        }
        if (grads && v.grad_sum_w) {
            if (v.op == MODEL_OP_DENSE)
                rc |= write_npy(dir, "grads", v.name, ".weight", NPY_F64, 2, shape, v.grad_sum_w);
            else
                rc |= write_npy(dir, "grads", v.name, ".weight", NPY_F64, 1, n1, v.grad_sum_w);
            if (v.grad_sum_b)
                rc |= write_npy(dir, "grads", v.name, ".bias", NPY_F64, 1, o1, v.grad_sum_b);
        }
        if (rc)
            return 1;
    }
    return 0;
}

/* align.json: per projection, the cosine and norm ratio of the online gradient (weight
 * and bias together) to the exact BPTT gradient; the BPTT gradients go to grads_bptt/. */
static int
write_align(struct engine *eng, const char *dir)
{
    if (engine_align_finish(eng)) {
        fprintf(stderr, "etraced run: --align: no tick was recorded\n");
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/align.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "etraced run: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "{");
    int first = 1, rc = 0;
    for (int p = 0; p < engine_n_projs(eng); p++) {
        struct engine_param_view v;
        engine_param(eng, p, &v);
        if (!v.grad_sum_w)
            continue;
        const double *bw, *bb;
        engine_align_grad(eng, p, &bw, &bb);
        double dot = 0.0, na = 0.0, nb = 0.0;
        for (int64_t k = 0; k < v.count; k++) {
            dot += v.grad_sum_w[k] * bw[k];
            na += v.grad_sum_w[k] * v.grad_sum_w[k];
            nb += bw[k] * bw[k];
        }
        for (int64_t k = 0; bb && v.grad_sum_b && k < v.out_size; k++) {
            dot += v.grad_sum_b[k] * bb[k];
            na += v.grad_sum_b[k] * v.grad_sum_b[k];
            nb += bb[k] * bb[k];
        }
        double cosine = (na > 0.0 && nb > 0.0) ? dot / (sqrt(na) * sqrt(nb)) : 0.0;
        double ratio = nb > 0.0 ? sqrt(na) / sqrt(nb) : 0.0;
        fprintf(f, "%s\"%s\": {\"cosine\": %.17g, \"norm_ratio\": %.17g}", first ? "" : ", ",
                v.name, cosine, ratio);
        printf("  align %-12s cosine %.6f  norm_ratio %.6f\n", v.name, cosine, ratio);
        first = 0;
        int64_t shape[2] = {v.in_size, v.out_size}, n1[1] = {v.count}, o1[1] = {v.out_size};
        if (v.op == MODEL_OP_DENSE)
            rc |= write_npy(dir, "grads_bptt", v.name, ".weight", NPY_F64, 2, shape, bw);
        else
            rc |= write_npy(dir, "grads_bptt", v.name, ".weight", NPY_F64, 1, n1, bw);
        if (bb)
            rc |= write_npy(dir, "grads_bptt", v.name, ".bias", NPY_F64, 1, o1, bb);
    }
    fprintf(f, "}\n");
    if (fclose(f)) {
        fprintf(stderr, "etraced run: cannot write %s\n", path);
        return 1;
    }
    return rc;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Checks the files against the model and settles T. */
static int
check_files(struct run *r, struct engine *eng, int64_t *T_out)
{
    const struct model_desc *d = engine_model(eng);
    int64_t T = r->ticks, common = -1;
    int differ = 0;
    for (int i = 0; i < d->n_inputs; i++) {
        int found = 0;
        for (int k = 0; k < r->n_inputs; k++)
            found |= strcmp(r->inputs[k].name, d->inputs[i].name) == 0;
        if (!found)
            return fprintf(stderr, "etraced run: no --input for input '%s'\n", d->inputs[i].name),
                   1;
    }
    struct named_file *all[2 * MAX_FILES + 1];
    int n_all = 0;
    for (int k = 0; k < r->n_inputs; k++) {
        struct named_file *f = &r->inputs[k];
        f->index = model_find_input(d, f->name);
        if (f->index < 0)
            return fprintf(stderr, "etraced run: --input %s: the model has no input '%s'\n",
                           f->path, f->name),
                   1;
        if (load_table(f, "--input"))
            return 1;
        if (f->a.ndim != 2 || f->cols != d->inputs[f->index].size)
            return fprintf(stderr, "etraced run: --input %s: shape must be [T, %d]\n", f->path,
                           d->inputs[f->index].size),
                   1;
        all[n_all++] = f;
    }
    for (int k = 0; k < r->n_targets; k++) {
        struct named_file *f = &r->targets[k];
        f->index = model_find_readout(d, f->name);
        if (f->index < 0)
            return fprintf(stderr, "etraced run: --target %s: the model has no readout '%s'\n",
                           f->path, f->name),
                   1;
        if (load_table(f, "--target"))
            return 1;
        int size = engine_readout_size(eng, f->index);
        int ce = d->learning.present && d->learning.loss == MODEL_LOSS_CROSS_ENTROPY;
        if (ce ? f->cols != 1 : (f->a.ndim != 2 || f->cols != size))
            return fprintf(stderr, "etraced run: --target %s: shape must be %s\n", f->path,
                           ce ? "[T] or [T, 1] (class indices)" : "[T, readout size]"),
                   1;
        all[n_all++] = f;
    }
    if (r->reward_path) {
        r->reward.path = r->reward_path;
        if (load_table(&r->reward, "--reward"))
            return 1;
        if (r->reward.cols != 1)
            return fprintf(stderr, "etraced run: --reward %s: shape must be [T]\n", r->reward.path),
                   1;
        all[n_all++] = &r->reward;
    }
    if (r->terminal_path) {
        r->terminal.path = r->terminal_path;
        if (load_table(&r->terminal, "--terminal"))
            return 1;
        if (r->terminal.cols != 1)
            return fprintf(stderr, "etraced run: --terminal %s: shape must be [T]\n",
                           r->terminal.path),
                   1;
        if (!d->learning.present || d->learning.signal != MODEL_SIGNAL_REWARD)
            return fprintf(stderr, "etraced run: --terminal needs a model with signal: reward\n"),
                   1;
        all[n_all++] = &r->terminal;
    }
    for (int k = 0; k < n_all; k++) {
        if (common >= 0 && all[k]->rows != common)
            differ = 1;
        if (common < 0 || all[k]->rows < common)
            common = all[k]->rows;
    }
    if (T < 0) {
        if (n_all == 0)
            return fprintf(stderr, "etraced run: no input files: give --ticks N\n"), 64;
        if (differ)
            return fprintf(stderr, "etraced run: the files have different row counts: give "
                                   "--ticks N\n"),
                   1;
        T = common;
    }
    for (int k = 0; k < n_all; k++)
        if (all[k]->rows < T)
            return fprintf(stderr, "etraced run: %s has %lld rows, fewer than the %lld ticks\n",
                           all[k]->path, (long long)all[k]->rows, (long long)T),
                   1;
    *T_out = T;
    return 0;
}

int
offline_run_main(int argc, char **argv)
{
    struct run r;
    int rc = parse_run_args(argc, argv, &r);
    if (rc)
        return rc;
    if (r.replay) {
        struct offline_replay_hooks h = {.threads = r.threads};
        return r.learn >= 0 ? (fprintf(stderr, "etraced run: --replay: no --learn\n"), 64)
                            : offline_replay(r.replay, r.out_dir, &h);
    }
    struct model_desc *probe;
    if (load_model(r.model, &probe))
        return 1;
    int has_learning = probe->learning.present;
    int has_signal = has_learning && probe->learning.signal != MODEL_SIGNAL_NONE;
    model_free(&probe, mem_default());
    if (r.learn < 0)
        r.learn = has_learning ? ENGINE_LEARN_ON : ENGINE_LEARN_OFF;
    if (r.learn != ENGINE_LEARN_OFF && !has_learning) {
        fprintf(stderr, "etraced run: --learn on/accumulate needs a `learning:` section in %s\n",
                r.model);
        return 1;
    }
    if (r.align && r.learn != ENGINE_LEARN_ACCUMULATE) {
        fprintf(stderr, "etraced run: --align needs --learn accumulate\n");
        return 64;
    }
    int track = r.learn != ENGINE_LEARN_OFF && has_signal;
    struct engine *eng;
    if (compile_model(r.model, track, &eng))
        return 1;
    engine_set_learn(eng, (enum engine_learn)r.learn);
    const struct model_desc *d = engine_model(eng);
    int64_t T = 0;
    real *outs[MAX_FILES] = {0}, *acts[MAX_FILES] = {0};
    double *loss = NULL;
    real *row = NULL;
    int32_t *spk = NULL;
    pool_t *pool = NULL;
    rc = 1;
    if (check_files(&r, eng, &T))
        goto done;
    if (r.threads > 1 && !(pool = pool_new(r.threads, POOL_MIN_WORK)))
        goto oom;
    if (r.align) {
        struct err e;
        err_clear(&e);
        if (engine_align_begin(eng, T, &e)) {
            fprintf(stderr, "etraced run: %s\n", e.msg);
            goto done;
        }
    }
    int n_ro = engine_n_readouts(eng);
    if (n_ro > MAX_FILES) {
        fprintf(stderr, "etraced run: more than %d readouts\n", MAX_FILES);
        goto done;
    }
    int max_size = 1;
    for (int i = 0; i < d->n_inputs; i++)
        if (d->inputs[i].size > max_size)
            max_size = d->inputs[i].size;
    for (int k = 0; k < n_ro; k++)
        if (engine_readout_size(eng, k) > max_size)
            max_size = engine_readout_size(eng, k);
    row = malloc((size_t)max_size * sizeof *row);
    spk = malloc((size_t)max_size * sizeof *spk);
    loss = calloc((size_t)(T ? T : 1), sizeof *loss);
    if (!row || !spk || !loss)
        goto oom;
    for (int k = 0; k < n_ro; k++) {
        outs[k] = calloc((size_t)(T ? T : 1) * (size_t)engine_readout_size(eng, k), sizeof(real));
        acts[k] = calloc((size_t)(T ? T : 1) * (size_t)engine_readout_size(eng, k), sizeof(real));
        if (!outs[k] || !acts[k])
            goto oom;
    }
    engine_set_fp_env();
    double t0 = now_s();
    for (int64_t t = 0; t < T; t++) {
        for (int k = 0; k < r.n_inputs; k++) {
            struct named_file *f = &r.inputs[k];
            const double *src = f->v + t * f->cols;
            if (d->inputs[f->index].kind == MODEL_INPUT_SPIKES) {
                int n = 0;
                for (int64_t c = 0; c < f->cols; c++)
                    if (src[c] != 0.0)
                        spk[n++] = (int32_t)c;
                engine_add_spikes(eng, f->index, spk, n);
            } else {
                for (int64_t c = 0; c < f->cols; c++)
                    row[c] = (real)src[c];
                engine_set_input(eng, f->index, row);
            }
        }
        for (int k = 0; k < r.n_targets; k++) {
            struct named_file *f = &r.targets[k];
            const double *src = f->v + t * f->cols;
            if (d->learning.present && d->learning.loss == MODEL_LOSS_CROSS_ENTROPY) {
                if (src[0] >= 0.0) {
                    int size = engine_readout_size(eng, f->index);
                    if (src[0] != floor(src[0]) || src[0] >= size) {
                        fprintf(stderr,
                                "etraced run: %s: row %lld: class %g is not an index "
                                "below %d\n",
                                f->path, (long long)t, src[0], size);
                        goto done;
                    }
                    engine_set_target_class(eng, f->index, (int)src[0]);
                }
                continue;
            }
            int64_t n_nan = 0;
            for (int64_t c = 0; c < f->cols; c++)
                n_nan += isnan(src[c]) ? 1 : 0;
            if (n_nan == f->cols)
                continue; /* an all-NaN row: no target at this tick */
            if (n_nan) {
                fprintf(stderr, "etraced run: %s: row %lld is partly NaN\n", f->path, (long long)t);
                goto done;
            }
            for (int64_t c = 0; c < f->cols; c++)
                row[c] = (real)src[c];
            engine_set_target(eng, f->index, row);
        }
        if (r.reward_path)
            engine_add_reward(eng, r.reward.v[t]);
        if (r.terminal_path && r.terminal.v[t] != 0.0)
            engine_set_terminal(eng);
        pool_tick(pool, eng);
        loss[t] = engine_last_loss(eng);
        for (int k = 0; k < n_ro; k++) {
            int size = engine_readout_size(eng, k);
            memcpy(outs[k] + t * size, engine_readout_values(eng, k), (size_t)size * sizeof(real));
            const real *act = engine_readout_action(eng, k);
            if (act)
                memcpy(acts[k] + t * size, act, (size_t)size * sizeof(real));
        }
    }
    double elapsed = now_s() - t0;
    if (mkdir_p(r.out_dir)) {
        fprintf(stderr, "etraced run: cannot create %s: %s\n", r.out_dir, strerror(errno));
        goto done;
    }
    int is_reward = d->learning.present && d->learning.signal == MODEL_SIGNAL_REWARD;
    for (int k = 0; k < n_ro; k++) {
        int64_t shape[2] = {T, engine_readout_size(eng, k)};
        if (write_npy(r.out_dir, "outputs", d->readouts[k].name, "", NPY_REAL, 2, shape, outs[k]))
            goto done;
        if (is_reward && engine_readout_action(eng, k)) {
            int gauss = d->learning.policy_kind == MODEL_POLICY_GAUSSIAN;
            if (!gauss)
                for (int64_t t = 0; t < T; t++)
                    acts[k][t] = acts[k][t * shape[1]];
            if (write_npy(r.out_dir, "outputs", d->readouts[k].name, ".action", NPY_REAL,
                          gauss ? 2 : 1, shape, acts[k]))
                goto done;
        }
    }
    int64_t tshape[1] = {T};
    if (write_npy(r.out_dir, ".", "loss", "", NPY_F64, 1, tshape, loss))
        goto done;
    if (write_params(eng, r.out_dir, track))
        goto done;
    if (r.align && write_align(eng, r.out_dir))
        goto done;
    double mean_loss = 0.0;
    for (int64_t t = 0; t < T; t++)
        mean_loss += loss[t];
    struct engine_counters cnt;
    engine_counters(eng, &cnt);
    printf("etraced run: %s, %lld ticks in %.3f s (%.2f us/tick), mean loss %.6g, steps %llu, "
           "refused %llu, resets %llu\n",
           d->name, (long long)T, elapsed, T ? 1e6 * elapsed / (double)T : 0.0,
           T ? mean_loss / (double)T : 0.0, (unsigned long long)cnt.steps,
           (unsigned long long)cnt.updates_refused, (unsigned long long)cnt.state_resets);
    for (int c = 0; c < engine_n_cells(eng); c++) {
        double rate = engine_cell_rate(eng, c);
        if (rate >= 0.0)
            printf("  firing rate %s: %.4f spikes/neuron/tick\n", d->cells[c].name, rate);
    }
    printf("  wrote %s/\n", r.out_dir);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "etraced run: out of memory\n");
done:
    for (int k = 0; k < MAX_FILES; k++) {
        free(outs[k]);
        free(acts[k]);
    }
    for (int k = 0; k < r.n_inputs; k++)
        free_table(&r.inputs[k]);
    for (int k = 0; k < r.n_targets; k++)
        free_table(&r.targets[k]);
    if (r.reward_path)
        free_table(&r.reward);
    if (r.terminal_path)
        free_table(&r.terminal);
    free(loss);
    free(row);
    free(spk);
    pool_free(&pool);
    engine_free(&eng);
    return rc;
}

/* ---- export-checkpoint ------------------------------------------------------------- */

static int
read_file(const char *path, uint8_t **buf, size_t *len)
{
    char err[512];
    errno = 0;
    int fd = security_open_read(path, 0, NULL, err, sizeof err);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        if (!errno)
            errno = EINVAL; /* opened, but not a regular file */
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = n > 0 ? (size_t)n : 0;
    int ok = *buf && fread(*buf, 1, *len, f) == *len;
    fclose(f);
    if (!ok) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

int
offline_export_checkpoint_main(int argc, char **argv)
{
    char err[1024];
    uint8_t *buf;
    size_t len;
    if (argc != 3) {
        fprintf(stderr, "usage: etraced export-checkpoint FILE DIR\n");
        return 64;
    }
    if (read_file(argv[1], &buf, &len)) {
        fprintf(stderr, "etraced export-checkpoint: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    Etrace__Checkpoint *ck = snap_unpack(buf, len, err, sizeof err);
    free(buf);
    if (!ck) {
        fprintf(stderr, "etraced export-checkpoint: %s: %s\n", argv[1], err);
        return 1;
    }
    struct engine *eng;
    int rc = 1;
    if (snap_restore(ck, argv[1], &eng, err, sizeof err))
        fprintf(stderr, "etraced export-checkpoint: %s\n", err);
    else {
        if (mkdir_p(argv[2]) == 0 && write_params(eng, argv[2], 0) == 0) {
            printf("etraced export-checkpoint: %s (model %s, tick %llu) -> %s/params/\n", argv[1],
                   ck->model_name, (unsigned long long)engine_tick_count(eng), argv[2]);
            rc = 0;
        }
        engine_free(&eng);
    }
    etrace__checkpoint__free_unpacked(ck, NULL);
    return rc;
}

/* ---- replay (DESIGN §5.4) ------------------------------------------------------------ */

/* Whether every spike index of f is one of the input's size. */
static int
spikes_fit(const Etrace__Frame *f, int size)
{
    for (size_t c = 0; c < f->n_spikes; c++)
        if (f->spikes[c] < 0 || f->spikes[c] >= size)
            return 0;
    return 1;
}

/* Applies a recorded Input exactly as the tick thread did (ticker.c apply_input). */
static int
replay_input(struct engine *eng, const Etrace__Input *in, const char *file)
{
    const struct model_desc *d = engine_model(eng);
    real buf[4096];
    for (size_t k = 0; k < in->n_frames; k++) {
        const Etrace__Frame *f = in->frames[k];
        int i = model_find_input(d, f->name);
        /* As the daemon checked it (wire_input_check): a corrupt recording must not write
         * past an input or read an analog frame it does not carry. */
        if (i < 0 || (f->n_values && f->n_values != (size_t)d->inputs[i].size) ||
            f->n_values > 4096 ||
            (d->inputs[i].kind == MODEL_INPUT_SPIKES ? !spikes_fit(f, d->inputs[i].size)
                                                     : f->n_values != (size_t)d->inputs[i].size))
            return fprintf(stderr, "etraced run: %s: input '%s' does not fit the model\n", file,
                           f->name),
                   -1;
        if (d->inputs[i].kind == MODEL_INPUT_SPIKES) {
            engine_add_spikes(eng, i, f->spikes, (int)f->n_spikes);
        } else {
            for (size_t c = 0; c < f->n_values; c++)
                buf[c] = (real)f->values[c];
            engine_set_input(eng, i, buf);
        }
    }
    for (size_t k = 0; k < in->n_signals; k++) {
        const Etrace__Signal *s = in->signals[k];
        if (s->kind_case == ETRACE__SIGNAL__KIND_REWARD) {
            engine_add_reward(eng, (double)s->reward);
            if (s->terminal)
                engine_set_terminal(eng);
            continue;
        }
        int r = model_find_readout(d, s->readout);
        if (r < 0)
            return fprintf(stderr, "etraced run: %s: no readout '%s'\n", file, s->readout), -1;
        if (s->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX) {
            engine_set_target_class(eng, r, s->class_index);
        } else if (s->kind_case == ETRACE__SIGNAL__KIND_TARGET) {
            if (s->target->n_values != (size_t)engine_readout_size(eng, r) ||
                s->target->n_values > 4096)
                return fprintf(stderr, "etraced run: %s: target size\n", file), -1;
            for (size_t c = 0; c < s->target->n_values; c++)
                buf[c] = (real)s->target->values[c];
            engine_set_target(eng, r, buf);
        }
    }
    return 0;
}

/* Replaces *eng by next (a swap or restore), keeping the readout shapes the outputs need. */
static int
replay_replace(struct engine **eng, struct engine *next, const char *file)
{
    if (engine_n_readouts(next) != engine_n_readouts(*eng))
        goto differ;
    for (int k = 0; k < engine_n_readouts(next); k++)
        if (engine_readout_size(next, k) != engine_readout_size(*eng, k))
            goto differ;
    engine_free(eng);
    *eng = next;
    return 0;
differ:
    fprintf(stderr,
            "etraced run: %s: a swap to a model with other readouts: not supported "
            "by replay\n",
            file);
    engine_free(&next);
    return -1;
}

int
offline_replay(const char *file, const char *out_dir, const struct offline_replay_hooks *h)
{
    struct etrace_recording_reader rd;
    char err[1024];
    struct engine *eng = NULL;
    real *outs[MAX_FILES] = {0};
    double *loss = NULL;
    int64_t T = 0, cap = 0, n_events = 0;
    uint64_t first_tick = 0, end_tick = 0;
    int rc = 1, has_end = 0;
    pool_t *pool = NULL;
    if (h && h->threads > 1 && !(pool = pool_new(h->threads, POOL_MIN_WORK))) {
        fprintf(stderr, "etraced run: cannot start %d tick threads\n", h->threads);
        return 1;
    }
    if (etrace_recording_open(&rd, file, err, sizeof err)) {
        fprintf(stderr, "etraced run: --replay %s\n", err);
        pool_free(&pool);
        return 1;
    }
    if (rd.format == 1)
        fprintf(stderr,
                "etraced run: %s: a recording without checksums (written before format 2): "
                "damage cannot be detected\n",
                file);
    engine_set_fp_env();
    for (;;) {
        Etrace__RecordEvent *ev = NULL;
        int st = etrace_recording_next(&rd, &ev, err, sizeof err);
        if (st == ETRACE_RECORDING_END)
            break;
        if (st == ETRACE_RECORDING_TRUNCATED) {
            fprintf(stderr, "etraced run: %s; replaying the %lld whole events before it\n", err,
                    (long long)n_events);
            break;
        }
        if (st != ETRACE_RECORDING_OK) {
            fprintf(stderr, "etraced run: %s\n", err);
            goto done;
        }
        if (has_end) {
            fprintf(stderr, "etraced run: %s: offset %llu: a record after the end record\n", file,
                    (unsigned long long)rd.record_offset);
            etrace__record_event__free_unpacked(ev, NULL);
            goto done;
        }
        n_events++;
        if (h && h->on_event && h->on_event(h->ctx, ev, eng)) {
            etrace__record_event__free_unpacked(ev, NULL);
            goto done;
        }
        if (!eng) {
            if (ev->kind_case != ETRACE__RECORD_EVENT__KIND_SNAPSHOT ||
                snap_verify(ev->snapshot, err, sizeof err) ||
                snap_restore(ev->snapshot, file, &eng, err, sizeof err)) {
                fprintf(stderr, "etraced run: %s: the first record must be a whole snapshot%s%s\n",
                        file, ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT ? ": " : "",
                        ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT ? err : "");
                etrace__record_event__free_unpacked(ev, NULL);
                goto done;
            }
            first_tick = engine_tick_count(eng);
            etrace__record_event__free_unpacked(ev, NULL);
            continue;
        }
        /* Run the ticks before this event, collecting outputs. */
        while (!(h && h->no_ticks) && engine_tick_count(eng) < ev->tick) {
            if (T == cap) {
                cap = cap ? 2 * cap : 4096;
                for (int k = 0; k < engine_n_readouts(eng); k++) {
                    real *no = realloc(outs[k], (size_t)cap * (size_t)engine_readout_size(eng, k) *
                                                    sizeof(real));
                    if (!no)
                        goto oom_ev;
                    outs[k] = no;
                }
                double *nl = realloc(loss, (size_t)cap * sizeof(double));
                if (!nl)
                    goto oom_ev;
                loss = nl;
            }
            pool_tick(pool, eng);
            loss[T] = engine_last_loss(eng);
            for (int k = 0; k < engine_n_readouts(eng); k++) {
                int size = engine_readout_size(eng, k);
                memcpy(outs[k] + T * size, engine_readout_values(eng, k),
                       (size_t)size * sizeof(real));
            }
            T++;
            if (h && h->on_tick && h->on_tick(h->ctx, eng)) {
                etrace__record_event__free_unpacked(ev, NULL);
                goto done;
            }
        }
        struct engine *next = NULL;
        int bad = 0;
        switch (ev->kind_case) {
        case ETRACE__RECORD_EVENT__KIND_INPUT:
            bad = replay_input(eng, ev->input, file);
            break;
        case ETRACE__RECORD_EVENT__KIND_LR:
            engine_set_lr(eng, ev->lr);
            break;
        case ETRACE__RECORD_EVENT__KIND_LEARN:
            engine_set_learn(eng, (enum engine_learn)ev->learn);
            break;
        case ETRACE__RECORD_EVENT__KIND_RESET:
            engine_reset(eng, ev->reset->what != ETRACE__RESET__WHAT__TRACES,
                         ev->reset->what != ETRACE__RESET__WHAT__STATES);
            break;
        case ETRACE__RECORD_EVENT__KIND_STALE_ZERO: {
            int i = model_find_input(engine_model(eng), ev->stale_zero);
            real *z = calloc((size_t)(i >= 0 ? engine_input_size(eng, i) : 1), sizeof(real));
            if (i >= 0 && z)
                engine_set_input(eng, i, z);
            free(z);
            break;
        }
        case ETRACE__RECORD_EVENT__KIND_DEFER_STEPS:
            engine_defer_steps(eng, ev->defer_steps);
            break;
        case ETRACE__RECORD_EVENT__KIND_SWAP:
            if (snap_compile_load(ev->swap, &next, err, sizeof err)) {
                fprintf(stderr, "etraced run: %s: swap: %s\n", file, err);
                bad = 1;
                break;
            }
            if (ev->swap->keep_weights || ev->swap->keep_state)
                engine_state_carry(next, eng, ev->swap->keep_state);
            {
                struct engine_scalars sc;
                engine_state_get_scalars(next, &sc);
                sc.tick = engine_tick_count(eng);
                engine_state_set_scalars(next, &sc);
            }
            bad = replay_replace(&eng, next, file);
            break;
        case ETRACE__RECORD_EVENT__KIND_RESTORE:
            if (snap_verify(ev->restore, err, sizeof err) ||
                snap_restore(ev->restore, file, &next, err, sizeof err)) {
                fprintf(stderr, "etraced run: %s: restore: %s\n", file, err);
                bad = 1;
                break;
            }
            bad = replay_replace(&eng, next, file);
            break;
        case ETRACE__RECORD_EVENT__KIND_END:
            has_end = 1;
            end_tick = ev->tick;
            if (ev->incomplete) {
                fprintf(stderr,
                        "etraced run: %s: offset %llu: the daemon lost events while recording "
                        "(see its log): this replay cannot reproduce the live run\n",
                        file, (unsigned long long)rd.record_offset);
                bad = 1;
            } else if (ev->end + 2 != (uint64_t)n_events) {
                /* n_events counts the snapshot and this end record too. */
                fprintf(stderr,
                        "etraced run: %s: offset %llu: the end record counts %llu events, the "
                        "file holds %lld: this replay cannot reproduce the live run\n",
                        file, (unsigned long long)rd.record_offset, (unsigned long long)ev->end,
                        (long long)n_events - 2);
                bad = 1;
            }
            break;
        default:
            break;
        }
        etrace__record_event__free_unpacked(ev, NULL);
        if (bad)
            goto done;
        continue;
    oom_ev:
        etrace__record_event__free_unpacked(ev, NULL);
        fprintf(stderr, "etraced run: out of memory\n");
        goto done;
    }
    if (!eng) {
        fprintf(stderr, "etraced run: %s: no snapshot\n", file);
        goto done;
    }
    if (!has_end)
        fprintf(stderr,
                "etraced run: %s: no end record (the daemon stopped while recording); "
                "replayed up to the last whole event\n",
                file);
    if (!out_dir) {
        rc = 0;
        goto done;
    }
    if (mkdir_p(out_dir)) {
        fprintf(stderr, "etraced run: cannot create %s: %s\n", out_dir, strerror(errno));
        goto done;
    }
    const struct model_desc *d = engine_model(eng);
    for (int k = 0; k < engine_n_readouts(eng); k++) {
        int64_t shape[2] = {T, engine_readout_size(eng, k)};
        if (write_npy(out_dir, "outputs", d->readouts[k].name, "", NPY_REAL, 2, shape,
                      outs[k] ? (const void *)outs[k] : (const void *)""))
            goto done;
    }
    int64_t tshape[1] = {T};
    if (write_npy(out_dir, ".", "loss", "", NPY_F64, 1, tshape, loss ? (void *)loss : (void *)""))
        goto done;
    if (write_params(eng, out_dir, 0))
        goto done;
    printf("etraced run: replayed %s: %lld events, ticks %llu to %llu (%lld ticks)%s\n", file,
           (long long)n_events, (unsigned long long)first_tick,
           (unsigned long long)(has_end ? end_tick : engine_tick_count(eng)), (long long)T,
           has_end ? "" : ", no end record");
    printf("  wrote %s/\n", out_dir);
    rc = 0;
done:
    for (int k = 0; k < MAX_FILES; k++)
        free(outs[k]);
    free(loss);
    etrace_recording_close(&rd);
    pool_free(&pool);
    engine_free(&eng);
    return rc;
}
