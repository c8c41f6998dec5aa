/* Engine snapshots (see snapshot.h). */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

enum { SNAP_VERSION = 1 };

static int
is_large(int part)
{
    return part == ENGINE_PART_PARAM || part == ENGINE_PART_W0 || part == ENGINE_PART_OPTIM ||
           part == ENGINE_PART_STRUCTURE;
}

static void
plan_free_secs(struct snap_sec *sec, int n)
{
    for (int i = 0; i < n; i++)
        free(sec[i].name);
    free(sec);
}

void
snap_plan_fini(struct snap_plan *p)
{
    if (p->sec)
        plan_free_secs(p->sec, p->n);
    free(p->model_text);
    free(p->model_name);
    memset(p, 0, sizeof(*p));
}

int
snap_plan_init(struct snap_plan *p, struct engine *eng)
{
    const struct model_desc *d = engine_model(eng);
    memset(p, 0, sizeof(*p));
    p->n = engine_state_count(eng);
    p->sec = calloc((size_t)p->n + 1, sizeof(*p->sec));
    p->model_text = malloc(d->text_len + 1);
    p->model_name = strdup(d->name ? d->name : "");
    if (!p->sec || !p->model_text || !p->model_name)
        goto fail;
    memcpy(p->model_text, d->text, d->text_len);
    p->model_text[d->text_len] = '\0';
    p->model_len = d->text_len;
    p->model_hash = d->hash;
    p->has_learning = d->learning.present;
    for (int i = 0; i < p->n; i++) {
        struct engine_section s;
        engine_state_section(eng, i, &s);
        if (!(p->sec[i].name = strdup(s.name)))
            goto fail;
        p->sec[i].part = (int)s.part;
        p->sec[i].bytes = s.bytes;
        p->sec[i].elem_bytes = s.elem_bytes;
        p->sec[i].off = p->total;
        p->total += (s.bytes + 7) & ~(size_t)7;
    }
    return 0;
fail:
    snap_plan_fini(p);
    return -1;
}

static int
plan_copy(struct snap_plan *dst, const struct snap_plan *src)
{
    memset(dst, 0, sizeof(*dst));
    *dst = *src;
    dst->sec = calloc((size_t)src->n + 1, sizeof(*dst->sec));
    dst->model_text = malloc(src->model_len + 1);
    dst->model_name = strdup(src->model_name);
    if (!dst->sec || !dst->model_text || !dst->model_name) {
        free(dst->sec);
        dst->sec = NULL;
        goto fail;
    }
    memcpy(dst->model_text, src->model_text, src->model_len + 1);
    for (int i = 0; i < src->n; i++) {
        dst->sec[i] = src->sec[i];
        dst->sec[i].name = NULL;
    }
    for (int i = 0; i < src->n; i++)
        if (!(dst->sec[i].name = strdup(src->sec[i].name)))
            goto fail;
    return 0;
fail:
    snap_plan_fini(dst);
    return -1;
}

struct snap *
snap_new(const struct snap_plan *p)
{
    struct snap *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (plan_copy(&s->plan, p)) {
        free(s);
        return NULL;
    }
    s->data = malloc(p->total ? p->total : 8);
    if (!s->data) {
        snap_free(&s);
        return NULL;
    }
    return s;
}

void
snap_free(struct snap **sp)
{
    struct snap *s = sp ? *sp : NULL;
    if (!s)
        return;
    snap_plan_fini(&s->plan);
    free(s->data);
    free(s);
    *sp = NULL;
}

/* ---- copying (tick thread) ------------------------------------------------------------ */

void
snap_copy_small(struct snap *s, struct engine *eng)
{
    for (int i = 0; i < s->plan.n; i++) {
        if (is_large(s->plan.sec[i].part))
            continue;
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        memcpy(s->data + s->plan.sec[i].off, sec.data, s->plan.sec[i].bytes);
    }
    engine_state_get_scalars(eng, &s->sc);
    s->cursor = 0;
    s->cursor_off = 0;
}

