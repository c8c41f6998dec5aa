/* The built-in cells of DESIGN §3 as equation text. Engine layer.
 * A built-in IS its equations: mcell.c expands a built-in into a model_cell from this
 * table, and the expression compiler (expr.h) compiles it like a custom cell. */
#ifndef ETRACE_CELL_H
#define ETRACE_CELL_H

enum { CELL_MAX_PARAMS = 12, CELL_MAX_DEFINES = 4 };

struct cell_builtin {
    const char *model; /* "lif", ... */
    int n_states;
    const char *state_names[4];
    double state_init[4];
    int n_slots;
    const char *slot_names[4];
    int n_params;
    const char *param_names[CELL_MAX_PARAMS]; /* without `reset` */
    double param_defaults[CELL_MAX_PARAMS];
    int has_reset; /* accepts `reset: soft | hard` (default soft) */
    int n_defines;
    const char *define_names[CELL_MAX_DEFINES];
    const char *define_soft[CELL_MAX_DEFINES]; /* the define text under reset: soft */
    const char *define_hard[CELL_MAX_DEFINES]; /* under reset: hard (NULL: same as soft) */
    const char *update[4];                     /* one per state, in state order */
    const char *output;
};

/* The built-in named `model`, or NULL. Static storage. */
const struct cell_builtin *cell_builtin_find(const char *model);

struct mem;
struct model_cell;

/* Fills c with built-in b's states (initial values), slots, params (defaults), defines
 * (the soft or hard text), updates, output and the default surrogate
 * {relu, alpha 0.3, width 1.0}; every string is allocated with m; expression positions
 * are set to c->pos. The caller has zeroed c and set c->name, c->size and c->pos
 * (c->model is set here). Returns 0, or -1 when out of memory (c is then cell_fini'd). */
int cell_expand(const struct cell_builtin *b, int reset_hard, const struct mem *m,
                struct model_cell *c);

/* Frees every string and array a model_cell owns (name, model, state, slot and param
 * names, params, defines, updates, output) and zeroes it. Accepts a zeroed cell. */
void cell_fini(struct model_cell *c, const struct mem *m);

/* The number of built-ins and the i-th, for listing (0 <= i < cell_builtin_count()). */
int cell_builtin_count(void);
const struct cell_builtin *cell_builtin_at(int i);

#endif
