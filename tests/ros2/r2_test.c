/* etrace-ros2's mapping reader (r2map) and message conversions (r2msg): every error of a
 * mapping names its FILE:LINE:COL and field; a message that does not fit the mapping is
 * refused with its reason and never half-forwarded; published samples carry the readout's
 * values where the mapping puts them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "r2map.h"
#include "r2msg.h"

static char tmpdir[] = "/tmp/r2test-XXXXXX";

static const char *
write_map(const char *name, const char *text)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *good_map =
    "lockstep: true\n"
    "timeout_ms: 250\n"
    "topics:\n"
    "  - {topic: /joint_states, type: sensor_msgs/msg/JointState, input: joints,\n"
    "     joints: [a, b, c], fields: [velocity, position]}\n"
    "  - {topic: teacher, type: std_msgs/msg/Float32MultiArray, target: action, size: 2}\n"
    "  - {topic: /reward, type: std_msgs/msg/Float64, reward: true}\n"
    "  - {topic: /robot/cmd_vel, type: geometry_msgs/msg/Twist, publish: action,\n"
    "     fields: [angular.z, linear.x], source: action, depth: 50}\n";

static void
test_map_good(void **state)
{
    struct r2map m;
    char err[512];
    (void)state;
    assert_int_equal(r2map_load(&m, write_map("good.yaml", good_map), err, sizeof(err)), 0);
    assert_int_equal(m.n_topics, 4);
    assert_int_equal(m.lockstep, 1);
    assert_int_equal(m.timeout_ms, 250);
    assert_string_equal(m.topics[0].dds_name, "rt/joint_states");
    assert_int_equal(m.topics[0].size, 6);
    assert_int_equal(m.topics[0].fields[0], R2MAP_VELOCITY);
    assert_int_equal(m.topics[0].depth, 10);
    assert_string_equal(m.topics[1].dds_name, "rt/teacher");
    assert_int_equal(m.topics[1].role, R2MAP_TARGET);
    assert_int_equal(m.topics[2].role, R2MAP_REWARD);
    assert_int_equal(m.topics[2].size, 1);
    assert_string_equal(m.topics[3].dds_name, "rt/robot/cmd_vel");
    assert_int_equal(m.topics[3].size, 2);
    assert_int_equal(m.topics[3].fields[0], 5);
    assert_int_equal(m.topics[3].fields[1], 0);
    assert_int_equal(m.topics[3].use_action, 1);
    assert_int_equal(m.topics[3].depth, 50);
    r2map_free(&m);
}

static void
test_map_errors(void **state)
{
    static const struct {
        const char *text, *expect; /* expect: the error after the file name */
    } cases[] = {
        {"topics: []\n", ":1:9: topics: expected a non-empty list"},
        {"lockstep: maybe\ntopics: []\n", ":1:11: lockstep: expected true or false"},
        {"bogus: 1\n", ":1:1: bogus: unknown key"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/String, input: a}\n",
         ":2:23: type: unsupported type 'std_msgs/msg/String'"},
        {"topics:\n  - {topic: /x, type: sensor_msgs/msg/JointState, input: a}\n",
         ":2:5: joints: required for sensor_msgs/msg/JointState"},
        {"topics:\n  - {topic: /x, type: geometry_msgs/msg/Twist, input: a, fields: [linear.x]}\n",
         ":2:55: type: geometry_msgs/msg/Twist is only published"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32MultiArray, reward: true}\n",
         ":2:63: reward: a reward topic is std_msgs/msg/Float32 or Float64"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32MultiArray, input: a}\n",
         ":2:5: size: required for a Float32MultiArray input or target"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32, input: a, publish: b}\n",
         ":2:5: topics: exactly one of input, target, reward, publish is required"},
        {"topics:\n  - {topic: 9x, type: std_msgs/msg/Float32, input: a}\n",
         ":2:13: topic: '9x' is not a ROS topic name"},
        {"topics:\n  - {topic: /a//b, type: std_msgs/msg/Float32, input: a}\n",
         ":2:13: topic: '/a//b' is not a ROS topic name"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32, input: a}\n"
         "  - {topic: x, type: std_msgs/msg/Float32, input: b}\n",
         ":3:5: topic: 'x' mapped twice"},
        {"topics:\n  - {topic: /x, type: sensor_msgs/msg/JointState, input: a, joints: [j, j]}\n",
         ":2:73: joints: 'j' named twice"},
        {"topics:\n  - {topic: /x, type: sensor_msgs/msg/JointState, input: a, joints: [j],"
         " fields: [speed]}\n",
         ":2:83: fields: unknown field 'speed' for sensor_msgs/msg/JointState"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32, input: a, depth: 0}\n",
         ":2:62: depth: expected an integer in [1, 100000]"},
        {"topics:\n  - {topic: /x, type: std_msgs/msg/Float32, input: a, size: 2}\n",
         ":2:61: size: the mapping gives 1 values"},
        {"topics: [\n", ":2:1: mapping: did not find expected node content"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct r2map m;
        char err[512];
        const char *path = write_map("bad.yaml", cases[i].text);
        int rc = r2map_load(&m, path, err, sizeof(err));
        if (rc != -1 || strncmp(err, path, strlen(path)) ||
            !strstr(err + strlen(path), cases[i].expect))
            fail_msg("case %zu: rc %d, error '%s', expected '%s'", i, rc, err, cases[i].expect);
        assert_int_equal(m.n_topics, 0);
    }
}

