/* The `learning:` section of the model file: algorithm, decays, signal, loss, optimizer,
 * policy and critic. Engine layer, part of the model reader (model.c); errors as in
 * mschema.h. */
#ifndef ETRACE_MLEARN_H
#define ETRACE_MLEARN_H

#include "mschema.h"

/* Reads the `learning:` mapping n into target (a struct model_desc) over the defaults
 * that mlearn_defaults set. Needs the readouts read before. */
int mlearn_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field);

/* Every learning key's default (DESIGN §2.4), before the file is read. */
void mlearn_defaults(struct model_learning *l);

#endif
