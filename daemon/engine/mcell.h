/* The `cells:` section of the model file: keys, built-in expansion, custom equations,
 * surrogate, expressions checked by compiling them. Engine layer, part of the model
 * reader (model.c); errors and ownership as in mschema.h. */
#ifndef ETRACE_MCELL_H
#define ETRACE_MCELL_H

#include "mschema.h"

/* Reads the `cells:` sequence n into target (a struct model_desc): allocates d->cells
 * and fills every cell. Needs d->inputs and d->dt read before. */
int mcell_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field);

/* Rejects `name` (at node n) when one of the first n_inputs inputs or n_cells cells
 * already has it: inputs and cells share one namespace. */
int mcell_check_unit_name(struct mschema *x, const yaml_node_t *n, const char *field,
                          const char *name, int n_inputs, int n_cells);

#endif
