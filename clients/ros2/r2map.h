/* r2map: etrace-ros2's mapping file, which names for each ROS 2 topic what it carries to or
 * from etraced. Read with libyaml; an error names FILE:LINE:COL and the field. */
#ifndef R2MAP_H
#define R2MAP_H

#include <stddef.h>
#include <stdint.h>

enum r2map_type { R2MAP_JOINT_STATE, R2MAP_F32_ARRAY, R2MAP_F32, R2MAP_F64, R2MAP_TWIST };
enum r2map_role { R2MAP_INPUT, R2MAP_TARGET, R2MAP_REWARD, R2MAP_PUBLISH };
/* JointState's arrays, in the message's order. */
enum r2map_joint_field { R2MAP_POSITION, R2MAP_VELOCITY, R2MAP_EFFORT };
/* Twist's six numbers: linear.x .. linear.z, angular.x .. angular.z = 0 .. 5. */
enum { R2MAP_MAX_FIELDS = 6 };

/* Why a message was not forwarded (counted per topic). */
enum r2map_reason {
    R2MAP_MISSING_JOINT, /* a mapped joint name is not in the message */
    R2MAP_WRONG_LENGTH,  /* an array shorter or longer than the mapping says */
    R2MAP_NON_FINITE,    /* NaN or Inf in a forwarded value */
    R2MAP_DAEMON,        /* etraced did not take it (no answer in time, an error reply) */
    R2MAP_NREASONS
};

struct r2map_topic {
    char *topic;    /* the ROS name as written, e.g. /joint_states */
    char *dds_name; /* the DDS topic: rt/ + the name without its leading slash */
    enum r2map_type type;
    enum r2map_role role;
    char *name;    /* the etraced input (input) or readout (target, publish); NULL: reward */
    char **joints; /* JointState: joint names, in vector order */
    size_t n_joints;
    int fields[R2MAP_MAX_FIELDS]; /* JointState: r2map_joint_field; Twist: 0..5 */
    size_t n_fields;
    size_t size;    /* the etraced vector's length this topic carries */
    int use_action; /* publish: the readout's action instead of its values */
    int depth;      /* QoS history depth (keep last), default 10 as ROS's default */
    /* counters, kept by the bridge */
    uint64_t received, forwarded, published;
    uint64_t rejected[R2MAP_NREASONS];
};

struct r2map {
    char *control, *input, *output; /* etraced endpoints; NULL: the daemon's defaults */
    int lockstep;                   /* one Step per message on an input topic */
    int timeout_ms;                 /* bound of every request to etraced */
    double report_s;                /* seconds between counter reports on stderr (0: off) */
    struct r2map_topic *topics;
    size_t n_topics;
};

/* Reads the mapping at path into *m (zeroed first). Returns 0, or -1 with the message in
 * err ("FILE:LINE:COL: FIELD: message"); *m is then empty. Free with r2map_free. */
int r2map_load(struct r2map *m, const char *path, char *err, size_t err_len);

/* Frees what r2map_load allocated; accepts an empty map. */
void r2map_free(struct r2map *m);

/* The ROS type name of t ("sensor_msgs/msg/JointState"), and the reason's name. */
const char *r2map_type_name(enum r2map_type t);
const char *r2map_reason_name(enum r2map_reason r);

#endif
