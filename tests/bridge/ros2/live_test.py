"""etrace-ros2 against an unmodified rclpy node (ROS 2 wheels from PyPI, rmw_fastrtps_cpp).

A lockstep etraced learns online through the bridge: the rclpy node publishes
sensor_msgs/JointState at 200 Hz (and a teacher's target before each as
std_msgs/Float32MultiArray); the bridge runs one Step per JointState and publishes the
readout as Float32MultiArray, Twist and a JointState command, which the node receives.
Asserted: the types rclpy reports for the bridge's publishers (and their RIHS01 type hashes
against rosbags'), every forwarded JointState answered by one message on each output topic,
the Twist and JointState fields equal to the Float32MultiArray's values, the error falling
as the daemon learns, bad JointStates (unknown joint, short arrays) counted and never
forwarded, and the bridge carrying on across a daemon restart and a publisher that
vanishes. Prints messages each way and the latency through the bridge (p50/p99)."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as ros2_common  # noqa: E402

MODEL = """name: ros2-live
dt: 5.0e-3
seed: 3
inputs:
  - {name: joints, size: 4}
cells:
  - {name: out, model: linear, size: 2}
projections:
  - {name: w, from: joints, to: out, weight: {init: zeros}}
readouts:
  - {name: action, cell: out}
learning:
  algorithm: d_rtrl
  signal: target
  optimizer: {kind: sgd, lr: 0.2}
"""

MAPPING = """lockstep: true
timeout_ms: 300
report_s: 0
daemon: {control: "ipc://%(dir)s/control", input: "ipc://%(dir)s/input", output: "ipc://%(dir)s/output"}
topics:
  - {topic: /joint_states, type: sensor_msgs/msg/JointState, input: joints,
     joints: [shoulder, elbow], fields: [position, velocity], depth: 1000}
  - {topic: /teacher, type: std_msgs/msg/Float32MultiArray, target: action, size: 2}
  - {topic: /cmd, type: std_msgs/msg/Float32MultiArray, publish: action, depth: 2000}
  - {topic: /cmd_vel, type: geometry_msgs/msg/Twist, publish: action, fields: [linear.x, angular.z],
     depth: 2000}
  - {topic: /joint_cmd, type: sensor_msgs/msg/JointState, publish: action,
     joints: [shoulder, elbow], fields: [effort], depth: 2000}
