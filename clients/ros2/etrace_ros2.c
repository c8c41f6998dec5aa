/* etrace-ros2: ROS 2 topics in and out of etraced, over Cyclone DDS with ROS 2's wire
 * conventions (rmw_cyclonedds / rmw_fastrtps): topics rt/<name>, types
 * <pkg>::msg::dds_::<Name>_, XCDR1 little endian, no type information (idlc -t) so that
 * peers match on type names. No ROS library is linked.
 *
 * One thread. DDS listeners only write a byte to a pipe; the main loop polls that pipe and
 * (timer clock) the daemon's output socket, takes the samples, checks them against the
 * mapping (r2map) and forwards them through libetrace-client. In lockstep every message on
 * an input topic runs one Step carrying the signals received since the last, as the
 * daemon's own tick would take them: per target topic the newest, the rewards summed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <dds/dds.h>
#include <dds/ddsi/ddsi_serdata.h>

#include "etrace_client.h"
#include "r2map.h"
#include "r2msg.h"
#include "ros2_msgs.h"

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Per topic: its DDS entities and, for targets and rewards in lockstep, what waits for
 * the next Step: the newest target, the sum of the rewards. */
struct link {
    struct r2map_topic *t;
    dds_entity_t topic, reader, writer;
    float *vec;            /* t->size values (received) */
    float *held;           /* lockstep: the newest target (t->size) */
    double reward;         /* lockstep: the rewards' sum */
    uint64_t pending;      /* lockstep: signals received since the last Step */
    Etrace__Signal signal; /* the Signal of a Step */
    Etrace__Signal__Target target;
};

struct bridge {
    struct r2map map;
    struct link *links;
    dds_entity_t pp;
    etrace_client_t *cli;
    void *zctx, *sub; /* timer clock: SUB on the output endpoint */
    int wake[2];      /* written by the DDS listeners */
    uint64_t seq;
    uint64_t steps, step_failures, outputs_unmapped;
    double *dbl; /* scratch for JointState commands */
};

static long long
now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const dds_topic_descriptor_t *
descriptor(enum r2map_type t)
{
    switch (t) {
    case R2MAP_JOINT_STATE:
        return &sensor_msgs_msg_dds__JointState__desc;
    case R2MAP_F32_ARRAY:
        return &std_msgs_msg_dds__Float32MultiArray__desc;
    case R2MAP_F32:
        return &std_msgs_msg_dds__Float32__desc;
    case R2MAP_F64:
        return &std_msgs_msg_dds__Float64__desc;
    case R2MAP_TWIST:
        return &geometry_msgs_msg_dds__Twist__desc;
    }
    return NULL;
}

/* The RIHS01 type hashes ROS 2 (Iron and later) advertises in USER_DATA as
 * "typehash=...;": constants of the type descriptions, checked against rosbags'
 * hash_rihs01 by tests/bridge/ros2/wire_test.py. */
static const char *
type_hash(enum r2map_type t)
{
    switch (t) {
    case R2MAP_JOINT_STATE:
        return "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e";
    case R2MAP_F32_ARRAY:
        return "RIHS01_0599f6f85b4bfca379873a0b4375a0aca022156bd2d7021275d116ed1fa8bfe0";
    case R2MAP_F32:
        return "RIHS01_7170d3d8f841f7be3172ce5f4f59f3a4d7f63b0447e8b33327601ad64d83d6e2";
    case R2MAP_F64:
        return "RIHS01_705ba9c3d1a09df43737eb67095534de36fd426c0587779bda2bc51fe790182a";
    case R2MAP_TWIST:
        return "RIHS01_9c45bf16fe0983d80e3cfe750d6835843d265a9a6c46bd2e609fcddde6fb8d2a";
    }
    return "";
}

static void
on_data(dds_entity_t rd, void *arg)
{
    struct bridge *b = arg;
    char c = 1;
    (void)rd;
    /* A full pipe already says "wake up". */
    if (write(b->wake[1], &c, 1) < 0 && errno != EAGAIN)
        return;
}