static struct r2map_topic
joint_topic(char **joints, size_t n, int f0, int f1)
{
    struct r2map_topic t;
    memset(&t, 0, sizeof(t));
    t.type = R2MAP_JOINT_STATE;
    t.joints = joints;
    t.n_joints = n;
    t.fields[0] = f0;
    t.n_fields = f1 < 0 ? 1 : 2;
    t.fields[1] = f1;
    t.size = n * t.n_fields;
    return t;
}

static void
test_joint_state_in(void **state)
{
    char *joints[] = {"shoulder", "elbow"};
    char *names[] = {"elbow", "wrist", "shoulder"};
    double pos[] = {1.0, 2.0, 3.0}, vel[] = {-1.0, -2.0, -3.0};
    struct r2map_topic t = joint_topic(joints, 2, R2MAP_POSITION, R2MAP_VELOCITY);
    sensor_msgs_msg_dds__JointState_ m;
    float out[4];
    (void)state;
    memset(&m, 0, sizeof(m));
    m.name._length = 3;
    m.name._buffer = names;
    m.position._length = 3;
    m.position._buffer = pos;
    m.velocity._length = 3;
    m.velocity._buffer = vel;
    /* By name, field-major: positions of shoulder, elbow, then their velocities. */
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), -1);
    assert_true(out[0] == 3.0f && out[1] == 1.0f && out[2] == -3.0f && out[3] == -1.0f);
    /* An unused effort array may be empty; a used one may not. */
    t.fields[1] = R2MAP_EFFORT;
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), R2MAP_WRONG_LENGTH);
    t.fields[1] = R2MAP_VELOCITY;
    m.velocity._length = 2;
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), R2MAP_WRONG_LENGTH);
    m.velocity._length = 3;
    names[2] = "knee";
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), R2MAP_MISSING_JOINT);
    names[2] = "shoulder";
    vel[0] = NAN;
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), R2MAP_NON_FINITE);
    vel[0] = 1e300; /* finite as a double, not as the float the daemon takes */
    assert_int_equal(r2msg_from_joint_state(&t, &m, out), R2MAP_NON_FINITE);
}

