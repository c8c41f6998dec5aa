/* Engine error codes and messages. Engine layer.
 * One X-macro list gives the enum and its strings (libuv UV_ERRNO_MAP); the detail text
 * goes into a caller-supplied struct err (hiredis errstr). */
#ifndef ETRACE_ERR_H
#define ETRACE_ERR_H

#define ERR_MAP(X)                                                                                 \
    X(OK, "ok")                                                                                    \
    X(NOMEM, "out of memory")                                                                      \
    X(IO, "cannot read or write a file")                                                           \
    X(MODEL, "invalid model")                                                                      \
    X(NPY, "invalid .npy file")                                                                    \
    X(EXPR, "invalid expression")                                                                  \
    X(UNSUPPORTED, "not supported yet")                                                            \
    X(USAGE, "invalid argument")                                                                   \
    X(STATE, "invalid engine state")

enum err_code {
#define X(name, text) ERR_##name,
    ERR_MAP(X)
#undef X
};

struct err {
    enum err_code code; /* ERR_OK until something fails */
    char msg[1024];     /* "FILE:LINE:COLUMN: FIELD: message" for model errors */
};

/* The fixed text of a code ("out of memory"). Static storage. */
const char *err_name(enum err_code code);

/* Clears e to ERR_OK and an empty message. */
void err_clear(struct err *e);

/* Sets e's code and printf-style message (truncated to fit); returns code so callers
 * can write `return err_setf(e, ERR_MODEL, ...)`. e may be NULL. */
enum err_code err_setf(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
