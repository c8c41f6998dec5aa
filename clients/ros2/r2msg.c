/* Conversions between ROS 2 samples and etraced vectors (see r2msg.h). */
#include "r2msg.h"

#include <math.h>
#include <string.h>

/* JointState's three arrays by r2map_joint_field. */
static const dds_sequence_double *
joint_array(const sensor_msgs_msg_dds__JointState_ *m, int field)
{
    return field == R2MAP_POSITION   ? &m->position
           : field == R2MAP_VELOCITY ? &m->velocity
                                     : &m->effort;
}

int
r2msg_from_joint_state(const struct r2map_topic *t, const sensor_msgs_msg_dds__JointState_ *m,
                       float *out)
{
    uint32_t n_names = m->name._length;
    /* Every mapped array must have one value per name: a shorter one cannot be indexed
     * by name, and ROS leaves an unused array empty rather than short. */
    for (size_t f = 0; f < t->n_fields; f++)
        if (joint_array(m, t->fields[f])->_length != n_names)
            return R2MAP_WRONG_LENGTH;
    for (size_t j = 0; j < t->n_joints; j++) {
        uint32_t k;
        for (k = 0; k < n_names; k++)
            if (m->name._buffer[k] && !strcmp(m->name._buffer[k], t->joints[j]))
                break;
        if (k == n_names)
            return R2MAP_MISSING_JOINT;
        /* The vector is field-major: every joint's first field, then the second... */
        for (size_t f = 0; f < t->n_fields; f++) {
            double v = joint_array(m, t->fields[f])->_buffer[k];
            if (!isfinite(v) || fabs(v) > 3.4e38)
                return R2MAP_NON_FINITE;
            out[f * t->n_joints + j] = (float)v;
        }
    }
    return -1;
}

int
r2msg_from_f32_array(const struct r2map_topic *t, const std_msgs_msg_dds__Float32MultiArray_ *m,
                     float *out)
{
    uint32_t off = m->layout.data_offset, len = m->data._length;
    /* data_offset skips a header of the array (std_msgs/MultiArrayLayout). */
    if (off > len || len - off != t->size)
        return R2MAP_WRONG_LENGTH;
    for (size_t i = 0; i < t->size; i++) {
        float v = m->data._buffer[off + i];
        if (!isfinite(v))
            return R2MAP_NON_FINITE;
        out[i] = v;
    }
    return -1;
}

int
r2msg_from_scalar(double v, float *out)
{
    if (!isfinite(v) || fabs(v) > 3.4e38)
        return R2MAP_NON_FINITE;
    *out = (float)v;
    return -1;
}

int
r2msg_to_joint_state(const struct r2map_topic *t, const float *v, size_t n, double *dbl,
                     long long stamp_ns, sensor_msgs_msg_dds__JointState_ *m)
{
    dds_sequence_double *arrays[3];
    if (n != t->size)
        return R2MAP_WRONG_LENGTH;
    memset(m, 0, sizeof(*m));
    m->header.stamp.sec = (int32_t)(stamp_ns / 1000000000);
    m->header.stamp.nanosec = (uint32_t)(stamp_ns % 1000000000);
    m->header.frame_id = (char *)"";
    m->name._length = m->name._maximum = (uint32_t)t->n_joints;
    m->name._buffer = t->joints;
    arrays[R2MAP_POSITION] = &m->position;
    arrays[R2MAP_VELOCITY] = &m->velocity;
    arrays[R2MAP_EFFORT] = &m->effort;
    for (size_t f = 0; f < t->n_fields; f++) {
        dds_sequence_double *a = arrays[t->fields[f]];
        double *d = dbl + (size_t)t->fields[f] * t->n_joints;
        for (size_t j = 0; j < t->n_joints; j++)
            d[j] = v[f * t->n_joints + j];
        a->_length = a->_maximum = (uint32_t)t->n_joints;
        a->_buffer = d;
    }
    return -1;
}

int
r2msg_to_twist(const struct r2map_topic *t, const float *v, size_t n,
               geometry_msgs_msg_dds__Twist_ *m)
{
    double *slot[6];
    if (n != t->size)
        return R2MAP_WRONG_LENGTH;
    memset(m, 0, sizeof(*m));
    slot[0] = &m->linear.x;
    slot[1] = &m->linear.y;
    slot[2] = &m->linear.z;
    slot[3] = &m->angular.x;
    slot[4] = &m->angular.y;
    slot[5] = &m->angular.z;
    for (size_t k = 0; k < t->n_fields; k++)
        *slot[t->fields[k]] = v[k];
    return -1;
}

void
r2msg_to_f32_array(const float *v, size_t n, std_msgs_msg_dds__Float32MultiArray_ *m)
{
    memset(m, 0, sizeof(*m));
    m->data._length = m->data._maximum = (uint32_t)n;
    m->data._buffer = (float *)v;
}
