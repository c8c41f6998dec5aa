/* Fuzz target: .npy parsing (npy_parse) of hostile headers and data sections. */
#include <stddef.h>
#include <stdint.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct npy a;
    struct err e;
    err_clear(&e);
    if (npy_parse(data, size, "fuzz.npy", mem_default(), &a, &e) == 0)
        npy_fini(&a, mem_default());
    return 0;
}
