/* Shared by the daemon's fuzz targets (see fuzz_daemon.h). */
#include "fuzz_daemon.h"

#include "etrace_recording.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "rng.h"
#include "snapshot.h"

const char *const fuzz_model_text[FUZZ_N_MODELS] = {
    "name: fz-reg\n"
    "dt: 1.0e-3\n"
    "seed: 3\n"
    "inputs:\n"
    "  - {name: sensors, size: 4}\n"
    "  - {name: ev, size: 6, kind: spikes}\n"
    "cells:\n"
    "  - {name: hidden, model: lif, size: 8, params: {tau: 10.0e-3}}\n"
    "  - {name: out, model: leaky_readout, size: 2}\n"
    "projections:\n"
    "  - {name: w_in, from: [sensors, ev, hidden], to: hidden.delta,\n"
    "     weight: {init: kaiming_normal}, bias: {init: constant, value: 0.05}}\n"
    "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal, scale: 0.5}}\n"
    "readouts:\n"
    "  - {name: action, cell: out}\n"
    "learning:\n"
    "  algorithm: es_d_rtrl\n"
    "  decay_or_rank: 0.9\n"
    "  optimizer: {kind: sgd, lr: 1.0e-3}\n",

    "name: fz-class\n"
    "dt: 1.0e-3\n"
    "seed: 5\n"
    "inputs:\n"
    "  - {name: x, size: 3}\n"
    "cells:\n"
    "  - {name: hidden, model: rnn_tanh, size: 6}\n"
    "  - {name: out, model: linear, size: 3}\n"
    "projections:\n"
    "  - {name: w_in, from: x, to: hidden, weight: {init: kaiming_normal}}\n"
    "  - {name: w_out, from: hidden, to: out, weight: {init: xavier_uniform},\n"
    "     bias: {init: zeros}}\n"
    "readouts:\n"
    "  - {name: cls, cell: out}\n"
    "learning:\n"
    "  algorithm: d_rtrl\n"
    "  loss: cross_entropy\n"
    "  optimizer: {kind: adam, lr: 1.0e-3}\n",

    "name: fz-agent\n"
    "dt: 1.0e-3\n"
    "seed: 31\n"
    "inputs:\n"
    "  - {name: context, size: 4}\n"
    "cells:\n"
    "  - {name: hidden, model: rnn_tanh, size: 6}\n"
    "  - {name: out, model: linear, size: 4}\n"
    "projections:\n"
    "  - {name: w_in, from: context, to: hidden, weight: {init: kaiming_normal}}\n"
    "  - {name: w_out, from: hidden, to: out, weight: {init: normal, std: 0.01},\n"
    "     bias: {init: zeros}}\n"
    "readouts:\n"
    "  - {name: arm, cell: out}\n"
    "learning:\n"
    "  algorithm: es_d_rtrl\n"
    "  decay_or_rank: 0.5\n"
    "  signal: reward\n"
    "  policy: {readout: arm, kind: softmax}\n"
    "  tau_e: 2.0e-3\n"
    "  tau_baseline: 5.0e-2\n"
    "  optimizer: {kind: adam, lr: 2.0e-3}\n",
};

struct engine *
fuzz_compile(int k)
{
    Etrace__Load l = ETRACE__LOAD__INIT;
    struct engine *eng = NULL;
    char err[1024];
    l.model.data = (uint8_t *)(uintptr_t)fuzz_model_text[k];
    l.model.len = strlen(fuzz_model_text[k]);
    if (snap_compile_load(&l, &eng, err, sizeof err)) {
        fprintf(stderr, "fuzz: model %d: %s\n", k, err);
        return NULL;
    }
    return eng;
}

const struct layout *
fuzz_layout(int k)
{
    static struct layout lay[FUZZ_N_MODELS];
    static int ready[FUZZ_N_MODELS];
    if (!ready[k]) {
        struct engine *eng = fuzz_compile(k);
        if (!eng || layout_init(&lay[k], eng))
            abort();
        engine_free(&eng);
        ready[k] = 1;
    }
    return &lay[k];
}

/* ---- the checksum fix-ups --------------------------------------------------------------- */

