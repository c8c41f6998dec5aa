/* NumPy .npy files (format 1.0/2.0/3.0): parse from memory, encode to memory, and the two
 * file helpers the shell uses. Engine layer; the engine calls only npy_parse at compile
 * time; writing files is for the shell (etraced run, export). */
#ifndef ETRACE_NPY_H
#define ETRACE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mem.h"

enum npy_dtype { NPY_F32, NPY_F64, NPY_I32, NPY_I64 };
enum { NPY_MAX_DIM = 4 };

struct npy {
    enum npy_dtype dtype;
    int ndim; /* 0..NPY_MAX_DIM */
    int64_t shape[NPY_MAX_DIM];
    int64_t count; /* product of shape (1 for ndim 0) */
    void *data;    /* count elements, native byte order; owned, mem_free */
};

/* Bytes per element of a dtype. */
size_t npy_dtype_size(enum npy_dtype t);

/* Parses a .npy image. Accepts little-endian '<f4' '<f8' '<i4' '<i8' (and '|'/'=' where
 * the size allows), fortran_order False only, shapes of up to NPY_MAX_DIM dims, a data
 * section of exactly count * size bytes (truncated or trailing bytes are errors).
 * `name` names the file in messages. Returns 0 and fills *out (data allocated with m),
 * or -1 with e set (ERR_NPY: "NAME: wrong dtype '>f4'", "NAME: truncated: ...";
 * ERR_NOMEM). Element counts over 2^31 - 1 are rejected before allocating. */
int npy_parse(const void *buf, size_t len, const char *name, const struct mem *m, struct npy *out,
              struct err *e);

/* Frees out->data (accepts an already freed one). */
void npy_fini(struct npy *a, const struct mem *m);

/* Converts a parsed float array to doubles into dst[count] (F32 or F64 only; returns -1
 * for an integer dtype). */
int npy_to_double(const struct npy *a, double *dst);

/* Converts a parsed integer array to int64 into dst[count] (I32 or I64 only; -1 else). */
int npy_to_int64(const struct npy *a, int64_t *dst);

/* Writes an array to the file `path` (format 1.0, C order, little endian). data holds
 * count elements of dtype. Returns 0, or -1 with ERR_IO in e naming the path. */
int npy_write_file(const char *path, enum npy_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, struct err *e);

/* Reads a whole file into memory allocated with m. Returns 0, or -1 with ERR_IO. */
int npy_read_file(const char *path, const struct mem *m, void **data, size_t *len, struct err *e);

/* Reads and parses a .npy file (npy_read_file + npy_parse). */
int npy_load_file(const char *path, const struct mem *m, struct npy *out, struct err *e);

#endif
