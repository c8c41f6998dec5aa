/* libetrace-client: the C client of etraced (DESIGN §7). Client layer: depends on the wire
 * protocol (etrace.pb-c.h, generated from proto/etrace.proto) and libzmq only.
 * Every symbol starts with etrace_. A client object is used by one thread at a time.
 * Return codes follow etracectl's exit codes: ETRACE_OK 0, ETRACE_EREPLY 1 (the daemon
 * answered with an Error, or the arguments were invalid), ETRACE_ETIMEOUT 2 (the daemon
 * did not answer in time), ETRACE_ESYS -1 (a local failure: memory, ZeroMQ). */
#ifndef ETRACE_CLIENT_H
#define ETRACE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "etrace.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { ETRACE_OK = 0, ETRACE_EREPLY = 1, ETRACE_ETIMEOUT = 2, ETRACE_ESYS = -1 };

typedef struct etrace_client etrace_client_t; /* control (DEALER) and input (PUSH) sockets */
typedef struct etrace_sub etrace_sub_t;       /* a SUB socket on output or stats */

/* Writes the daemon's default endpoint for socket `name` ("input", "output", "control",
 * "stats") into buf: ipc://RUN/name, RUN as the daemon computes it ($RUNTIME_DIRECTORY,
 * else $XDG_RUNTIME_DIR/etraced, else /run/etraced as root, else /tmp/etraced-UID).
 * Returns 0, or -1 when buf is too small. */
int etrace_default_endpoint(const char *name, char *buf, size_t len);

/* Connects to the control endpoint (NULL: the default) and, lazily on the first send, the
 * input endpoint (NULL: the default). timeout_ms bounds every request and send (<= 0:
 * 5000). Returns a client (free with etrace_client_free), or NULL when out of memory. */
etrace_client_t *etrace_client_new(const char *control_ep, const char *input_ep, int timeout_ms);

/* As etrace_client_new, over CURVE (DESIGN §5.7): server_key is the daemon's public key,
 * public_key and secret_key the client's (each Z85, 40 characters). Returns NULL when out
 * of memory or a key is not Z85. */
etrace_client_t *etrace_client_new_curve(const char *control_ep, const char *input_ep,
                                         int timeout_ms, const char *server_key,
                                         const char *public_key, const char *secret_key);

/* Closes the sockets and frees *c; accepts NULL; sets *c to NULL. */
void etrace_client_free(etrace_client_t **c);

/* The last error's text (an Error reply's message, a timeout, a local failure). Valid
 * until the next call on c. */
const char *etrace_client_error(const etrace_client_t *c);

/* Sends req (its id is set here) and waits for the matching Reply. On ETRACE_OK and
 * ETRACE_EREPLY (when the Reply carries an Error) *reply is set and the caller frees it
 * with etrace_reply_free; otherwise *reply is NULL. Replies to older, timed-out requests
 * are skipped. */
int etrace_request(etrace_client_t *c, Etrace__Request *req, Etrace__Reply **reply);

/* Frees a Reply from this library; accepts NULL. */
void etrace_reply_free(Etrace__Reply *reply);

/* The commands of DESIGN §7, each one Request; the Reply as etrace_request. */
int etrace_status(etrace_client_t *c, Etrace__Reply **reply);        /* result: status */
int etrace_stats(etrace_client_t *c, Etrace__Reply **reply);         /* result: stats */
int etrace_pause(etrace_client_t *c, Etrace__Reply **reply);         /* result: status */
int etrace_resume(etrace_client_t *c, Etrace__Reply **reply);        /* result: status */
int etrace_learn(etrace_client_t *c, int on, Etrace__Reply **reply); /* status */
int etrace_lr(etrace_client_t *c, double lr, Etrace__Reply **reply); /* status */
int etrace_reset(etrace_client_t *c, Etrace__Reset__What what, Etrace__Reply **reply);
/* One lockstep tick with input `in` (NULL: none); result: step (the Outputs). */
int etrace_step(etrace_client_t *c, const Etrace__Input *in, int reset_before,
                Etrace__Reply **reply);
int etrace_export(etrace_client_t *c, Etrace__Reply **reply);   /* result: export */
int etrace_shutdown(etrace_client_t *c, Etrace__Reply **reply); /* result: status */

/* Hot swap (DESIGN §5.4): reads the model file at model_path and every .npy file it names
 * (relative to its directory) and sends them; result: op. keep_state implies keep_weights.
 * A local file that cannot be read gives ETRACE_EREPLY with the path in the error. */
int etrace_load(etrace_client_t *c, const char *model_path, int keep_weights, int keep_state,
                Etrace__Reply **reply);
/* Daemon-side names are bare file names in its state directory. */
int etrace_checkpoint(etrace_client_t *c, const char *name, Etrace__Reply **reply);   /* op */
int etrace_restore(etrace_client_t *c, const char *name, Etrace__Reply **reply);      /* op */
int etrace_record_start(etrace_client_t *c, const char *name, Etrace__Reply **reply); /* op */
int etrace_record_stop(etrace_client_t *c, Etrace__Reply **reply);                    /* op */

/* A new CURVE key pair as Z85 text (public[41], secret[41]). Returns 0, or -1 when libzmq
 * has no CURVE. */
int etrace_curve_keypair(char *public_key, char *secret_key);

/* Writes an export's tensors as DIR/params/<name>.npy (float32, float64 or int64, C
 * order), creating DIR and DIR/params. Returns 0, or -1 with a message in err. */
