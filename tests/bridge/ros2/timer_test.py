"""etrace-ros2 with a timer-clock etraced: an rclpy node publishes JointState at 200 Hz for
2 s and a reward stream; the bridge pushes frames and rewards on the input socket and
publishes every Output the daemon's ticks send (200 ticks/s) as Float32MultiArray.
Asserted: the daemon accepted the frames the bridge forwarded (its Stats), rclpy received
outputs at the tick rate with increasing tick-carried values, and the bridge's counters."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as ros2_common  # noqa: E402

MODEL = """name: ros2-timer
dt: 5.0e-3
inputs:
  - {name: joints, size: 2}
cells:
  - {name: out, model: linear, size: 2}
projections:
  - {name: w, from: joints, to: out, weight: {init: constant, value: 0.5}}
readouts:
  - {name: action, cell: out}
"""

MAPPING = """daemon: {control: "ipc://%(dir)s/control", input: "ipc://%(dir)s/input", output: "ipc://%(dir)s/output"}
report_s: 0
topics:
  - {topic: /joint_states, type: sensor_msgs/msg/JointState, input: joints, joints: [j0, j1],
     depth: 100}
  - {topic: /cmd, type: std_msgs/msg/Float32MultiArray, publish: action, depth: 1000}
"""


def main():
    build = ros2_common.build_dir()
    failed, passed = [], []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        (passed if ok else failed).append(what)

    with ros2_common.tempdir() as tmp:
        env = ros2_common.loopback_env(tmp, 62)
        env["XDG_RUNTIME_DIR"] = tmp
        env["XDG_STATE_HOME"] = tmp
        os.environ.update(env)
        with open(os.path.join(tmp, "model.yaml"), "w") as f:
            f.write(MODEL)
        with open(os.path.join(tmp, "etraced.yaml"), "w") as f:
            f.write("model: model.yaml\nclock: timer\nstats_period_ms: 100\nendpoints:\n")
            for k in ("input", "output", "control", "stats"):
                f.write("  %s: ipc://%s/%s\n" % (k, tmp, k))
        ctl = [os.path.join(build, "etracectl"), "--control", "ipc://%s/control" % tmp,
               "--timeout", "2000"]
        log = open(os.path.join(tmp, "daemon.log"), "w")
        daemon = subprocess.Popen([os.path.abspath(os.path.join(build, "etraced")), "--config",
                                   "etraced.yaml"], cwd=tmp, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while subprocess.run(ctl + ["status"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("etraced did not answer")
            time.sleep(0.05)
        mpath = os.path.join(tmp, "map.yaml")
        with open(mpath, "w") as f:
            f.write(MAPPING % {"dir": tmp})
        bridge = subprocess.Popen([os.path.join(build, "etrace-ros2"), mpath], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        import rclpy
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray

        rclpy.init()
        node = Node("etrace_ros2_timer_test")
        got = []
        node.create_subscription(Float32MultiArray, "/cmd", lambda m: got.append(list(m.data)),
                                 QoSProfile(depth=1000))
        pub = node.create_publisher(JointState, "/joint_states", 10)

        def spin_for(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.005)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (pub.get_subscription_count() and
                                                   node.get_publishers_info_by_topic("/cmd")):
            spin_for(0.1)
        got.clear()
        t0 = time.monotonic()
        for k in range(400):
            js = JointState()
            js.name = ["j1", "j0"]
            js.position = [1.0, float(k)]  # j0 = k: the daemon's output grows with it
            pub.publish(js)
            next_t = t0 + (k + 1) / 200.0
            while time.monotonic() < next_t:
                rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
        elapsed = time.monotonic() - t0
        # The outputs of the ticks after the last frame carry 0.5 * (399 + 1) = 200: wait
        # (bounded) until one reached rclpy, however busy the machine is.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (got and got[-1][0] == 200.0):
            spin_for(0.1)
        def taken():
            """Frames the daemon took from the bridge (those a newer one superseded before a
            tick read them included)."""
            st = json.loads(subprocess.run(ctl + ["--json", "stats"], env=env,
                                           capture_output=True, text=True).stdout)
            for inp in st.get("stats", st).get("inputs", []):
                if inp.get("name") == "joints":
                    return int(inp.get("frames", 0))
            return 0

        # Stats are published every 100 ms: wait (bounded) until they stop changing.
        frames, deadline = taken(), time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = taken()
            if now == frames:
                break
            frames = now
        bridge.send_signal(signal.SIGINT)
        out, _ = bridge.communicate(timeout=20)
        report = {r["topic"]: r for r in map(json.loads, filter(None, out.splitlines()))
                  if "topic" in r}
        node.destroy_node()
        rclpy.shutdown()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        log.close()

        js_rep = report["/joint_states"]
        print("bridge: %s" % json.dumps(js_rep))
        # Best effort in (ROS's sensor-data contract): on a busy machine a few may be lost.
        check(js_rep["forwarded"] >= 300, "JointStates forwarded: %d of 400" % js_rep["forwarded"])
        check(frames == js_rep["forwarded"],
              "frames the daemon took %d, the bridge forwarded %d"
              % (frames, js_rep["forwarded"]))
        check(len(got) >= 100, "outputs received by rclpy: %d (200 ticks/s, %.2f s of frames)"
              % (len(got), elapsed))
        check(got and got[-1][0] == 200.0,
              "outputs follow the frames (0.5 * (j0 + j1) = 200 after the last): %s"
              % (got[-1] if got else None))
        check(report["/cmd"]["published"] >= len(got), "bridge published %d, rclpy got %d"
              % (report["/cmd"]["published"], len(got)))
    print("ros2-timer: %d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
