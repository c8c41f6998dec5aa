/* NumPy .npy files: a strict, hostile-input-safe header parser and a format 1.0 writer.
 * The header is a Python dict literal; we accept exactly what numpy writes (string keys,
 * string / bool / tuple-of-int values) and name the file in every error. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host: .npy data is copied without byte swapping"
#endif

enum {
    PREAMBLE_V1 = 10, /* magic (6) + version (2) + header length (2) */
    PREAMBLE_V2 = 12, /* magic (6) + version (2) + header length (4) */
    MAX_STR = 64,     /* longest string value we keep (descr) */
};

static const char magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
static const int64_t max_count = INT32_MAX; /* 2^31 - 1 elements */

size_t
npy_dtype_size(enum npy_dtype t)
{
    switch (t) {
    case NPY_F32:
    case NPY_I32:
        return 4;
    case NPY_F64:
    case NPY_I64:
        return 8;
    }
    return 0;
}

static const char *
dtype_descr(enum npy_dtype t)
{
    switch (t) {
    case NPY_F32:
        return "<f4";
    case NPY_F64:
        return "<f8";
    case NPY_I32:
        return "<i4";
    case NPY_I64:
        return "<i8";
    }
    return "?";
}

/* ---- the header dict ---------------------------------------------------------------- */

struct lexer {
    const char *p, *end;
};

struct header {
    int has_descr, has_fortran, has_shape;
    char descr[MAX_STR];
    int fortran_order;
    int ndim;
    int64_t shape[NPY_MAX_DIM];
};

static void
skip_ws(struct lexer *lx)
{
    while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\n' || *lx->p == '\r'))
        lx->p++;
}