int etrace_export_write(const Etrace__ExportResult *exp, const char *dir, char *err,
                        size_t err_len);

/* ---- lockstep replay (DESIGN §5.4) -------------------------------------------------- */

/* Applies one recorded event on a `clock: lockstep` daemon without running a tick;
 * result: status (op for a snapshot, restore or swap). */
int etrace_replay_event(etrace_client_t *c, const Etrace__RecordEvent *ev, Etrace__Reply **reply);

struct etrace_replay_summary {
    uint64_t events;     /* records read */
    uint64_t first_tick; /* the snapshot's tick */
    uint64_t last_tick;  /* the daemon's tick at the end */
    uint64_t ticks;      /* ticks run (rows of the outputs) */
    int has_end;         /* the recording had its end record */
};

/* Replays the recording `file` (read here) through a `clock: lockstep` daemon: the
 * snapshot is restored, then before each event empty Steps run the ticks up to the
 * event's tick, and the event is applied (etrace_replay_event). Writes, under dir,
 * outputs/<readout>.npy (float32 [T, size]), loss.npy (float64 [T]) and params/ (the final
 * weights, exported), as `etraced run --replay` does: on a float engine, byte for byte
 * the same files. A truncated recording replays up to its last whole event. sum may be
 * NULL. Returns as etrace_request (the reason in etrace_client_error). */
int etrace_replay(etrace_client_t *c, const char *file, const char *dir,
                  struct etrace_replay_summary *sum);

/* ---- the input socket: fire and forget (rejections show in Stats) ----------------- */

/* Sends one Input. Returns ETRACE_OK, ETRACE_ETIMEOUT (the send did not complete in time:
 * no daemon, or its queue is full) or ETRACE_ESYS. */
int etrace_send_input(etrace_client_t *c, const Etrace__Input *in);

/* Sends raw bytes on the input socket (tests of hostile input). */
int etrace_send_raw(etrace_client_t *c, const void *data, size_t len);

/* Sends raw bytes as a request on the control socket and waits up to the timeout for
 * any Reply (tests of hostile input): as etrace_request. */
int etrace_request_raw(etrace_client_t *c, const void *data, size_t len, Etrace__Reply **reply);

/* Checks in's frames and targets against the running model's inputs and readouts (names,
 * analog or spikes, sizes, class ranges) as a status request reports them, asked for on
 * the first check and cached (asked again once when an item does not fit, in case the
 * model was swapped). Returns ETRACE_OK (also when the daemon does not answer: then the
 * daemon's own checks remain), or ETRACE_EREPLY with the expected size in
 * etrace_client_error. etrace_send_frame, _spikes, _target and _class call it first;
 * etrace_send_input does not (it sends what it is given). */
int etrace_check_input(etrace_client_t *c, const Etrace__Input *in);

/* One analog frame: values[n] for input `name`, with a sequence number. */
int etrace_send_frame(etrace_client_t *c, const char *name, const float *values, size_t n,
                      uint64_t seq);

/* One spikes frame: the indices idx[n] spike at the next tick. */
int etrace_send_spikes(etrace_client_t *c, const char *name, const int32_t *idx, size_t n,
                       uint64_t seq);

/* A target for readout `readout`: values[n] (mse). */
int etrace_send_target(etrace_client_t *c, const char *readout, const float *values, size_t n);

/* A class-index target (cross_entropy). */
int etrace_send_class(etrace_client_t *c, const char *readout, int class_index);

/* A reward, added to the next tick's sum. */
int etrace_send_reward(etrace_client_t *c, float reward);

/* A reward with the terminal flag: the tick that consumes it is its episode's last
 * (DESIGN §4.3, §5.3). */
int etrace_send_reward_terminal(etrace_client_t *c, float reward);

/* ---- subscribers -------------------------------------------------------------------- */

/* Subscribes to `endpoint` (NULL: the default output endpoint when topic is not "stats",
 * else the stats endpoint) for messages whose first part starts with `topic` ("" for
 * every readout, a readout name, or "stats"). Returns NULL when out of memory. */
etrace_sub_t *etrace_sub_new(const char *endpoint, const char *topic);

/* As etrace_sub_new, over CURVE (DESIGN §5.7), with the keys of etrace_client_new_curve.
 * Returns NULL when out of memory or a key is not Z85. */
etrace_sub_t *etrace_sub_new_curve(const char *endpoint, const char *topic, const char *server_key,
                                   const char *public_key, const char *secret_key);

/* Closes and frees *s; accepts NULL; sets *s to NULL. */
void etrace_sub_free(etrace_sub_t **s);

/* Waits up to timeout_ms (-1: forever) for the next Output. Returns ETRACE_OK and *out
 * (free with etrace__output__free_unpacked(*out, NULL)), ETRACE_ETIMEOUT, or
 * ETRACE_EREPLY when a message was not an Output. */
int etrace_sub_recv_output(etrace_sub_t *s, int timeout_ms, Etrace__Output **out);

/* The newest Output received, not the oldest queued (a conflated view): drains every
 * Output queued on s and returns the last; when none is queued, waits up to timeout_ms
 * for the next. Returns as etrace_sub_recv_output. */
int etrace_sub_recv_latest_output(etrace_sub_t *s, int timeout_ms, Etrace__Output **out);

/* The same for Stats (free with etrace__stats__free_unpacked). */
int etrace_sub_recv_stats(etrace_sub_t *s, int timeout_ms, Etrace__Stats **out);

#ifdef __cplusplus
}
#endif

#endif