/* ROS 2 QoS: what the bridge publishes is reliable, volatile, keep last 10 (ROS's
 * default); its readers are best effort so that both default (reliable) and sensor-data
 * (best-effort) publishers match them. The mapping's `depth` sets keep last N. */
static dds_qos_t *
make_qos(const struct r2map_topic *t, int writer)
{
    dds_qos_t *q = dds_create_qos();
    char ud[128];
    int n = snprintf(ud, sizeof(ud), "typehash=%s;", type_hash(t->type));
    if (writer) {
        dds_qset_reliability(q, DDS_RELIABILITY_RELIABLE, DDS_SECS(1));
    } else {
        dds_qset_reliability(q, DDS_RELIABILITY_BEST_EFFORT, 0);
    }
    dds_qset_durability(q, DDS_DURABILITY_VOLATILE);
    dds_qset_history(q, DDS_HISTORY_KEEP_LAST, t->depth);
    dds_qset_userdata(q, ud, (size_t)n);
    return q;
}

static int
dds_setup(struct bridge *b, int domain, int local_reader)
{
    dds_listener_t *l;
    b->pp = dds_create_participant((dds_domainid_t)domain, NULL, NULL);
    if (b->pp < 0) {
        fprintf(stderr, "etrace-ros2: DDS participant on domain %d: %s\n", domain,
                dds_strretcode(b->pp));
        return -1;
    }
    l = dds_create_listener(b);
    dds_lset_data_available(l, on_data);
    for (size_t i = 0; i < b->map.n_topics; i++) {
        struct link *k = &b->links[i];
        dds_qos_t *q;
        k->topic = dds_create_topic(b->pp, descriptor(k->t->type), k->t->dds_name, NULL, NULL);
        if (k->topic < 0) {
            fprintf(stderr, "etrace-ros2: topic %s: %s\n", k->t->topic, dds_strretcode(k->topic));
            dds_delete_listener(l);
            return -1;
        }
        q = make_qos(k->t, k->t->role == R2MAP_PUBLISH);
        if (k->t->role == R2MAP_PUBLISH) {
            k->writer = dds_create_writer(b->pp, k->topic, q, NULL);
            /* --cdr: a local reliable reader takes back what the writer wrote. */
            if (local_reader) {
                dds_qset_reliability(q, DDS_RELIABILITY_RELIABLE, DDS_SECS(1));
                k->reader = dds_create_reader(b->pp, k->topic, q, NULL);
            }
        } else {
            k->reader = dds_create_reader(b->pp, k->topic, q, l);
        }
        dds_delete_qos(q);
        if (k->writer < 0 || k->reader < 0) {
            fprintf(stderr, "etrace-ros2: %s %s: %s\n", k->writer < 0 ? "writer" : "reader",
                    k->t->topic, dds_strretcode(k->writer < 0 ? k->writer : k->reader));
            dds_delete_listener(l);
            return -1;
        }
    }
    dds_delete_listener(l);
    return 0;
}

/* ---- to etraced ------------------------------------------------------------------- */

static void
count_send(struct link *k, int rc)
{
    if (rc == ETRACE_OK)
        k->t->forwarded++;
    else
        k->t->rejected[R2MAP_DAEMON]++;
}

static void publish_output(struct bridge *b, const Etrace__Output *o);

/* Holds a lockstep target (the newest wins) or adds a reward, for the next Step. */
static void
hold(struct link *k)
{
    if (k->t->role == R2MAP_TARGET)
        memcpy(k->held, k->vec, k->t->size * sizeof(float));
    else
        k->reward += (double)k->vec[0];
    k->pending++;
}

