/* Fuzz target: the daemon's config file (config_load_text, libcyaml and the settings
 * table's checks). Any text must give settings or a message, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0; /* libyaml is quadratic in nesting; big inputs only slow the search */
    struct config c;
    char err[1024];
    memset(&c, 0, sizeof c);
    config_load_text(&c, (const char *)data, size, "fuzz.yaml", err, sizeof err);
    config_fini(&c);
    return 0;
}