int
snap_copy_slice(struct snap *s, struct engine *eng, size_t budget)
{
    size_t left = budget ? budget : SIZE_MAX;
    while (s->cursor < s->plan.n && left) {
        const struct snap_sec *ps = &s->plan.sec[s->cursor];
        if (!is_large(ps->part) || s->cursor_off >= ps->bytes) {
            s->cursor++;
            s->cursor_off = 0;
            continue;
        }
        struct engine_section sec;
        engine_state_section(eng, s->cursor, &sec);
        size_t n = ps->bytes - s->cursor_off;
        if (n > left)
            n = left;
        memcpy(s->data + ps->off + s->cursor_off, (const uint8_t *)sec.data + s->cursor_off, n);
        s->cursor_off += n;
        left -= n;
    }
    while (s->cursor < s->plan.n && (!is_large(s->plan.sec[s->cursor].part) ||
                                     s->cursor_off >= s->plan.sec[s->cursor].bytes)) {
        s->cursor++;
        s->cursor_off = 0;
    }
    return s->cursor >= s->plan.n;
}

/* ---- encoding ------------------------------------------------------------------------- */

static uint64_t
checksum_of(Etrace__Checkpoint *ck, int *ok)
{
    uint64_t saved = ck->checksum;
    ck->checksum = 0;
    size_t len = etrace__checkpoint__get_packed_size(ck);
    uint8_t *buf = malloc(len ? len : 1);
    uint64_t h = 0;
    *ok = buf != NULL;
    if (buf) {
        etrace__checkpoint__pack(ck, buf);
        h = rng_fnv1a(buf, len);
        free(buf);
    }
    ck->checksum = saved;
    return h;
}

int
snap_msg_init(struct snap_msg *m, const struct snap *s)
{
    memset(m, 0, sizeof(*m));
    etrace__checkpoint__init(&m->ck);
    etrace__scalars__init(&m->sc);
    m->secs = calloc((size_t)s->plan.n + 1, sizeof(*m->secs));
    m->secs_p = calloc((size_t)s->plan.n + 1, sizeof(*m->secs_p));
    if (!m->secs || !m->secs_p) {
        snap_msg_fini(m);
        return -1;
    }
    m->sc.tick = s->sc.tick;
    m->sc.es_n = s->sc.es_n;
    m->sc.steps = s->sc.steps;
    m->sc.updates_refused = s->sc.updates_refused;
    m->sc.state_resets = s->sc.state_resets;
    m->sc.learn = s->sc.learn;
    m->sc.lr = s->sc.lr;
    m->sc.reward_pending = s->sc.reward_pending;
    m->sc.reward_baseline = s->sc.reward_baseline;
    m->sc.held_action = s->sc.held_action;
    memcpy(m->rng, s->sc.rng, sizeof(m->rng));
    m->sc.rng = m->rng;
    m->sc.n_rng = 4;
    for (int i = 0; i < s->plan.n; i++) {
        Etrace__Section *x = &m->secs[i];
        etrace__section__init(x);
        x->name = s->plan.sec[i].name;
        x->part = (uint32_t)s->plan.sec[i].part;
        x->elem_bytes = (uint32_t)s->plan.sec[i].elem_bytes;
        x->data.data = s->data + s->plan.sec[i].off;
        x->data.len = s->plan.sec[i].bytes;
        m->secs_p[i] = x;
    }
    m->ck.version = SNAP_VERSION;
    m->ck.real_type = (char *)(uintptr_t)REAL_NAME;
    m->ck.model_name = s->plan.model_name;
    m->ck.model_text.data = (uint8_t *)s->plan.model_text;
    m->ck.model_text.len = s->plan.model_len;
    m->ck.model_hash = s->plan.model_hash;
    m->ck.scalars = &m->sc;
    m->ck.n_sections = (size_t)s->plan.n;
    m->ck.sections = m->secs_p;
    m->ck.wall_time_ns = s->wall_ns;
    m->ck.period_index = s->period_index;
    m->ck.learn_present = s->plan.has_learning != 0;
    int ok;
    m->ck.checksum = checksum_of(&m->ck, &ok);
    if (!ok) {
        snap_msg_fini(m);
        return -1;
    }
    return 0;
}

