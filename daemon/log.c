/* Log lines on stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    const char *name = level == LOG_LEVEL_ERROR     ? "error: "
                       : level == LOG_LEVEL_WARNING ? "warning: "
                                                    : "";
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* JOURNAL_STREAM is set when stderr is connected to journald. */
    if (getenv("JOURNAL_STREAM"))
        fprintf(stderr, "<%d>etraced: %s%s\n", (int)level, name, line);
    else
        fprintf(stderr, "etraced: %s%s\n", name, line);
}