/* One Step with frame f (lockstep) carrying the signals held since the last. */
static void
step(struct bridge *b, struct link *src, Etrace__Frame *f)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame *frames[1] = {f};
    Etrace__Signal **sigs = calloc(b->map.n_topics, sizeof(*sigs));
    Etrace__Reply *reply = NULL;
    size_t ns = 0;
    int rc;
    if (!sigs) {
        src->t->rejected[R2MAP_DAEMON]++;
        return;
    }
    for (size_t i = 0; i < b->map.n_topics; i++) {
        struct link *k = &b->links[i];
        if (!k->pending)
            continue;
        if (k->t->role == R2MAP_TARGET) {
            k->target.n_values = k->t->size;
            k->target.values = k->held;
            k->signal.readout = k->t->name;
            k->signal.kind_case = ETRACE__SIGNAL__KIND_TARGET;
            k->signal.target = &k->target;
        } else {
            k->signal.kind_case = ETRACE__SIGNAL__KIND_REWARD;
            k->signal.reward = (float)k->reward;
        }
        sigs[ns++] = &k->signal;
    }
    in.n_frames = 1;
    in.frames = frames;
    in.n_signals = ns;
    in.signals = sigs;
    rc = etrace_step(b->cli, &in, 0, &reply);
    free(sigs);
    b->steps++;
    if (rc != ETRACE_OK || !reply || reply->result_case != ETRACE__REPLY__RESULT_STEP) {
        /* The signals stay pending: the next Step carries them. */
        b->step_failures++;
        src->t->rejected[R2MAP_DAEMON]++;
        fprintf(stderr, "etrace-ros2: step: %s\n",
                rc == ETRACE_OK ? "unexpected reply" : etrace_client_error(b->cli));
        etrace_reply_free(reply);
        return;
    }
    src->t->forwarded++;
    for (size_t i = 0; i < b->map.n_topics; i++) {
        struct link *k = &b->links[i];
        /* A superseded target was still carried by this Step's newest one. */
        k->t->forwarded += k->pending;
        k->pending = 0;
        k->reward = 0;
    }
    for (size_t i = 0; i < reply->step->n_outputs; i++)
        publish_output(b, reply->step->outputs[i]);
    etrace_reply_free(reply);
}

/* A checked vector of topic k: a frame, a target or a reward. */
static void
forward(struct bridge *b, struct link *k, long long stamp_ns)
{
    struct r2map_topic *t = k->t;
    if (t->role == R2MAP_INPUT) {
        Etrace__Frame f = ETRACE__FRAME__INIT;
        f.name = t->name;
        f.n_values = t->size;
        f.values = k->vec;
        f.seq = ++b->seq;
        f.sender_time_ns = stamp_ns;
        if (b->map.lockstep) {
            step(b, k, &f);
        } else {
            Etrace__Input in = ETRACE__INPUT__INIT;
            Etrace__Frame *frames[1] = {&f};
            in.n_frames = 1;
            in.frames = frames;
            count_send(k, etrace_send_input(b->cli, &in));
        }
    } else if (t->role == R2MAP_TARGET) {
        k->target.n_values = t->size;
        k->target.values = k->vec;
        k->signal.readout = t->name;
        k->signal.kind_case = ETRACE__SIGNAL__KIND_TARGET;
        k->signal.target = &k->target;
        if (b->map.lockstep) {
            hold(k);
        } else {
            Etrace__Input in = ETRACE__INPUT__INIT;
            Etrace__Signal *sigs[1] = {&k->signal};
            in.n_signals = 1;
            in.signals = sigs;
            count_send(k, etrace_send_input(b->cli, &in));
        }
    } else if (t->role == R2MAP_REWARD) {
        if (b->map.lockstep)
            hold(k);
        else
            count_send(k, etrace_send_reward(b->cli, k->vec[0]));
    }
}