static int
eat(struct lexer *lx, char c)
{
    skip_ws(lx);
    if (lx->p < lx->end && *lx->p == c) {
        lx->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes, into buf (NUL-terminated). -1 when malformed. */
static int
lex_string(struct lexer *lx, char *buf, size_t buf_len)
{
    skip_ws(lx);
    if (lx->p >= lx->end || (*lx->p != '\'' && *lx->p != '"'))
        return -1;
    char q = *lx->p++;
    size_t n = 0;
    while (lx->p < lx->end && *lx->p != q) {
        unsigned char c = (unsigned char)*lx->p;
        if (c == '\\' || c < 0x20 || c > 0x7e || n + 1 >= buf_len)
            return -1;
        buf[n++] = (char)c;
        lx->p++;
    }
    if (lx->p >= lx->end)
        return -1;
    lx->p++;
    buf[n] = '\0';
    return 0;
}

static int
lex_word(struct lexer *lx, const char *w)
{
    skip_ws(lx);
    size_t n = strlen(w);
    if ((size_t)(lx->end - lx->p) < n || memcmp(lx->p, w, n) != 0)
        return 0;
    /* The word must end here: `Truex` is not `True`. */
    if ((size_t)(lx->end - lx->p) > n) {
        char c = lx->p[n];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
            return 0;
    }
    lx->p += n;
    return 1;
}

static int
fail(struct err *e, const char *name, const char *what)
{
    err_setf(e, ERR_NPY, "%s: %s", name, what);
    return -1;
}

/* A shape tuple: `()`, `(n,)`, `(n, m)`, `(n, m,)`. Python needs the comma for one
 * element: `(3)` is an int, which numpy rejects, so we do too. */
static int
parse_shape(struct lexer *lx, struct header *h, const char *name, struct err *e)
{
    if (!eat(lx, '('))
        return fail(e, name, "malformed header: 'shape' is not a tuple");
    h->ndim = 0;
    int n_commas = 0;
    for (;;) {
        skip_ws(lx);
        if (eat(lx, ')'))
            break;
        if (lx->p < lx->end && *lx->p == '-')
            return fail(e, name, "negative dimension in 'shape'");
        if (lx->p >= lx->end || *lx->p < '0' || *lx->p > '9')
            return fail(e, name, "malformed header: bad 'shape' tuple");
        int64_t v = 0;
        while (lx->p < lx->end && *lx->p >= '0' && *lx->p <= '9') {
            v = v * 10 + (*lx->p - '0');
            if (v > max_count)
                return fail(e, name, "dimension in 'shape' exceeds 2^31 - 1");
            lx->p++;
        }
        if (h->ndim == NPY_MAX_DIM) {
            err_setf(e, ERR_NPY, "%s: more than %d dimensions", name, NPY_MAX_DIM);
            return -1;
        }
        h->shape[h->ndim++] = v;
        if (eat(lx, ',')) {
            n_commas++;
            continue;
        }
        if (eat(lx, ')'))
            break;
        return fail(e, name, "malformed header: bad 'shape' tuple");
    }
    if (h->ndim == 1 && n_commas == 0)
        return fail(e, name, "malformed header: 'shape' is not a tuple");
    return 0;
}

static int
parse_header(const char *text, size_t len, const char *name, struct header *h, struct err *e)
{
    struct lexer lx = {text, text + len};
    memset(h, 0, sizeof *h);
    if (!eat(&lx, '{'))
        return fail(e, name, "malformed header: not a dict");
    for (;;) {
        if (eat(&lx, '}'))
            break;
        char key[MAX_STR];
        if (lex_string(&lx, key, sizeof key) != 0)
            return fail(e, name, "malformed header: expected a quoted key");
        if (!eat(&lx, ':'))
            return fail(e, name, "malformed header: expected ':'");
        if (strcmp(key, "descr") == 0) {
            if (h->has_descr)
                return fail(e, name, "malformed header: duplicate key 'descr'");
            skip_ws(&lx);
            if (lx.p < lx.end && *lx.p == '[')
                return fail(e, name, "unsupported dtype: structured arrays are not accepted");
            if (lex_string(&lx, h->descr, sizeof h->descr) != 0)
                return fail(e, name, "malformed header: 'descr' is not a string");
            h->has_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (h->has_fortran)
                return fail(e, name, "malformed header: duplicate key 'fortran_order'");
            if (lex_word(&lx, "True"))
                h->fortran_order = 1;
            else if (lex_word(&lx, "False"))
                h->fortran_order = 0;
            else
                return fail(e, name, "malformed header: 'fortran_order' is not True or False");
            h->has_fortran = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (h->has_shape)
                return fail(e, name, "malformed header: duplicate key 'shape'");
            if (parse_shape(&lx, h, name, e) != 0)
                return -1;
            h->has_shape = 1;
        } else {
            err_setf(e, ERR_NPY, "%s: malformed header: unexpected key '%s'", name, key);
            return -1;
        }
        if (eat(&lx, ','))
            continue;
        if (eat(&lx, '}'))
            break;
        return fail(e, name, "malformed header: expected ',' or '}'");
    }
    skip_ws(&lx);
    /* numpy pads with spaces and ends with '\n'; a NUL pad from old writers is harmless. */
    while (lx.p < lx.end && *lx.p == '\0')
        lx.p++;
    if (lx.p != lx.end)
        return fail(e, name, "malformed header: text after the dict");
    if (!h->has_descr)
        return fail(e, name, "malformed header: no 'descr' key");
    if (!h->has_fortran)
        return fail(e, name, "malformed header: no 'fortran_order' key");
    if (!h->has_shape)
        return fail(e, name, "malformed header: no 'shape' key");
    return 0;
}

/* '<f4' '<f8' '<i4' '<i8', with '=' (native, little endian here) too. '|' marks a
 * byte-order-free type, which only 1-byte types are, so it never fits ours. */
static int
parse_descr(const char *s, const char *name, enum npy_dtype *t, struct err *e)
{
    static const struct {
        const char *code;
        enum npy_dtype t;
    } types[] = {{"f4", NPY_F32}, {"f8", NPY_F64}, {"i4", NPY_I32}, {"i8", NPY_I64}};
    if (s[0] == '<' || s[0] == '=') {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(s + 1, types[i].code) == 0) {
                *t = types[i].t;
                return 0;
            }
    }
    const char *why = "expected float32, float64, int32 or int64";
    if (s[0] == '>')
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(s + 1, types[i].code) == 0)
                why = "big-endian data is not accepted; save it little-endian";
    err_setf(e, ERR_NPY, "%s: wrong dtype '%s' (%s)", name, s, why);
    return -1;
}