int
fuzz_fix_checkpoint(Etrace__Checkpoint *ck)
{
    ck->model_hash = rng_fnv1a(ck->model_text.data, ck->model_text.len);
    ck->checksum = 0;
    size_t len = etrace__checkpoint__get_packed_size(ck);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    etrace__checkpoint__pack(ck, buf);
    ck->checksum = rng_fnv1a(buf, len);
    free(buf);
    return 0;
}

/* The recording as the daemon writes it (format 2, proto/etrace_recording.h): the magic,
 * then each event of buf[len] (read in the varint framing the seeds and mutations use) as
 * one checksummed record, its checkpoint (snapshot, restore) fixed up first. Bytes that do
 * not decode as an event end the image with them copied raw, so damaged and truncated
 * records reach the reader too. */
uint8_t *
fuzz_fix_recording(const uint8_t *buf, size_t len, size_t *out_len)
{
    size_t cap = ETRACE_RECORDING_MAGIC_BYTES + len + 64, pos = 0, o = 0;
    uint8_t *out = malloc(cap);
    if (!out)
        return NULL;
    memcpy(out, ETRACE_RECORDING_MAGIC, ETRACE_RECORDING_MAGIC_BYTES);
    o = ETRACE_RECORDING_MAGIC_BYTES;
    while (pos < len) {
        size_t start = pos;
        uint64_t n = 0;
        int shift = 0;
        while (pos < len && shift < 64) {
            uint8_t b = buf[pos++];
            n |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        Etrace__RecordEvent *ev =
            n <= len - pos ? etrace__record_event__unpack(NULL, n, buf + pos) : NULL;
        if (!ev) {
            /* Not an event: the rest goes in as it is. */
            size_t rest = len - start;
            if (rest > cap - o) {
                uint8_t *grown = realloc(out, o + rest);
                if (!grown) {
                    free(out);
                    return NULL;
                }
                out = grown;
                cap = o + rest;
            }
            memcpy(out + o, buf + start, rest);
            o += rest;
            break;
        }
        pos += n;
        Etrace__Checkpoint *ck = ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT ? ev->snapshot
                                 : ev->kind_case == ETRACE__RECORD_EVENT__KIND_RESTORE ? ev->restore
                                                                                       : NULL;
        if (ck && fuzz_fix_checkpoint(ck)) {
            etrace__record_event__free_unpacked(ev, NULL);
            free(out);
            return NULL;
        }
        size_t need = etrace_recording_record_bytes(ev);
        if (need > cap - o) {
            size_t ncap = o + need + (len - pos) + 64;
            uint8_t *grown = realloc(out, ncap);
            if (!grown) {
                etrace__record_event__free_unpacked(ev, NULL);
                free(out);
                return NULL;
            }
            out = grown;
            cap = ncap;
        }
        o += etrace_recording_pack(ev, out + o);
        etrace__record_event__free_unpacked(ev, NULL);
    }
    *out_len = o;
    return out;
}

/* ---- seeds ------------------------------------------------------------------------------ */

uint8_t *
fuzz_checkpoint_image(int k, int ticks, size_t *len)
{
    struct engine *eng = fuzz_compile(k);
    const struct layout *l = fuzz_layout(k);
    struct snap_plan plan = {0};
    struct snap *s = NULL;
    uint8_t *out = NULL;
    real x[8];
    if (!eng || snap_plan_init(&plan, eng) || !(s = snap_new(&plan)))
        goto done;
    engine_set_learn(eng, l->has_learning ? ENGINE_LEARN_ON : ENGINE_LEARN_OFF);
    for (int t = 0; t < ticks; t++) {
        for (int c = 0; c < 8; c++)
            x[c] = (real)((t * 7 + c * 3) % 11) / (real)11.0 - (real)0.5;
        engine_set_input(eng, 0, x);
        if (k == 2)
            engine_add_reward(eng, t % 3 ? 0.5 : -0.25);
        engine_tick(eng);
    }
    snap_copy_small(s, eng);
    snap_copy_slice(s, eng, 0);
    if (snap_pack(s, &out, len))
        out = NULL;
done:
    snap_free(&s);
    snap_plan_fini(&plan);
    engine_free(&eng);
    return out;
}
