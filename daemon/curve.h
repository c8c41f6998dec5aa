/* CURVE security for tcp endpoints (DESIGN §5.7): the server key pair from
 * curve.server_secret_file and a ZAP handler (an inproc REP socket watched by libuv) that
 * admits only the client public keys of curve.allow; a refused client gets nothing and is
 * counted per socket. Daemon layer; loop thread only. */
#ifndef ETRACE_CURVE_H
#define ETRACE_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "root.h"

/* With curve.server_secret_file: reads the secret key and starts the ZAP handler (call
 * before the endpoints bind). Without it: nothing. Returns 0, or -1 with err. */
int curve_start(struct daemon *d, char *err, size_t err_len);

/* The server secret key for endpoint_open, or NULL without CURVE. */
const uint8_t *curve_secret(const struct daemon *d);

/* Stops the ZAP handler (closes its handle and socket). Accepts a daemon without it. */
void curve_stop(struct daemon *d);

/* Reads a key file: the 40-character Z85 key after "secret:" (or alone on a line); fills
 * key[32]. Returns 0, or -1 with err. */
int curve_read_secret(const char *path, uint8_t key[32], char *err, size_t err_len);

/* The part of a key file curve_read_secret reads. */
#define CURVE_KEY_FILE_MAX 65536

/* The same, from the file's text in memory (path names it in messages). */
int curve_parse_secret(const char *text, size_t len, const char *path, uint8_t key[32], char *err,
                       size_t err_len);

#endif