/* Takes every sample waiting on topic k's reader and forwards the good ones. */
static void
drain(struct bridge *b, struct link *k)
{
    for (;;) {
        void *samples[16] = {NULL};
        dds_sample_info_t infos[16];
        int n = dds_take(k->reader, samples, infos, 16, 16);
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            int why = -1;
            long long stamp = 0;
            if (!infos[i].valid_data)
                continue;
            k->t->received++;
            switch (k->t->type) {
            case R2MAP_JOINT_STATE: {
                const sensor_msgs_msg_dds__JointState_ *m = samples[i];
                why = r2msg_from_joint_state(k->t, m, k->vec);
                stamp = (long long)m->header.stamp.sec * 1000000000LL + m->header.stamp.nanosec;
                break;
            }
            case R2MAP_F32_ARRAY:
                why = r2msg_from_f32_array(k->t, samples[i], k->vec);
                break;
            case R2MAP_F32:
                why = r2msg_from_scalar(((const std_msgs_msg_dds__Float32_ *)samples[i])->data,
                                        k->vec);
                break;
            case R2MAP_F64:
                why = r2msg_from_scalar(((const std_msgs_msg_dds__Float64_ *)samples[i])->data,
                                        k->vec);
                break;
            case R2MAP_TWIST:
                break;
            }
            if (why >= 0) {
                k->t->rejected[why]++;
                continue;
            }
            forward(b, k, stamp);
        }
        dds_return_loan(k->reader, samples, n);
    }
}

/* ---- from etraced ----------------------------------------------------------------- */

/* Writes one readout's Output to every topic that publishes it. */
static void
publish_output(struct bridge *b, const Etrace__Output *o)
{
    int mapped = 0;
    for (size_t i = 0; i < b->map.n_topics; i++) {
        struct link *k = &b->links[i];
        struct r2map_topic *t = k->t;
        const float *v;
        size_t n;
        int why = -1;
        if (t->role != R2MAP_PUBLISH || strcmp(t->name, o->readout))
            continue;
        mapped = 1;
        v = t->use_action ? o->action : o->values;
        n = t->use_action ? o->n_action : o->n_values;
        switch (t->type) {
        case R2MAP_F32_ARRAY: {
            std_msgs_msg_dds__Float32MultiArray_ m;
            r2msg_to_f32_array(v, n, &m);
            dds_write(k->writer, &m);
            break;
        }
        case R2MAP_TWIST: {
            geometry_msgs_msg_dds__Twist_ m;
            why = r2msg_to_twist(t, v, n, &m);
            if (why < 0)
                dds_write(k->writer, &m);
            break;
        }
        case R2MAP_JOINT_STATE: {
            sensor_msgs_msg_dds__JointState_ m;
            /* The stamp of the sensor message this command answers (the Output carries
             * it back), so a ROS user can see the latency; now when there is none. */
            long long stamp =
                o->input_sender_time_ns > 0 ? o->input_sender_time_ns : now_ns(CLOCK_REALTIME);
            why = r2msg_to_joint_state(t, v, n, b->dbl, stamp, &m);
            if (why < 0)
                dds_write(k->writer, &m);
            break;
        }
        case R2MAP_F32: {
            std_msgs_msg_dds__Float32_ m = {.data = n ? v[0] : 0.0f};
            why = n == 1 ? -1 : R2MAP_WRONG_LENGTH;
            if (why < 0)
                dds_write(k->writer, &m);
            break;
        }
        case R2MAP_F64: {
            std_msgs_msg_dds__Float64_ m = {.data = n ? (double)v[0] : 0.0};
            why = n == 1 ? -1 : R2MAP_WRONG_LENGTH;
            if (why < 0)
                dds_write(k->writer, &m);
            break;
        }
        }
        if (why >= 0)
            t->rejected[why]++;
        else
            t->published++;
    }
    if (!mapped)
        b->outputs_unmapped++;
}

/* Receives every Output waiting on the SUB socket ([readout][Output]). */
static void
drain_outputs(struct bridge *b)
{
    for (;;) {
        zmq_msg_t name, body;
        Etrace__Output *o;
        int more;
        size_t len = sizeof(more);
        zmq_msg_init(&name);
        if (zmq_msg_recv(&name, b->sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&name);
            return;
        }
        zmq_getsockopt(b->sub, ZMQ_RCVMORE, &more, &len);
        zmq_msg_close(&name);
        if (!more)
            continue;
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, b->sub, 0) < 0) {
            zmq_msg_close(&body);
            return;
        }
        o = etrace__output__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
        zmq_msg_close(&body);
        if (o) {
            publish_output(b, o);
            etrace__output__free_unpacked(o, NULL);
        }
    }
}

