/* r2msg: between ROS 2 message samples (Cyclone DDS C types generated from ros2_msgs.idl)
 * and etraced's vectors, as a topic of the mapping (r2map.h) says. No I/O, no DDS calls. */
#ifndef R2MSG_H
#define R2MSG_H

#include <stddef.h>

#include "r2map.h"
#include "ros2_msgs.h"

/* A received sample of topic t into out[t->size]. Returns -1 when every value was
 * taken, else the r2map_reason it is rejected for (out is then partly written: never
 * forward it). */
int r2msg_from_joint_state(const struct r2map_topic *t, const sensor_msgs_msg_dds__JointState_ *m,
                           float *out);
int r2msg_from_f32_array(const struct r2map_topic *t, const std_msgs_msg_dds__Float32MultiArray_ *m,
                         float *out);
int r2msg_from_scalar(double v, float *out);

/* Fills a sample of topic t to publish from a readout's v[n]. The sample points into
 * bufs (no allocation): JointState uses names from t and position/velocity/effort from
 * dbl[3 * t->n_joints]. Returns -1 when filled, or R2MAP_WRONG_LENGTH when n does not
 * fit the mapping. */
int r2msg_to_joint_state(const struct r2map_topic *t, const float *v, size_t n, double *dbl,
                         long long stamp_ns, sensor_msgs_msg_dds__JointState_ *m);
int r2msg_to_twist(const struct r2map_topic *t, const float *v, size_t n,
                   geometry_msgs_msg_dds__Twist_ *m);
/* data points at v (floats, as the message has them). */
void r2msg_to_f32_array(const float *v, size_t n, std_msgs_msg_dds__Float32MultiArray_ *m);

#endif
