/* Fuzz target: a control Request as the loop thread takes it (control.c
 * control_on_message), without sockets or a running daemon: decoded, then what each kind
 * hands to the daemon's checks: Step and a replayed Input to wire_input_check (and
 * wire_input_write) against each fuzz model's layout; Load and a replayed swap to the
 * worker's compile (packed and decoded again as ops_load does, snap_compile_load, the
 * new layout and snapshot plan); a replayed snapshot or restore to the worker's restore
 * (snap_unpack, snap_restore); checkpoint and restore names to checkpoint_file_name; a
 * recording's name to checkpoint_name_ok; a replayed stale_zero to layout_find_input.
 * (The scalar checks of lr, learn and reset read the daemon's state and are not here.) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "engine.h"
#include "fuzz_daemon.h"
#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_input(const Etrace__Input *in)
{
    static const Etrace__Input empty = ETRACE__INPUT__INIT;
    for (int k = 0; k < FUZZ_N_MODELS; k++) {
        const struct layout *l = fuzz_layout(k);
        char err[200];
        size_t bytes = 0;
        if (wire_input_check(l, in ? in : &empty, &bytes, err, sizeof err) != WIRE_OK)
            continue;
        void *rec = malloc(bytes);
        if (rec)
            wire_input_write(l, in ? in : &empty, 0, rec);
        free(rec);
    }
}

/* As swap_work: the request packed, decoded again, compiled; the new layout and plan. */
static void
compile_load(const Etrace__Load *l)
{
    char err[1024];
    size_t n = etrace__load__get_packed_size(l);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    etrace__load__pack(l, buf);
    Etrace__Load *again = etrace__load__unpack(NULL, n, buf);
    free(buf);
    if (!again)
        return;
    struct engine *eng = NULL;
    if (again->model.len && snap_compile_load(again, &eng, err, sizeof err) == 0) {
        struct layout lay = {0};
        struct snap_plan plan = {0};
        if (layout_init(&lay, eng) == 0)
            snap_plan_init(&plan, eng);
        snap_plan_fini(&plan);
        layout_fini(&lay);
        engine_free(&eng);
    }
    etrace__load__free_unpacked(again, NULL);
}

/* As swap_work for a replayed checkpoint: packed, then the loader and the restore. */
static void
restore(const Etrace__Checkpoint *ck)
{
    char err[1024];
    size_t n = etrace__checkpoint__get_packed_size(ck);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    etrace__checkpoint__pack(ck, buf);
    Etrace__Checkpoint *again = snap_unpack(buf, n, err, sizeof err);
    free(buf);
    if (!again)
        return;
    struct engine *eng = NULL;
    if (snap_restore(again, "replay", &eng, err, sizeof err) == 0)
        engine_free(&eng);
    etrace__checkpoint__free_unpacked(again, NULL);
}

static void
replay_event(const Etrace__RecordEvent *ev)
{
    switch (ev->kind_case) {
    case ETRACE__RECORD_EVENT__KIND_INPUT:
        check_input(ev->input);
        break;
    case ETRACE__RECORD_EVENT__KIND_STALE_ZERO:
        for (int k = 0; k < FUZZ_N_MODELS; k++)
            (void)layout_find_input(fuzz_layout(k), ev->stale_zero);
        break;
    case ETRACE__RECORD_EVENT__KIND_SWAP:
        compile_load(ev->swap);
        break;
    case ETRACE__RECORD_EVENT__KIND_SNAPSHOT:
        restore(ev->snapshot);
        break;
    case ETRACE__RECORD_EVENT__KIND_RESTORE:
        restore(ev->restore);
        break;
    default:
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    engine_set_fp_env();
    Etrace__Request *req = etrace__request__unpack(NULL, size, data);
    if (!req)
        return 0;
    char err[512], file[256];
    switch (req->command_case) {
    case ETRACE__REQUEST__COMMAND_STEP:
        check_input(req->step->input);
        break;
    case ETRACE__REQUEST__COMMAND_LOAD:
        compile_load(req->load);
        break;
    case ETRACE__REQUEST__COMMAND_CHECKPOINT:
    case ETRACE__REQUEST__COMMAND_RESTORE: {
        const char *name = req->command_case == ETRACE__REQUEST__COMMAND_CHECKPOINT
                               ? req->checkpoint->name
                               : req->restore->name;
        (void)checkpoint_file_name(name, file, sizeof file, err, sizeof err);
        break;
    }
    case ETRACE__REQUEST__COMMAND_RECORD:
        if (req->record->start)
            (void)checkpoint_name_ok(req->record->name, err, sizeof err);
        break;
    case ETRACE__REQUEST__COMMAND_REPLAY:
        replay_event(req->replay);
        break;
    default:
        break;
    }
    etrace__request__free_unpacked(req, NULL);
    return 0;
}