/* ---- reports ---------------------------------------------------------------------- */

static void
report(const struct bridge *b, FILE *f, int json)
{
    for (size_t i = 0; i < b->map.n_topics; i++) {
        const struct r2map_topic *t = &b->map.topics[i];
        if (json) {
            fprintf(f,
                    "{\"topic\": \"%s\", \"type\": \"%s\", \"received\": %" PRIu64
                    ", \"forwarded\": %" PRIu64 ", \"published\": %" PRIu64 ", \"rejected\": {",
                    t->topic, r2map_type_name(t->type), t->received, t->forwarded, t->published);
            for (int r = 0; r < R2MAP_NREASONS; r++)
                fprintf(f, "%s\"%s\": %" PRIu64, r ? ", " : "", r2map_reason_name(r),
                        t->rejected[r]);
            fprintf(f, "}}\n");
        } else {
            fprintf(f,
                    "etrace-ros2: %s: received %" PRIu64 ", forwarded %" PRIu64
                    ", published %" PRIu64,
                    t->topic, t->received, t->forwarded, t->published);
            for (int r = 0; r < R2MAP_NREASONS; r++)
                if (t->rejected[r])
                    fprintf(f, ", rejected %s %" PRIu64, r2map_reason_name(r), t->rejected[r]);
            fprintf(f, "\n");
        }
    }
    if (json)
        fprintf(f,
                "{\"steps\": %" PRIu64 ", \"step_failures\": %" PRIu64
                ", \"outputs_unmapped\": %" PRIu64 "}\n",
                b->steps, b->step_failures, b->outputs_unmapped);
    fflush(f);
}

/* ---- main ------------------------------------------------------------------------- */

static int
bridge_init(struct bridge *b)
{
    size_t max_joints = 1;
    b->links = calloc(b->map.n_topics, sizeof(*b->links));
    if (!b->links)
        return -1;
    for (size_t i = 0; i < b->map.n_topics; i++) {
        struct link *k = &b->links[i];
        Etrace__Signal s = ETRACE__SIGNAL__INIT;
        Etrace__Signal__Target tg = ETRACE__SIGNAL__TARGET__INIT;
        k->t = &b->map.topics[i];
        k->signal = s;
        k->target = tg;
        k->vec = calloc(k->t->size ? k->t->size : 1, sizeof(float));
        if (!k->vec)
            return -1;
        k->held = calloc(k->t->size ? k->t->size : 1, sizeof(float));
        if (!k->held)
            return -1;
        if (k->t->n_joints > max_joints)
            max_joints = k->t->n_joints;
    }
    b->dbl = calloc(3 * max_joints, sizeof(double));
    return b->dbl ? 0 : -1;
}

static void
bridge_free(struct bridge *b)
{
    if (b->pp > 0)
        dds_delete(b->pp);
    if (b->sub)
        zmq_close(b->sub);
    if (b->zctx)
        zmq_ctx_term(b->zctx);
    etrace_client_free(&b->cli);
    for (size_t i = 0; b->links && i < b->map.n_topics; i++) {
        free(b->links[i].vec);
        free(b->links[i].held);
    }
    free(b->links);
    free(b->dbl);
    if (b->wake[0] > 0) {
        close(b->wake[0]);
        close(b->wake[1]);
    }
    r2map_free(&b->map);
}

