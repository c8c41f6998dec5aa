/* Requests waiting for an answer (see pending.h). */
#include "pending.h"

#include <stdlib.h>
#include <string.h>

struct pending *
pending_new(struct pending_table *t)
{
    for (int i = 0; i < PENDING_MAX; i++) {
        struct pending *p = &t->slot[i];
        if (p->in_use)
            continue;
        memset(p, 0, sizeof(*p));
        p->in_use = 1;
        /* The slot index in the low bits, a generation above: never reused while live. */
        p->serial = (++t->next_serial << 8) | (uint64_t)i;
        return p;
    }
    return NULL;
}

struct pending *
pending_find(struct pending_table *t, uint64_t serial)
{
    struct pending *p = &t->slot[serial & 0xff];
    if ((serial & 0xff) < PENDING_MAX && p->in_use && p->serial == serial)
        return p;
    return NULL;
}

void
pending_park(struct pending *p, uint64_t req_id, int command, zmq_msg_t *env, int n_env)
{
    p->req_id = req_id;
    p->command = command;
    for (int i = 0; i < n_env; i++) {
        zmq_msg_init(&p->env[i]);
        zmq_msg_move(&p->env[i], &env[i]);
    }
    p->n_env = n_env;
}

void
pending_move(struct pending *dst, struct pending *src)
{
    *dst = (struct pending){.in_use = src->in_use,
                            .serial = src->serial,
                            .req_id = src->req_id,
                            .command = src->command,
                            .n_env = src->n_env,
                            .buf = src->buf};
    for (int k = 0; k < src->n_env; k++) {
        zmq_msg_init(&dst->env[k]);
        zmq_msg_move(&dst->env[k], &src->env[k]);
        zmq_msg_close(&src->env[k]);
    }
    src->n_env = 0;
    src->buf = NULL;
}

void
pending_free(struct pending *p)
{
    for (int i = 0; i < p->n_env; i++)
        zmq_msg_close(&p->env[i]);
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

void
pending_free_all(struct pending_table *t)
{
    for (int i = 0; i < PENDING_MAX; i++)
        if (t->slot[i].in_use)
            pending_free(&t->slot[i]);
}
