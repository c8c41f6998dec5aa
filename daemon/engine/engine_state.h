/* The engine state as named sections: the table behind engine_state_* of engine.h, built
 * at compile time. Engine layer, internal to the engine. */
#ifndef ETRACE_ENGINE_STATE_H
#define ETRACE_ENGINE_STATE_H

#include "engine_int.h"

/* Builds e->sections (allocated with e->mem). Returns 0, or -1 when out of memory. */
int engine_state_build(struct engine *e);

/* Frees e->sections; accepts an engine without them. */
void engine_state_fini(struct engine *e);

#endif
