/* Error codes and formatted messages. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const names[] = {
#define X(name, text) text,
    ERR_MAP(X)
#undef X
};

const char *
err_name(enum err_code code)
{
    if ((unsigned)code >= sizeof names / sizeof names[0])
        return "unknown error";
    return names[code];
}

void
err_clear(struct err *e)
{
    e->code = ERR_OK;
    e->msg[0] = '\0';
}

enum err_code
err_setf(struct err *e, enum err_code code, const char *fmt, ...)
{
    if (!e)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}
