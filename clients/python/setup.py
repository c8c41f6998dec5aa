"""Builds the etrace package with its generated wire module: build_py writes
etrace/etrace_pb2.py into the build tree with protoc, from ../../proto/etrace.proto (or
takes $ETRACE_PB2_DIR/etrace_pb2.py, the copy `make` generated, when that is set). The
metadata is in pyproject.toml."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "etrace.proto"))


class BuildPyWithProto(build_py):
    def run(self):
        super().run()
        out = os.path.join(self.build_lib, "etrace")
        os.makedirs(out, exist_ok=True)
        given = os.environ.get("ETRACE_PB2_DIR")
        if given:
            shutil.copy(os.path.join(given, "etrace_pb2.py"), out)
            return
        if not os.path.exists(PROTO):
            raise SystemExit("setup.py: %s not found: build from a checkout of etraced" % PROTO)
        protoc = shutil.which("protoc")
        if protoc is None:
            raise SystemExit("setup.py: protoc not found (Debian: apt-get install "
                             "protobuf-compiler)")
        subprocess.check_call([protoc, "--proto_path=" + os.path.dirname(PROTO),
                               "--python_out=" + out, PROTO])


setup(cmdclass={"build_py": BuildPyWithProto})