void
snap_msg_fini(struct snap_msg *m)
{
    free(m->secs);
    free(m->secs_p);
    m->secs = NULL;
    m->secs_p = NULL;
}

int
snap_pack(const struct snap *s, uint8_t **out, size_t *len)
{
    struct snap_msg m;
    *out = NULL;
    if (snap_msg_init(&m, s))
        return -1;
    *len = etrace__checkpoint__get_packed_size(&m.ck);
    *out = malloc(*len ? *len : 1);
    if (*out)
        etrace__checkpoint__pack(&m.ck, *out);
    snap_msg_fini(&m);
    return *out ? 0 : -1;
}

int
snap_verify(Etrace__Checkpoint *ck, char *err, size_t err_len)
{
    int ok;
    if (!ck->checksum) {
        snprintf(err, err_len, "no checksum (truncated?)");
        return -1;
    }
    if (ck->version != SNAP_VERSION) {
        snprintf(err, err_len, "version %u, this etraced reads %d", ck->version, SNAP_VERSION);
        return -1;
    }
    uint64_t h = checksum_of(ck, &ok);
    if (!ok) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (h != ck->checksum) {
        snprintf(err, err_len, "checksum mismatch (stored %016llx, computed %016llx): corrupt",
                 (unsigned long long)ck->checksum, (unsigned long long)h);
        return -1;
    }
    if (!ck->real_type || strcmp(ck->real_type, REAL_NAME)) {
        snprintf(err, err_len, "written by a %s engine, this one is %s",
                 ck->real_type ? ck->real_type : "?", REAL_NAME);
        return -1;
    }
    if (!ck->scalars || ck->scalars->n_rng != 4) {
        snprintf(err, err_len, "no scalars");
        return -1;
    }
    if (rng_fnv1a(ck->model_text.data, ck->model_text.len) != ck->model_hash) {
        snprintf(err, err_len, "the model text does not match its hash");
        return -1;
    }
    return 0;
}

Etrace__Checkpoint *
snap_unpack(const uint8_t *buf, size_t len, char *err, size_t err_len)
{
    Etrace__Checkpoint *ck = etrace__checkpoint__unpack(NULL, len, buf);
    if (!ck) {
        snprintf(err, err_len, "truncated or not a checkpoint (%zu bytes undecodable)", len);
        return NULL;
    }
    if (snap_verify(ck, err, err_len)) {
        etrace__checkpoint__free_unpacked(ck, NULL);
        return NULL;
    }
    return ck;
}

/* ---- restoring ------------------------------------------------------------------------ */

static const Etrace__Section *
find_sec(const Etrace__Checkpoint *ck, const char *name)
{
    for (size_t i = 0; i < ck->n_sections; i++)
        if (ck->sections[i]->name && !strcmp(ck->sections[i]->name, name))
            return ck->sections[i];
    return NULL;
}

/* What ck_params reads: the checkpoint, and the model it compiles (the projections' sizes,
 * which the engine takes the arrays to have). */
struct ck_source {
    const Etrace__Checkpoint *ck;
    const struct model_desc *d;
};

