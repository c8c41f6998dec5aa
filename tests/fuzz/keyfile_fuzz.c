/* Fuzz target: the CURVE key file (curve_parse_secret, what curve_read_secret reads).
 * Any text must give a key or a message, never crash. */
#include <stddef.h>
#include <stdint.h>

#include "curve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[32];
    char err[512];
    if (size > CURVE_KEY_FILE_MAX)
        size = CURVE_KEY_FILE_MAX;
    curve_parse_secret((const char *)data, size, "fuzz.key", key, err, sizeof err);
    return 0;
}
