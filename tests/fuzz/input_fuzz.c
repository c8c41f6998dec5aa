/* Fuzz target: an Input message as the loop thread takes it off the input socket (daemon.c
 * on_input): decoded, checked against each fuzz model's layout (wire_input_check) and,
 * when accepted, written as the record the tick thread reads. Any input must be accepted
 * or rejected with a reason, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Etrace__Input *in = etrace__input__unpack(NULL, size, data);
    if (!in)
        return 0;
    for (int k = 0; k < FUZZ_N_MODELS; k++) {
        const struct layout *l = fuzz_layout(k);
        char err[200];
        size_t bytes = 0;
        if (wire_input_check(l, in, &bytes, err, sizeof err) != WIRE_OK)
            continue;
        void *rec = malloc(bytes);
        if (rec)
            wire_input_write(l, in, 0, rec);
        free(rec);
    }
    etrace__input__free_unpacked(in, NULL);
    return 0;
}