static int
ck_params(void *ctx, const char *proj, struct engine_tensors *t, struct err *e)
{
    const struct ck_source *src = ctx;
    const Etrace__Checkpoint *ck = src->ck;
    const struct model_proj *mp = NULL;
    for (int i = 0; i < src->d->n_projs; i++)
        if (!strcmp(src->d->projs[i].name, proj))
            mp = &src->d->projs[i];
    if (!mp)
        return err_setf(e, ERR_STATE, "checkpoint: no projection %s", proj), -1;
    char name[256];
    snprintf(name, sizeof name, "proj.%s.weight", proj);
    const Etrace__Section *w = find_sec(ck, name);
    if (!w || w->data.len % sizeof(real))
        return err_setf(e, ERR_STATE, "checkpoint: no weights for projection %s", proj), -1;
    t->values = (const real *)(const void *)w->data.data;
    t->count = (int64_t)(w->data.len / sizeof(real));
    snprintf(name, sizeof name, "proj.%s.bias", proj);
    const Etrace__Section *b = find_sec(ck, name);
    t->bias = b ? (const real *)(const void *)b->data.data : NULL;
    snprintf(name, sizeof name, "proj.%s.indptr", proj);
    const Etrace__Section *ip = find_sec(ck, name);
    t->indptr = ip ? (const int64_t *)(const void *)ip->data.data : NULL;
    snprintf(name, sizeof name, "proj.%s.indices", proj);
    const Etrace__Section *ix = find_sec(ck, name);
    t->indices = ix ? (const int32_t *)(const void *)ix->data.data : NULL;
    /* Shorter than the engine reads (the sections' exact sizes are checked after). */
    if ((ip && (ip->data.len % 8 || ip->data.len < (size_t)(mp->in_size + 1) * 8)) ||
        (ix && ix->data.len != (size_t)t->count * 4))
        return err_setf(e, ERR_STATE, "checkpoint: projection %s: bad sparse structure", proj), -1;
    if (b && b->data.len < (size_t)mp->out_size * sizeof(real))
        return err_setf(e, ERR_STATE, "checkpoint: projection %s: a bias of %zu bytes", proj,
                        b->data.len),
               -1;
    return 0;
}

/* The checkpoint holds pending pairs for a projection that eng keeps none for: one whose
 * weight is smaller than its pairs, deferred by engines before that rule. */
static int
ck_defers_small(const Etrace__Checkpoint *ck, struct engine *eng)
{
    static const char suffix[] = ".pairs_n";
    size_t ls = sizeof suffix - 1;
    for (size_t i = 0; i < ck->n_sections; i++) {
        const char *nm = ck->sections[i]->name;
        size_t l = nm ? strlen(nm) : 0;
        if (l > ls && !strcmp(nm + l - ls, suffix) && engine_state_find(eng, nm) < 0)
            return 1;
    }
    return 0;
}

