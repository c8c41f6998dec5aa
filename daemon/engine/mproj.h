/* The `projections:` section of the model file: keys, sources, target slots, weight and
 * bias specs. Engine layer, part of the model reader (model.c); errors and ownership as in
 * mschema.h. */
#ifndef ETRACE_MPROJ_H
#define ETRACE_MPROJ_H

#include "mschema.h"

/* Reads the `projections:` sequence n into target (a struct model_desc): allocates
 * d->projs and fills every projection. Needs the inputs and cells read before. */
int mproj_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field);

/* Frees the strings of a weight or bias spec (t itself is not freed). */
void mproj_tensor_fini(struct model_tensor *t, const struct mem *m);

#endif
