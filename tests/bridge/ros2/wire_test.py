"""Golden bytes: what etrace-ros2 publishes equals rosbags' ROS 2 CDR serialisation.

For each published type (std_msgs Float32MultiArray, Float32, Float64, geometry_msgs Twist,
sensor_msgs JointState) and a few vectors, `etrace-ros2 MAP --cdr TOPIC=v,...` writes the
sample through Cyclone DDS and prints the bytes a local reader took back (encapsulation
header 00 01 00 00 first); rosbags serialises the same message (Stores.ROS2_JAZZY) and the
two must be equal byte for byte."""
import os
import subprocess
import sys

import numpy as np
from rosbags.typesys import Stores, get_typestore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as ros2_common  # noqa: E402

MAP = """topics:
  - {topic: /cmd, type: std_msgs/msg/Float32MultiArray, publish: action}
  - {topic: /cmd_vel, type: geometry_msgs/msg/Twist, publish: action, fields: [linear.x, angular.z]}
  - {topic: /twist6, type: geometry_msgs/msg/Twist, publish: action,
     fields: [angular.z, angular.y, angular.x, linear.z, linear.y, linear.x]}
  - {topic: /joint_cmd, type: sensor_msgs/msg/JointState, publish: action, joints: [shoulder, elbow_joint],
     fields: [position, velocity]}
  - {topic: /effort, type: sensor_msgs/msg/JointState, publish: action, joints: [a], fields: [effort]}
  - {topic: /f32, type: std_msgs/msg/Float32, publish: action}
  - {topic: /f64, type: std_msgs/msg/Float64, publish: action}
"""


def main():
    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Time = T["builtin_interfaces/msg/Time"]
    Header = T["std_msgs/msg/Header"]
    Layout = T["std_msgs/msg/MultiArrayLayout"]
    Vec3 = T["geometry_msgs/msg/Vector3"]
    f64 = lambda xs: np.array(xs, dtype=np.float64)  # noqa: E731
    f32 = lambda xs: np.array(xs, dtype=np.float32)  # noqa: E731

    def joint_state(names, pos=(), vel=(), eff=()):
        return T["sensor_msgs/msg/JointState"](
            header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""), name=list(names),
            position=f64(pos), velocity=f64(vel), effort=f64(eff))

    cases = [
        ("/cmd", [1.5, -2.0], "std_msgs/msg/Float32MultiArray",
         T["std_msgs/msg/Float32MultiArray"](layout=Layout(dim=[], data_offset=0),
                                             data=f32([1.5, -2.0]))),
        ("/cmd", [0.1, 0.2, 0.3, 1e-30, -3.25], "std_msgs/msg/Float32MultiArray",
         T["std_msgs/msg/Float32MultiArray"](layout=Layout(dim=[], data_offset=0),
                                             data=f32([0.1, 0.2, 0.3, 1e-30, -3.25]))),
        ("/cmd_vel", [0.5, -0.25], "geometry_msgs/msg/Twist",
         T["geometry_msgs/msg/Twist"](linear=Vec3(x=0.5, y=0.0, z=0.0),
                                      angular=Vec3(x=0.0, y=0.0, z=-0.25))),
        ("/twist6", [1, 2, 3, 4, 5, 6], "geometry_msgs/msg/Twist",
         T["geometry_msgs/msg/Twist"](linear=Vec3(x=6.0, y=5.0, z=4.0),
                                      angular=Vec3(x=3.0, y=2.0, z=1.0))),
        ("/joint_cmd", [0.125, -1.5, 2.0, 3.0], "sensor_msgs/msg/JointState",
         joint_state(["shoulder", "elbow_joint"], pos=[0.125, -1.5], vel=[2.0, 3.0])),
        ("/effort", [7.0], "sensor_msgs/msg/JointState", joint_state(["a"], eff=[7.0])),
        ("/f32", [0.75], "std_msgs/msg/Float32", T["std_msgs/msg/Float32"](data=np.float32(0.75))),
        ("/f64", [0.1], "std_msgs/msg/Float64",
         T["std_msgs/msg/Float64"](data=float(np.float32(0.1)))),
    ]
    passed = failed = 0
    with ros2_common.tempdir() as tmp:
        env = ros2_common.loopback_env(tmp, 77)
        path = os.path.join(tmp, "map.yaml")
        with open(path, "w") as f:
            f.write(MAP)
        exe = os.path.join(ros2_common.build_dir(), "etrace-ros2")
        for topic, values, typ, msg in cases:
            arg = "%s=%s" % (topic, ",".join(repr(float(v)) for v in values))
            out = subprocess.run([exe, path, "--cdr", arg], env=env, capture_output=True,
                                 text=True, timeout=60)
            ours = out.stdout.strip()
            theirs = bytes(ts.serialize_cdr(msg, typ)).hex()
            if out.returncode == 0 and ours == theirs:
                passed += 1
                print("ok   %-11s %-32s %3d bytes" % (topic, typ, len(theirs) // 2))
            else:
                failed += 1
                print("FAIL %s %s rc=%d\n  ours   %s\n  rosbags %s\n  %s" %
                      (topic, typ, out.returncode, ours, theirs, out.stderr.strip()))
        # A vector that does not fit the mapping is refused, not published half-filled.
        out = subprocess.run([exe, path, "--cdr", "/cmd_vel=1,2,3"], env=env,
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 1 and "do not fit" in out.stderr:
            passed += 1
            print("ok   /cmd_vel refuses 3 values for 2 fields")
        else:
            failed += 1
            print("FAIL /cmd_vel with 3 values: rc=%d %s" % (out.returncode, out.stderr))
    print("ros2-wire: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