/* Compiles the checkpoint's model (text: terminated) with its parameters into *eng. */
static int
ck_compile(const Etrace__Checkpoint *ck, const char *text, const char *name, int defer_small,
           struct engine **eng, char *err, size_t err_len)
{
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    char path[512];
    snprintf(path, sizeof path, "%s:model", name);
    if (model_parse(text, ck->model_text.len, path, mem_default(), &d, &e)) {
        snprintf(err, err_len, "%s", e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    struct ck_source source = {ck, d};
    struct engine_opts o = {
        .param_source = ck_params, .param_source_ctx = &source, .defer_small = defer_small};
    if (engine_compile(d, &o, eng, &e)) {
        model_free(&d, mem_default());
        snprintf(err, err_len, "%s: %s", name, e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    return 0;
}

int
snap_restore(const Etrace__Checkpoint *ck, const char *name, struct engine **out, char *err,
             size_t err_len)
{
    struct engine *eng = NULL;
    struct err e;
    err_clear(&e);
    *out = NULL;
    /* protobuf-c gives bytes fields no terminator: parse from a terminated copy. */
    char *text = malloc(ck->model_text.len + 1);
    if (!text) {
        snprintf(err, err_len, "%s: out of memory", name);
        return -1;
    }
    if (ck->model_text.len) /* empty bytes fields have NULL data */
        memcpy(text, ck->model_text.data, ck->model_text.len);
    text[ck->model_text.len] = '\0';
    int rc = ck_compile(ck, text, name, 0, &eng, err, err_len);
    if (!rc && ck_defers_small(ck, eng)) {
        /* written by an engine that deferred weights smaller than their pairs: restore
         * those pairs as they were (this engine defers them too, until a swap) */
        engine_free(&eng);
        rc = ck_compile(ck, text, name, 1, &eng, err, err_len);
    }
    free(text);
    if (rc)
        return -1;
    for (int i = 0; i < engine_state_count(eng); i++) {
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        if (sec.part == ENGINE_PART_STRUCTURE)
            continue;
        const Etrace__Section *src = find_sec(ck, sec.name);
        if (!src && engine_state_optional(eng, i))
            continue; /* a checkpoint from before the section existed */
        if (!src || src->data.len != sec.bytes) {
            snprintf(err, err_len, "%s: section %s %s", name, sec.name,
                     src ? "has another size than the model's" : "is missing");
            engine_free(&eng);
            return -1;
        }
        if (sec.bytes)
            memcpy(sec.data, src->data.data, sec.bytes);
    }
    const Etrace__Scalars *s = ck->scalars;
    struct engine_scalars sc = {.tick = s->tick,
                                .es_n = s->es_n,
                                .steps = s->steps,
                                .updates_refused = s->updates_refused,
                                .state_resets = s->state_resets,
                                .learn = s->learn,
                                .lr = s->lr,
                                .reward_pending = s->reward_pending,
                                .reward_baseline = s->reward_baseline,
                                .held_action = s->held_action};
    memcpy(sc.rng, s->rng, sizeof(sc.rng));
    if (engine_state_check(eng, &e)) {
        snprintf(err, err_len, "%s: %s", name, e.msg);
        engine_free(&eng);
        return -1;
    }
    engine_state_set_scalars(eng, &sc);
    *out = eng;
    return 0;
}

/* ---- compiling a Load ------------------------------------------------------------------ */

/* Strips "./" prefixes so that "w.npy" and "./w.npy" name the same file. */
static const char *
plain_path(const char *p)
{
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    return p;
}

static int
load_fs_read(void *ctx, const char *rel_path, const struct mem *m, void **data, size_t *len,
             struct err *e)
{
    const Etrace__Load *l = ctx;
    const char *want = plain_path(rel_path);
    for (size_t i = 0; i < l->n_files; i++) {
        if (!l->files[i]->path || strcmp(plain_path(l->files[i]->path), want))
            continue;
        size_t n = l->files[i]->data.len;
        *data = mem_alloc(m, n ? n : 1);
        if (!*data)
            return err_setf(e, ERR_NOMEM, "%s: out of memory", rel_path), -1;
        if (n)
            memcpy(*data, l->files[i]->data.data, n);
        *len = n;
        return 0;
    }
    return err_setf(e, ERR_IO,
                    "%s: not sent with the load request (etracectl load sends "
                    "every file the model names)",
                    rel_path),
           -1;
}

int
snap_compile_load(const Etrace__Load *l, struct engine **out, char *err, size_t err_len)
{
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    *out = NULL;
    const char *path = l->model_path && *l->model_path ? l->model_path : "load";
    char *text = malloc(l->model.len + 1);
    if (!text) {
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    if (l->model.len)
        memcpy(text, l->model.data, l->model.len);
    text[l->model.len] = '\0';
    int rc = model_parse(text, l->model.len, path, mem_default(), &d, &e);
    free(text);
    if (rc) {
        snprintf(err, err_len, "%s", e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    struct model_fs fs = {load_fs_read, (void *)(uintptr_t)l};
    struct engine_opts o = {.fs = &fs};
    if (engine_compile(d, &o, out, &e)) {
        model_free(&d, mem_default());
        snprintf(err, err_len, "%s", e.msg[0] ? e.msg : err_name(e.code));
        return -1;
    }
    return 0;
}
