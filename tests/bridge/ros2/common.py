"""Shared by the ROS 2 bridge tests: loopback-only DDS settings for both sides.

Discovery never leaves this machine: Cyclone DDS (the bridge) uses 127.0.0.1 with
multicast off and unicast peers; Fast DDS (the rclpy node) gets an XML profile with a
UDPv4 transport on 127.0.0.1 only and localhost initial peers. Nothing here changes the
ROS node itself: these are the environment variables either DDS reads."""
import os
import tempfile

CYCLONE_XML = """<CycloneDDS><Domain Id="any"><General><Interfaces>
<NetworkInterface address="127.0.0.1"/></Interfaces><AllowMulticast>false</AllowMulticast>
</General><Discovery><ParticipantIndex>auto</ParticipantIndex>
<MaxAutoParticipantIndex>40</MaxAutoParticipantIndex><Peers><Peer address="127.0.0.1"/>
</Peers></Discovery></Domain></CycloneDDS>"""

FASTDDS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<profiles xmlns="http://www.eprosima.com">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>lo_udp</transport_id>
      <type>UDPv4</type>
      <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="loopback" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>lo_udp</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
      <builtin>
        <metatrafficUnicastLocatorList>
          <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
        </metatrafficUnicastLocatorList>
        <initialPeersList>
          <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
        </initialPeersList>
      </builtin>
      <defaultUnicastLocatorList>
        <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
      </defaultUnicastLocatorList>
    </rtps>
  </participant>
</profiles>
"""


def loopback_env(tmp, domain):
    """Environment for both DDS implementations, confined to 127.0.0.1, on `domain`."""
    cyc = os.path.join(tmp, "cyclonedds.xml")
    fast = os.path.join(tmp, "fastdds.xml")
    with open(cyc, "w") as f:
        f.write(CYCLONE_XML)
    with open(fast, "w") as f:
        f.write(FASTDDS_XML)
    env = dict(os.environ)
    env["CYCLONEDDS_URI"] = "file://" + cyc
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = fast
    env["FASTRTPS_DEFAULT_PROFILES_FILE"] = fast
    env["ROS_DOMAIN_ID"] = str(domain)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


def build_dir():
    return os.environ.get("ETRACE_BUILD", "build")


def tempdir():
    return tempfile.TemporaryDirectory(prefix="etrace-ros2-")
