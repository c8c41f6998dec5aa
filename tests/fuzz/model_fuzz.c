/* Fuzz target: model-file parsing and validation (model_parse), which also compiles every
 * cell's expressions. Any input must give a model or an error, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0; /* libyaml is quadratic in nesting; big inputs only slow the search */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    if (model_parse(text, size, "fuzz.yaml", mem_default(), &d, &e) == 0)
        model_free(&d, mem_default());
    free(text);
    return 0;
}