static void
format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, ndim == 1 ? ",)" : ")");
}

int
npy_parse(const void *buf, size_t len, const char *name, const struct mem *m, struct npy *out,
          struct err *e)
{
    const unsigned char *b = buf;
    if (!name)
        name = "(npy)";
    if (len < sizeof magic || memcmp(b, magic, sizeof magic) != 0)
        return fail(e, name, "not a .npy file (bad magic)");
    if (len < 8)
        return fail(e, name, "truncated: no format version");
    unsigned major = b[6], minor = b[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        err_setf(e, ERR_NPY, "%s: unsupported format version %u.%u", name, major, minor);
        return -1;
    }
    size_t pre = major == 1 ? PREAMBLE_V1 : PREAMBLE_V2;
    if (len < pre)
        return fail(e, name, "truncated: no header length");
    uint64_t hlen = major == 1 ? (uint64_t)b[8] | (uint64_t)b[9] << 8
                               : (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 |
                                     (uint64_t)b[11] << 24;
    if (hlen > len - pre) {
        err_setf(e, ERR_NPY,
                 "%s: truncated: header of %" PRIu64 " bytes, file has %zu after "
                 "the preamble",
                 name, hlen, len - pre);
        return -1;
    }
    struct header h;
    if (parse_header((const char *)b + pre, (size_t)hlen, name, &h, e) != 0)
        return -1;
    enum npy_dtype t;
    if (parse_descr(h.descr, name, &t, e) != 0)
        return -1;
    if (h.fortran_order)
        return fail(e, name, "fortran_order True is not accepted; save it in C order");

    int has_zero = 0;
    for (int i = 0; i < h.ndim; i++)
        has_zero |= h.shape[i] == 0;
    int64_t count = 1;
    for (int i = 0; i < h.ndim && !has_zero; i++) {
        if (count > max_count / h.shape[i]) {
            char s[128];
            format_shape(s, sizeof s, h.ndim, h.shape);
            err_setf(e, ERR_NPY, "%s: shape %s has more than 2^31 - 1 elements", name, s);
            return -1;
        }
        count *= h.shape[i];
    }
    if (has_zero)
        count = 0;

    uint64_t want = (uint64_t)count * npy_dtype_size(t);
    uint64_t have = len - pre - hlen;
    if (have != want) {
        char s[128];
        format_shape(s, sizeof s, h.ndim, h.shape);
        err_setf(e, ERR_NPY, "%s: %s: data has %" PRIu64 " bytes, shape %s of '%s' needs %" PRIu64,
                 name, have < want ? "truncated" : "trailing bytes", have, s, h.descr, want);
        return -1;
    }
    void *data = mem_alloc(m, (size_t)want);
    if (!data) {
        err_setf(e, ERR_NOMEM, "%s: out of memory for %" PRIu64 " bytes", name, want);
        return -1;
    }
    if (want)
        memcpy(data, b + pre + hlen, (size_t)want);
    memset(out, 0, sizeof *out);
    out->dtype = t;
    out->ndim = h.ndim;
    for (int i = 0; i < h.ndim; i++)
        out->shape[i] = h.shape[i];
    out->count = count;
    out->data = data;
    return 0;
}

void
npy_fini(struct npy *a, const struct mem *m)
{
    mem_free(m, &a->data);
}

int
npy_to_double(const struct npy *a, double *dst)
{
    if (a->dtype == NPY_F32) {
        const float *s = a->data;
        for (int64_t i = 0; i < a->count; i++)
            dst[i] = (double)s[i];
        return 0;
    }
    if (a->dtype == NPY_F64) {
        if (a->count)
            memcpy(dst, a->data, (size_t)a->count * sizeof(double));
        return 0;
    }
    return -1;
}

int
npy_to_int64(const struct npy *a, int64_t *dst)
{
    if (a->dtype == NPY_I32) {
        const int32_t *s = a->data;
        for (int64_t i = 0; i < a->count; i++)
            dst[i] = s[i];
        return 0;
    }
    if (a->dtype == NPY_I64) {
        if (a->count)
            memcpy(dst, a->data, (size_t)a->count * sizeof(int64_t));
        return 0;
    }
    return -1;
}

/* ---- files ---------------------------------------------------------------------------- */

int
npy_write_file(const char *path, enum npy_dtype dtype, int ndim, const int64_t *shape,
               const void *data, struct err *e)
{
    if (ndim < 0 || ndim > NPY_MAX_DIM)
        return err_setf(e, ERR_USAGE, "%s: %d dimensions (at most %d)", path, ndim, NPY_MAX_DIM),
               -1;
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return err_setf(e, ERR_USAGE, "%s: negative dimension", path), -1;
        count *= (uint64_t)shape[i];
    }
    char shp[160];
    format_shape(shp, sizeof shp, ndim, shape);
    /* Format 1.0: the data starts at a multiple of 64 bytes; the header is padded with
     * spaces and ends with '\n'. */
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     dtype_descr(dtype), shp);
    if (n < 0 || (size_t)n + PREAMBLE_V1 + 1 + 63 > sizeof hdr)
        return err_setf(e, ERR_USAGE, "%s: header too long", path), -1;
    size_t total = ((size_t)PREAMBLE_V1 + (size_t)n + 1 + 63) / 64 * 64;
    size_t hlen = total - PREAMBLE_V1;
    memset(hdr + n, ' ', hlen - (size_t)n - 1);
    hdr[hlen - 1] = '\n';
    unsigned char pre[PREAMBLE_V1];
    memcpy(pre, magic, sizeof magic);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);

    size_t bytes = (size_t)count * npy_dtype_size(dtype);
    FILE *f = fopen(path, "wb");
    if (!f)
        return err_setf(e, ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno)), -1;
    int ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(hdr, 1, hlen, f) == hlen &&
             (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok)
        return err_setf(e, ERR_IO, "%s: write failed: %s", path, strerror(saved)), -1;
    return 0;
}