static void
test_array_and_scalar_in(void **state)
{
    float data[] = {9.0f, 1.0f, 2.0f};
    struct r2map_topic t;
    std_msgs_msg_dds__Float32MultiArray_ m;
    float out[2];
    (void)state;
    memset(&t, 0, sizeof(t));
    t.type = R2MAP_F32_ARRAY;
    t.size = 2;
    memset(&m, 0, sizeof(m));
    m.data._length = 3;
    m.data._buffer = data;
    assert_int_equal(r2msg_from_f32_array(&t, &m, out), R2MAP_WRONG_LENGTH);
    m.layout.data_offset = 1; /* skips data[0] */
    assert_int_equal(r2msg_from_f32_array(&t, &m, out), -1);
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
    m.layout.data_offset = 4;
    assert_int_equal(r2msg_from_f32_array(&t, &m, out), R2MAP_WRONG_LENGTH);
    m.layout.data_offset = 1;
    data[2] = INFINITY;
    assert_int_equal(r2msg_from_f32_array(&t, &m, out), R2MAP_NON_FINITE);
    assert_int_equal(r2msg_from_scalar(0.25, out), -1);
    assert_true(out[0] == 0.25f);
    assert_int_equal(r2msg_from_scalar(NAN, out), R2MAP_NON_FINITE);
}

static void
test_out(void **state)
{
    char *joints[] = {"a", "b"};
    struct r2map_topic jt = joint_topic(joints, 2, R2MAP_EFFORT, R2MAP_POSITION);
    struct r2map_topic tt;
    sensor_msgs_msg_dds__JointState_ js;
    geometry_msgs_msg_dds__Twist_ tw;
    std_msgs_msg_dds__Float32MultiArray_ fa;
    const float v[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    double dbl[6];
    (void)state;
    assert_int_equal(r2msg_to_joint_state(&jt, v, 3, dbl, 0, &js), R2MAP_WRONG_LENGTH);
    assert_int_equal(r2msg_to_joint_state(&jt, v, 4, dbl, 1500000000LL, &js), -1);
    assert_int_equal(js.header.stamp.sec, 1);
    assert_int_equal(js.header.stamp.nanosec, 500000000);
    assert_int_equal(js.name._length, 2);
    assert_string_equal(js.name._buffer[1], "b");
    assert_int_equal(js.effort._length, 2);
    assert_true(js.effort._buffer[0] == 1.0 && js.effort._buffer[1] == 2.0);
    assert_int_equal(js.position._length, 2);
    assert_true(js.position._buffer[0] == 3.0 && js.position._buffer[1] == 4.0);
    assert_int_equal(js.velocity._length, 0);

    memset(&tt, 0, sizeof(tt));
    tt.type = R2MAP_TWIST;
    tt.fields[0] = 5; /* angular.z */
    tt.fields[1] = 0; /* linear.x */
    tt.n_fields = tt.size = 2;
    assert_int_equal(r2msg_to_twist(&tt, v, 3, &tw), R2MAP_WRONG_LENGTH);
    assert_int_equal(r2msg_to_twist(&tt, v, 2, &tw), -1);
    assert_true(tw.angular.z == 1.0 && tw.linear.x == 2.0 && tw.linear.y == 0.0 &&
                tw.angular.x == 0.0);

    r2msg_to_f32_array(v, 4, &fa);
    assert_int_equal(fa.data._length, 4);
    assert_true(fa.data._buffer[3] == 4.0f);
    assert_int_equal(fa.layout.dim._length, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_good),
        cmocka_unit_test(test_map_errors),
        cmocka_unit_test(test_joint_state_in),
        cmocka_unit_test(test_array_and_scalar_in),
        cmocka_unit_test(test_out),
    };
    int rc;
    if (!mkdtemp(tmpdir))
        return 1;
    rc = cmocka_run_group_tests_name("r2", tests, NULL, NULL);
    unlink(write_map("good.yaml", ""));
    unlink(write_map("bad.yaml", ""));
    rmdir(tmpdir);
    return rc;
}
