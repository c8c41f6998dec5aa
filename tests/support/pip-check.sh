#!/bin/sh
# The Python client's pyproject build, as a virtualenv user runs it: `python3 -m venv
# --system-site-packages V && V/bin/pip install --no-build-isolation clients/python` (no
# index needed: Debian's python3-zmq, python3-protobuf and setuptools satisfy it); the
# venv's etrace and its generated etrace_pb2 import from / and come from the venv. The
# checkout is copied first: pip builds in the source tree. Usage: pip-check.sh
set -e
tmp=$(mktemp -d /tmp/etraced_pip_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/clients"
cp -r proto "$tmp/src/"
cp -r clients/python "$tmp/src/clients/"
/usr/bin/python3 -m venv --system-site-packages "$tmp/V"
env -u ETRACE_PB2_DIR "$tmp/V/bin/pip" install -q --no-index --no-build-isolation "$tmp/src/clients/python"
rm -rf "$tmp/src"
(cd / && env -u ETRACE_PB2_DIR -u PYTHONPATH "$tmp/V/bin/python" -c "
import sys, etrace, etrace_pb2
for m in (etrace, etrace_pb2):
    assert m.__file__.startswith('$tmp/V/'), m.__file__
print('etrace', etrace.__file__, '; etrace_pb2', etrace_pb2.__file__)
print('Status fields:', len(etrace.pb.Status.DESCRIPTOR.fields))")
echo "pip-install: 1 passed, 0 failed"