"""

N_GOOD = 1000  # JointStates at 200 Hz: 5 s
BAD_EVERY = 50  # a bad JointState after every 50th good one (alternating kinds)
RATE_HZ = 200.0


def teacher(x):
    """The target the daemon must learn: a fixed linear map of the 4 inputs."""
    return np.array([0.5 * x[0] - 0.3 * x[3], 0.2 * x[1] + 0.4 * x[2]], dtype=np.float32)


class Daemon:
    def __init__(self, exe, tmp, env):
        self.exe, self.tmp, self.env = exe, tmp, env
        with open(os.path.join(tmp, "model.yaml"), "w") as f:
            f.write(MODEL)
        with open(os.path.join(tmp, "etraced.yaml"), "w") as f:
            f.write("model: model.yaml\nclock: lockstep\nendpoints:\n")
            for k in ("input", "output", "control", "stats"):
                f.write("  %s: ipc://%s/%s\n" % (k, tmp, k))
        self.proc = None

    def start(self, ctl):
        log = open(os.path.join(self.tmp, "daemon.log"), "a")
        self.proc = subprocess.Popen([self.exe, "--config", "etraced.yaml"], cwd=self.tmp,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(ctl + ["status"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("etraced did not answer")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def main():
    build = ros2_common.build_dir()
    failed, passed = [], []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        (passed if ok else failed).append(what)

    with ros2_common.tempdir() as tmp:
        env = ros2_common.loopback_env(tmp, 61)
        env["XDG_RUNTIME_DIR"] = tmp
        env["XDG_STATE_HOME"] = tmp
        os.environ.update(env)  # rclpy reads the Fast DDS profile and domain from here
        ctl = [os.path.join(build, "etracectl"), "--control", "ipc://%s/control" % tmp,
               "--timeout", "2000"]
        daemon = Daemon(os.path.abspath(os.path.join(build, "etraced")), tmp, env)
        daemon.start(ctl)
        mpath = os.path.join(tmp, "map.yaml")
        with open(mpath, "w") as f:
            f.write(MAPPING % {"dir": tmp})
        bridge = subprocess.Popen([os.path.join(build, "etrace-ros2"), mpath], env=env,
                                  stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "bridge.log"), "w"),
                                  text=True)
        import rclpy
        from geometry_msgs.msg import Twist
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray
        from rosbags.typesys import Stores, get_typestore

        rclpy.init()
        node = Node("etrace_ros2_live_test")
        got = {"cmd": [], "cmd_vel": [], "joint_cmd": []}
        # Deep reliable readers, as the bridge's writers (depth 2000): a node slowed by a
        # busy machine still gets every output, so the test can count them exactly.
        from rclpy.qos import QoSProfile
        deep = QoSProfile(depth=2000)
        node.create_subscription(Float32MultiArray, "/cmd",
                                 lambda m: got["cmd"].append((time.time_ns(), list(m.data))), deep)
        node.create_subscription(Twist, "/cmd_vel",
                                 lambda m: got["cmd_vel"].append((m.linear.x, m.angular.z)), deep)
        node.create_subscription(
            JointState, "/joint_cmd",
            lambda m: got["joint_cmd"].append((time.time_ns(), m.header.stamp.sec * 10**9 +
                                               m.header.stamp.nanosec, list(m.name),
                                               list(m.effort), len(m.position))), deep)
        pub_js = node.create_publisher(JointState, "/joint_states", 10)
        pub_t = node.create_publisher(Float32MultiArray, "/teacher", 10)

        def spin_for(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.005)

        # Discovery both ways: the bridge's writers seen by rclpy, and our writers matched.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            spin_for(0.1)
            if (node.get_publishers_info_by_topic("/cmd") and
                    node.get_publishers_info_by_topic("/cmd_vel") and
                    pub_js.get_subscription_count() > 0 and pub_t.get_subscription_count() > 0):
                break
        ts = get_typestore(Stores.ROS2_JAZZY)
        for topic, typ in (("/cmd", "std_msgs/msg/Float32MultiArray"),
                           ("/cmd_vel", "geometry_msgs/msg/Twist"),
                           ("/joint_cmd", "sensor_msgs/msg/JointState")):
            infos = node.get_publishers_info_by_topic(topic)
            types = [i.topic_type for i in infos]
            check(types == [typ], "%s publisher type as rclpy reports it: %s" % (topic, types))
            hashes = [str(getattr(i, "topic_type_hash", "")) for i in infos]
            want = ts.hash_rihs01(typ)
            check(all(want in h for h in hashes) and hashes,
                  "%s type hash %s (rclpy: %s)" % (topic, want, hashes))
        infos = node.get_subscriptions_info_by_topic("/joint_states")
        check([i.topic_type for i in infos] == ["sensor_msgs/msg/JointState"],
              "/joint_states subscriber type: %s" % [i.topic_type for i in infos])

        # Smooth joint trajectories (four incommensurate frequencies), as a robot's are: a
        # target that reaches the bridge just after its JointState (the two topics are not
        # ordered on the wire) then teaches the next Step almost the same thing.
        clock = [0]

        def trajectory():
            t = clock[0] / RATE_HZ
            clock[0] += 1
            return np.array([np.sin(1.3 * t), np.cos(2.1 * t), np.sin(3.7 * t + 1.0),
                             np.cos(0.9 * t + 2.0)], dtype=np.float32)
        sent_t = []
        sent_x = {}  # header stamp (ns) -> the input vector x of that JointState
        bad_sent = {"missing_joint": 0, "wrong_length": 0}

        def publish_round(n, phase_errors):
            period = 1.0 / RATE_HZ
            start = time.monotonic()
            for k in range(n):
                x = trajectory()
                t = Float32MultiArray()
                t.data = [float(v) for v in teacher(x)]
                pub_t.publish(t)
                spin_for(0.002)  # the teacher's target first, then the sensor message
                js = JointState()
                js.header.stamp = node.get_clock().now().to_msg()
                sent_x[js.header.stamp.sec * 10**9 + js.header.stamp.nanosec] = x
                # elbow listed first: the bridge picks joints by name, not position
                js.name = ["elbow", "shoulder", "wrist"]
                js.position = [float(x[1]), float(x[0]), 9.0]
                js.velocity = [float(x[3]), float(x[2]), 9.0]
                pub_js.publish(js)
                sent_t.append(x)
                if phase_errors and (k + 1) % BAD_EVERY == 0:
                    bad = JointState()
                    if (k // BAD_EVERY) % 2:
                        bad.name = ["shoulder", "knee"]
                        bad.position = [1.0, 2.0]
                        bad.velocity = [1.0, 2.0]
                        bad_sent["missing_joint"] += 1
                    else:
                        bad.name = ["shoulder", "elbow"]
                        bad.position = [1.0]
                        bad.velocity = [1.0, 2.0]
                        bad_sent["wrong_length"] += 1
                    pub_js.publish(bad)
                next_t = start + (k + 1) * period
                while time.monotonic() < next_t:
                    rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))

        def settle():
            """Spins until no output has arrived for 2 s (bounded): on a busy machine the
            bridge and the node may still be working through a backlog."""
            end = time.monotonic() + 120
            last, quiet_since = -1, time.monotonic()
            while time.monotonic() < end:
                spin_for(0.1)
                n = len(got["cmd"]) + len(got["cmd_vel"]) + len(got["joint_cmd"])
                if n != last:
                    last, quiet_since = n, time.monotonic()
                elif time.monotonic() - quiet_since > 2.0:
                    return

        publish_round(N_GOOD, True)
        settle()
        n_phase1 = len(got["cmd"])

        # The daemon restarts: the bridge counts the Steps that fail (each waits out the
        # mapping's 300 ms timeout; the daemon stays away for 2 s) and carries on.
        daemon.stop()
        for _ in range(20):
            publish_round(1, False)
            spin_for(0.1)
        daemon.start(ctl)
        # A publisher that vanishes and comes back.
        node.destroy_publisher(pub_js)
        spin_for(0.5)
        pub_js = node.create_publisher(JointState, "/joint_states", 10)
        deadline = time.monotonic() + 20
        while pub_js.get_subscription_count() == 0 and time.monotonic() < deadline:
            spin_for(0.1)
        spin_for(1.0)
        publish_round(200, False)
        settle()
        n_after = len(got["cmd"]) - n_phase1

        bridge.send_signal(signal.SIGINT)
        out, _ = bridge.communicate(timeout=20)
        report = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        by_topic = {r["topic"]: r for r in report if "topic" in r}
        totals = [r for r in report if "steps" in r][0]
        js = by_topic["/joint_states"]
        node.destroy_node()
        rclpy.shutdown()
        daemon.stop()

        print("bridge: %s" % json.dumps(js))
        print("bridge: %s" % json.dumps(totals))
        check(bridge.returncode == 0, "bridge exit status 0 (%d)" % bridge.returncode)
        check(js["received"] >= 0.95 * (N_GOOD + 220),
              "JointStates received by the bridge: %d of %d good + %d bad sent"
              % (js["received"], N_GOOD + 220, sum(bad_sent.values())))
        rej = js["rejected"]
        check(0 < rej["missing_joint"] <= bad_sent["missing_joint"] and
              0 < rej["wrong_length"] <= bad_sent["wrong_length"],
              "bad JointStates counted: missing_joint %d (sent %d), wrong_length %d (sent %d)"
              % (rej["missing_joint"], bad_sent["missing_joint"], rej["wrong_length"],
                 bad_sent["wrong_length"]))
        check(rej["daemon"] >= 1, "Steps refused while the daemon was down: %d" % rej["daemon"])
        check(js["received"] == js["forwarded"] + sum(rej.values()),
              "received = forwarded + rejected (%d = %d + %d)"
              % (js["received"], js["forwarded"], sum(rej.values())))
        for name in ("/cmd", "/cmd_vel", "/joint_cmd"):
            check(by_topic[name]["published"] == js["forwarded"],
                  "%s: one message per forwarded JointState (%d, %d)"
                  % (name, by_topic[name]["published"], js["forwarded"]))
        check(len(got["cmd"]) == by_topic["/cmd"]["published"] and
              len(got["cmd_vel"]) == by_topic["/cmd_vel"]["published"] and
              len(got["joint_cmd"]) == by_topic["/joint_cmd"]["published"],
              "rclpy received every output: cmd %d, cmd_vel %d, joint_cmd %d"
              % (len(got["cmd"]), len(got["cmd_vel"]), len(got["joint_cmd"])))
        check(n_after >= 150, "outputs after the daemon restart and the new publisher: %d"
              % n_after)
        same = all(abs(a[1][0] - b[0]) == 0 and abs(a[1][1] - b[1]) == 0 and
                   c[2] == ["shoulder", "elbow"] and c[3] == [a[1][0], a[1][1]] and c[4] == 0
                   for a, b, c in zip(got["cmd"], got["cmd_vel"], got["joint_cmd"]))
        check(same, "Twist (linear.x, angular.z) and JointState efforts equal the array values")
        # Learning: each JointState command carries the stamp of the sensor message it
        # answers, which pairs every output with its input (a lost sensor message leaves
        # no gap in the pairing); the error against the teacher must fall far below that
        # of a zero output (the untrained start).
        pairs = [(sent_x[stamp], eff) for _, stamp, _, eff, _ in got["joint_cmd"][:n_phase1]
                 if stamp in sent_x]
        xs = np.array([p[0] for p in pairs], dtype=np.float64)
        outs = np.array([p[1] for p in pairs], dtype=np.float64)
        tgt = np.array([teacher(x) for x in xs], dtype=np.float64)
        err = np.mean((outs - tgt) ** 2, axis=1)
        zero = float(np.mean(tgt[-100:] ** 2))
        last = float(err[-100:].mean())
        check(len(pairs) > 300 and last < 0.1 * zero,
              "the daemon learns through the bridge: mse of the last 100 outputs %.4g, "
              "of a zero output %.4g (%d outputs paired by stamp)" % (last, zero, len(pairs)))
        lat = np.array([(r - s) / 1e6 for r, s, *_ in got["joint_cmd"][:n_phase1] if s],
                       dtype=np.float64)
        if len(lat):
            print("messages: rclpy -> bridge %d JointState (+ %d targets), bridge -> rclpy %d "
                  "Float32MultiArray, %d Twist, %d JointState; latency sensor stamp -> "
                  "command received: p50 %.3f ms, p99 %.3f ms"
                  % (js["received"], by_topic["/teacher"]["received"], len(got["cmd"]),
                     len(got["cmd_vel"]), len(got["joint_cmd"]), np.percentile(lat, 50),
                     np.percentile(lat, 99)))
        check(len(lat) > 0 and math.isfinite(float(np.percentile(lat, 99))),
              "latency measured from the JointState stamps the commands carry")
    print("ros2-live: %d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