int
npy_read_file(const char *path, const struct mem *m, void **data, size_t *len, struct err *e)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return err_setf(e, ERR_IO, "%s: cannot open: %s", path, strerror(saved)), -1;
    }
    size_t cap = 0, n = 0;
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        int is_dir = S_ISDIR(st.st_mode);
        fclose(f);
        return err_setf(e, ERR_IO, "%s: cannot read: %s", path,
                        is_dir ? "is a directory" : "not a regular file"),
               -1;
    }
    if (st.st_size > 0)
        cap = (size_t)st.st_size;
    /* Read to EOF; the size from fstat is only a first guess (a file growing meanwhile). */
    for (;;) {
        if (buf && n == cap) {
            /* Full: grow only if there is more, so a file of known size is read once. */
            int c = fgetc(f);
            if (c == EOF)
                break;
            ungetc(c, f);
        }
        if (!buf || n == cap) {
            size_t ncap = !buf ? (cap ? cap : 65536) : cap * 2;
            unsigned char *nb = mem_alloc(m, ncap);
            if (!nb) {
                mem_free(m, &buf);
                fclose(f);
                return err_setf(e, ERR_NOMEM, "%s: out of memory reading %zu bytes", path, ncap),
                       -1;
            }
            if (n)
                memcpy(nb, buf, n);
            mem_free(m, &buf);
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int saved = errno;
        mem_free(m, &buf);
        fclose(f);
        return err_setf(e, ERR_IO, "%s: read failed: %s", path, strerror(saved)), -1;
    }
    fclose(f);
    *data = buf;
    *len = n;
    return 0;
}

int
npy_load_file(const char *path, const struct mem *m, struct npy *out, struct err *e)
{
    void *buf;
    size_t len;
    if (npy_read_file(path, m, &buf, &len, e) != 0)
        return -1;
    int rc = npy_parse(buf, len, path, m, out, e);
    mem_free(m, &buf);
    return rc;
}