static int
open_outputs(struct bridge *b)
{
    char ep[512];
    int linger = 0;
    const char *endpoint = b->map.output;
    if (!endpoint) {
        if (etrace_default_endpoint("output", ep, sizeof(ep)))
            return -1;
        endpoint = ep;
    }
    b->zctx = zmq_ctx_new();
    b->sub = b->zctx ? zmq_socket(b->zctx, ZMQ_SUB) : NULL;
    if (!b->sub)
        return -1;
    zmq_setsockopt(b->sub, ZMQ_LINGER, &linger, sizeof(linger));
    for (size_t i = 0; i < b->map.n_topics; i++)
        if (b->map.topics[i].role == R2MAP_PUBLISH)
            zmq_setsockopt(b->sub, ZMQ_SUBSCRIBE, b->map.topics[i].name,
                           strlen(b->map.topics[i].name));
    if (zmq_connect(b->sub, endpoint)) {
        fprintf(stderr, "etrace-ros2: output endpoint %s: %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

static int
run(struct bridge *b)
{
    long long next_report = now_ns(CLOCK_MONOTONIC) + (long long)(b->map.report_s * 1e9);
    while (!stop_requested) {
        zmq_pollitem_t items[2] = {{.fd = b->wake[0], .events = ZMQ_POLLIN},
                                   {.socket = b->sub, .events = ZMQ_POLLIN}};
        int n = zmq_poll(items, b->sub ? 2 : 1, 200);
        if (n < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "etrace-ros2: poll: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
            char buf[256];
            while (read(b->wake[0], buf, sizeof(buf)) > 0) {
            }
        }
        /* Always drain: a wake-up written before the last read is not lost this way. */
        /* Targets and rewards first, so that in lockstep one received just before a
         * sensor message rides on that message's Step. */
        for (size_t i = 0; i < b->map.n_topics; i++)
            if (b->links[i].t->role == R2MAP_TARGET || b->links[i].t->role == R2MAP_REWARD)
                drain(b, &b->links[i]);
        for (size_t i = 0; i < b->map.n_topics; i++)
            if (b->links[i].t->role == R2MAP_INPUT)
                drain(b, &b->links[i]);
        if (b->sub)
            drain_outputs(b);
        if (b->map.report_s > 0 && now_ns(CLOCK_MONOTONIC) >= next_report) {
            report(b, stderr, 0);
            next_report += (long long)(b->map.report_s * 1e9);
        }
    }
    return 0;
}

/* --cdr TOPIC=v1,v2,...: writes the readout vector as the bridge would publish it on
 * TOPIC, takes it back through a local reader and prints its serialized bytes (the
 * 4-byte encapsulation header first) as hex. The JointState stamp is 0. */
static int
cdr_dump(struct bridge *b, const char *arg)
{
    const char *eq = strchr(arg, '=');
    struct link *k = NULL;
    size_t n = 0;
    float *v;
    Etrace__Output o = ETRACE__OUTPUT__INIT;
    struct ddsi_serdata *sd = NULL;
    dds_sample_info_t si;
    if (!eq)
        return 64;
    for (size_t i = 0; i < b->map.n_topics; i++)
        if (b->map.topics[i].role == R2MAP_PUBLISH &&
            strlen(b->map.topics[i].topic) == (size_t)(eq - arg) &&
            !strncmp(b->map.topics[i].topic, arg, (size_t)(eq - arg)))
            k = &b->links[i];
    if (!k) {
        fprintf(stderr, "etrace-ros2: --cdr: no published topic '%.*s' in the mapping\n",
                (int)(eq - arg), arg);
        return 64;
    }
    v = calloc(strlen(eq) + 1, sizeof(float));
    if (!v)
        return 1;
    for (const char *p = eq + 1; *p;) {
        char *end;
        v[n++] = strtof(p, &end);
        if (end == p) {
            free(v);
            fprintf(stderr, "etrace-ros2: --cdr: bad number at '%s'\n", p);
            return 64;
        }
        p = *end == ',' ? end + 1 : end;
    }
    o.readout = k->t->name;
    o.values = o.action = v;
    o.n_values = o.n_action = n;
    if (k->t->type == R2MAP_JOINT_STATE) {
        /* A fixed stamp, so the bytes are reproducible. */
        sensor_msgs_msg_dds__JointState_ m;
        if (r2msg_to_joint_state(k->t, v, n, b->dbl, 0, &m) < 0) {
            dds_write(k->writer, &m);
            k->t->published++;
        }
    } else {
        publish_output(b, &o);
    }
    free(v);
    if (k->t->published != 1) {
        fprintf(stderr, "etrace-ros2: --cdr: %zu values do not fit %s\n", n, k->t->topic);
        return 1;
    }
    if (dds_takecdr(k->reader, &sd, 1, &si, DDS_ANY_STATE) != 1) {
        fprintf(stderr, "etrace-ros2: --cdr: the sample did not come back\n");
        return 1;
    }
    {
        uint32_t size = ddsi_serdata_size(sd);
        unsigned char *bytes = malloc(size ? size : 1);
        if (!bytes) {
            ddsi_serdata_unref(sd);
            return 1;
        }
        ddsi_serdata_to_ser(sd, 0, size, bytes);
        for (uint32_t i = 0; i < size; i++)
            printf("%02x", bytes[i]);
        printf("\n");
        free(bytes);
    }
    ddsi_serdata_unref(sd);
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: etrace-ros2 MAPPING.yaml [--lockstep] [--domain N]\n"
               "       etrace-ros2 MAPPING.yaml --cdr TOPIC=v1,v2,...   (print the CDR bytes)\n"
               "       etrace-ros2 --version\n"
               "The mapping's format: README, section \"ROS 2\".\n");
}

int
main(int argc, char **argv)
{
    struct bridge b;
    const char *map_path = NULL, *cdr = NULL, *env;
    int lockstep = 0, domain = 0, rc;
    char err[1024];
    memset(&b, 0, sizeof(b));
    b.wake[0] = b.wake[1] = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("etrace-ros2 %s\n", ETRACE_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--lockstep")) {
            lockstep = 1;
        } else if (!strcmp(argv[i], "--domain") && i + 1 < argc) {
            char *end;
            long d = strtol(argv[++i], &end, 10);
            if (*end || d < 0 || d > 232) {
                fprintf(stderr, "etrace-ros2: --domain: '%s' is not in [0, 232]\n", argv[i]);
                return 64;
            }
            domain = (int)d;
        } else if (!strcmp(argv[i], "--cdr") && i + 1 < argc) {
            cdr = argv[++i];
        } else if (argv[i][0] != '-' && !map_path) {
            map_path = argv[i];
        } else {
            fprintf(stderr, "etrace-ros2: unknown argument '%s' (--help)\n", argv[i]);
            return 64;
        }
    }
    if (!map_path) {
        usage(stderr);
        return 64;
    }
    /* ROS 2's domain, unless --domain says otherwise. */
    env = getenv("ROS_DOMAIN_ID");
    if (env && *env && domain == 0) {
        char *end;
        long d = strtol(env, &end, 10);
        if (*end || d < 0 || d > 232) {
            fprintf(stderr, "etrace-ros2: ROS_DOMAIN_ID '%s' is not in [0, 232]\n", env);
            return 64;
        }
        domain = (int)d;
    }
    if (r2map_load(&b.map, map_path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (lockstep)
        b.map.lockstep = 1;
    if (bridge_init(&b) || pipe2(b.wake, O_NONBLOCK | O_CLOEXEC)) {
        fprintf(stderr, "etrace-ros2: out of memory\n");
        bridge_free(&b);
        return 1;
    }
    if (dds_setup(&b, domain, cdr != NULL)) {
        bridge_free(&b);
        return 1;
    }
    if (cdr) {
        rc = cdr_dump(&b, cdr);
        bridge_free(&b);
        return rc;
    }
    b.cli = etrace_client_new(b.map.control, b.map.input, b.map.timeout_ms);
    if (!b.cli || (!b.map.lockstep && open_outputs(&b))) {
        fprintf(stderr, "etrace-ros2: cannot open etraced's sockets\n");
        bridge_free(&b);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "etrace-ros2: %zu topics on ROS domain %d, %s clock\n", b.map.n_topics, domain,
            b.map.lockstep ? "lockstep" : "timer");
    rc = run(&b);
    report(&b, stderr, 0);
    report(&b, stdout, 1);
    bridge_free(&b);
    return rc;
}
