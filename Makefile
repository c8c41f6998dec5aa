# etraced: one non-recursive Makefile (STYLE §11). Output goes to $(BUILD)/.
# Variables: REAL=float|double  WERROR=0|1  SANITIZE=address,undefined|thread  BUILD=dir
#            PREFIX DESTDIR  V=1 (verbose)  ARCH (default -march=native)

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
# Explicit lists: a file joins the build when its module is ready. The daemon, proto and
# client lists live in daemon.mk.
ENGINE_MODULES := mem err real_env rng npy cell expr model param op_dense op_sparse op_elem \
                  trace loss optim learn bptt engine engine_state report
ENGINE_SRC  := $(wildcard $(patsubst %,daemon/engine/%.c,$(ENGINE_MODULES)))
ENGINE_TEST_NAMES := mem npy rng param cell expr model engine op optim fused state oracle learn signal
DAEMON_SRC  :=
PROTO       :=
CLIENT_SRC  :=
CTL_SRC     :=
DAEMON_TEST_NAMES :=
INTEG_TEST_NAMES  :=
INTEG_SUPPORT_SRC :=
INTEG_SCRIPTS     :=
LONG_SUITES       :=
-include daemon.mk
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
endif

LIBENGINE   := $(BUILD)/libengine.a
LIBDAEMON   := $(BUILD)/libdaemon.a
ETRACED     := $(BUILD)/etraced
ifneq ($(CLIENT_SRC),)
LIBCLIENT   := $(BUILD)/libetrace-client.a $(BUILD)/libetrace-client.so
ETRACECTL   := $(BUILD)/etracectl
endif

have = $(foreach n,$(2),$(if $(wildcard tests/$(1)/$(n)_test.c),$(BUILD)/tests/$(1)/$(n)_test))
ENGINE_TESTS := $(call have,engine,$(ENGINE_TEST_NAMES))
DAEMON_TESTS := $(call have,daemon,$(DAEMON_TEST_NAMES))
INTEG_TESTS  := $(call have,integration,$(INTEG_TEST_NAMES))
BENCHES      := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard tests/bench/*_bench.c)))
FUZZ_NAMES   := model npy
FUZZ_DRIVERS := $(patsubst %,$(BUILD)/fuzz/%_fuzz,$(FUZZ_NAMES))
FUZZ_SECONDS ?= 60

# The Python client's wire module (clients/python/etrace), generated like the C one.
ifneq ($(PROTO),)
PY_PB2      := $(BUILD)/python/etrace_pb2.py
endif

BINS := $(ETRACED) $(LIBCLIENT) $(ETRACECTL) $(PY_PB2)

.PHONY: engine-tests test-sanitized
# Keep the objects of test programs (they are intermediate files of pattern rules).
.SECONDARY:
.PHONY: all deps run test test-long test-engine test-daemon test-asan bench bench-deps plots \
        install uninstall clean format format-check tidy asan ubsan tsan fuzz coverage \
        check-layers help reference tests

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

$(PROTO_C) $(PROTO_H): $(PROTO)
	@mkdir -p $(BUILD)/gen
	@$(if $(Q),echo "  PROTOC  $<")
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(PY_PB2): $(PROTO)
	@mkdir -p $(BUILD)/python
	@$(if $(Q),echo "  PROTOC  $< (python)")
	$(Q)protoc --proto_path=proto --python_out=$(BUILD)/python $<

$(LIBENGINE): $(ENGINE_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBDAEMON): $(DAEMON_OBJ) $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(ETRACED): $(call obj,daemon/main.c) $(LIBDAEMON) $(LIBENGINE)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(DAEMON_LIBS)

$(BUILD)/libetrace-client.a: $(call obj,$(CLIENT_SRC)) $(PROTO_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libetrace-client.so: $(call obj,$(CLIENT_SRC)) $(PROTO_OBJ)
	$(Q)$(CC) $(LDFLAGS_ALL) -shared -o $@ $^ -lzmq -lprotobuf-c

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

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(call obj,tests/bench/benchutil.c) $(SUPPORT_OBJ) $(LIBENGINE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(ENGINE_LIBS)

# ---- the targets of STYLE §11 --------------------------------------------------------
help:
	@echo "make deps        install Debian packages (apt-get) and build everything"
	@echo "make run         the demo: etraced run on models/lif-delta-demo.yaml, then the daemon"
	@echo "make test        build and run every test suite (with timings)"
	@echo "make test-long   the long-running suites"
	@echo "make bench       benchmarks: table on stdout, JSON lines in build/bench/results.jsonl"
	@echo "make bench-deps  install the optional benchmark baselines (python3-torch, OpenBLAS)"
	@echo "make plots       regenerate the examples' plots"
	@echo "make install     install under DESTDIR/PREFIX; make uninstall removes it"
	@echo "make asan|ubsan|tsan   run the tests under a sanitizer"
	@echo "make fuzz        run the libFuzzer targets (clang)"
	@echo "make coverage    line coverage of the tests (gcov)"
	@echo "make format|format-check|tidy   clang-format and clang-tidy"
	@echo "make check-layers   prove the engine includes no libuv/ZeroMQ/protobuf-c and reads no clock"
	@echo "make clean       remove build/"
	@echo "variables: REAL=float|double WERROR=0 SANITIZE=... BUILD=dir PREFIX DESTDIR V=1"

DEB_PACKAGES := build-essential pkg-config libyaml-dev libcmocka-dev libuv1-dev libzmq3-dev \
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libcyaml-dev libsystemd-dev \
    python3 python3-numpy python3-zmq python3-protobuf clang libclang-rt-14-dev tmux \
    python3-prometheus-client python3-matplotlib systemd

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PACKAGES)
	$(MAKE) all tests

tests: $(ENGINE_TESTS) $(DAEMON_TESTS) $(INTEG_TESTS) $(FUZZ_DRIVERS)

# The clients (issue 7): the Python client and the exporter against real daemons, etracectl
# top in tmux, and each example's shortened lockstep run against its threshold.
CLIENT_TEST = ETRACE_BUILD=$(BUILD) $(PYTHON) tests/clients/$(1)_test.py $(2)
CLIENT_SUITES := 'clients/python:$(call CLIENT_TEST,client)' \
    'clients/top-tmux:$(call CLIENT_TEST,top)' \
    'clients/exporter:$(call CLIENT_TEST,exporter)' \
    'examples/robot:$(call CLIENT_TEST,examples,RobotTest)' \
    'examples/agent:$(call CLIENT_TEST,examples,AgentTest)' \
    'examples/drift:$(call CLIENT_TEST,examples,DriftTest)'

# The examples' PNGs (clients/examples/plots/), from full deterministic lockstep runs.
PLOTS_DIR := clients/examples/plots
plots: all
	$(Q)for ex in robot agent drift; do echo "== $$ex"; $(PYTHON) clients/examples/$$ex.py \
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
	    $(BUILD)/asan/etraced
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
	    $(BAD_SUITES) $(REF_SUITE) $(ALIGN_SUITE) 'offline-cli:$(PYTHON) tests/support/offline-cli.py $(BUILD)/etraced' \
	    $(CLIENT_SUITES) \
	    'install:sh tests/support/install-check.sh $(BUILD)' \
	    'systemd-verify:sh tests/support/systemd-verify.sh $(BUILD)' \
	    "check-layers:sh tests/support/check-layers.sh $(BUILD)"

engine-tests: $(ENGINE_TESTS)

# The long runs: the examples' full lockstep runs (their thresholds), the SPSC stress and
# the daemon's unit tests under ThreadSanitizer, and 60 s of fuzzing per target.
LONG_SUITES += $(foreach ex,robot agent drift,'examples-full/$(ex):$(PYTHON) clients/examples/$(ex).py --clock lockstep --build $(BUILD) --out $(BUILD)/examples-full') \
    'tsan:$(MAKE) --no-print-directory tsan' 'fuzz:$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60'
test-long: all tests
	$(Q)SUITE_LOG_DIR=$(BUILD)/test-logs sh tests/support/run-suites.sh $(LONG_SUITES)

bench: all $(BENCHES)
	$(Q)mkdir -p $(BUILD)/bench
	$(Q)for b in $(BENCHES); do echo "== $$b"; $$b $(BUILD)/bench/results.jsonl || exit 1; done

bench-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch libopenblas0-openmp

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
fuzz:
	$(Q)$(MAKE) --no-print-directory CC=clang BUILD=$(BUILD)/fz SANITIZE=fuzzer-no-link,address,undefined \
	    $(patsubst %,$(BUILD)/fz/libfuzzer/%_fuzz,$(FUZZ_NAMES))
	$(Q)for n in $(FUZZ_NAMES); do echo "== fuzz $$n ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)/fz/corpus/$$n; \
	    $(BUILD)/fz/libfuzzer/$${n}_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    $(BUILD)/fz/corpus/$$n tests/fuzz/corpus/$$n || exit 1; done
	@echo "new inputs are in $(BUILD)/fz/corpus/ (the committed corpora are only read)"

FORMAT_FILES = $(wildcard daemon/*.[ch] daemon/engine/*.[ch] clients/*.[ch] proto/*.[ch] tests/*/*.[ch])
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
tidy:
	clang-tidy $(ENGINE_SRC) -- -std=c11 -D_GNU_SOURCE -Idaemon/engine

check-layers: $(ENGINE_OBJ)
	$(Q)sh tests/support/check-layers.sh $(BUILD)

# install / uninstall under $(DESTDIR)$(PREFIX): binaries, the client library, its headers
# and pkg-config file, the systemd units (ExecStart pointing at the installed binary), the
# example config, the models and the man pages.
INST := $(DESTDIR)$(PREFIX)
INSTALLED := $(INST)/bin/etraced $(INST)/bin/etracectl $(INST)/lib/libetrace-client.a \
    $(INST)/lib/libetrace-client.so $(INST)/include/etrace/etrace_client.h \
    $(INST)/include/etrace/etrace.pb-c.h $(INST)/lib/pkgconfig/etrace-client.pc \
    $(INST)/lib/systemd/system/etraced.service $(INST)/lib/systemd/system/etraced@.service \
    $(INST)/share/etraced/etraced.yaml $(INST)/share/man/man8/etraced.8 \
    $(INST)/share/man/man1/etracectl.1
install: all
	install -d $(INST)/bin $(INST)/lib/pkgconfig $(INST)/include/etrace \
	    $(INST)/lib/systemd/system $(INST)/share/etraced/models $(INST)/share/man/man1 \
	    $(INST)/share/man/man8
	install -m 755 $(ETRACED) $(ETRACECTL) $(INST)/bin/
	install -m 644 $(BUILD)/libetrace-client.a $(INST)/lib/
	install -m 755 $(BUILD)/libetrace-client.so $(INST)/lib/
	install -m 644 clients/etrace_client.h proto/etrace_recording.h $(PROTO_H) $(INST)/include/etrace/
	sed 's|@PREFIX@|$(PREFIX)|' systemd/etraced.pc.in > $(INST)/lib/pkgconfig/etrace-client.pc
	for u in etraced.service etraced@.service; do \
	    sed 's|/usr/local/bin/etraced|$(PREFIX)/bin/etraced|' systemd/$$u > $(INST)/lib/systemd/system/$$u; done
	install -m 644 systemd/etraced.yaml $(INST)/share/etraced/
	install -m 644 models/*.yaml models/*.npy $(INST)/share/etraced/models/
	install -m 644 man/etraced.8 $(INST)/share/man/man8/
	install -m 644 man/etracectl.1 $(INST)/share/man/man1/
uninstall:
	rm -f $(INSTALLED)
	rm -rf $(INST)/share/etraced $(INST)/include/etrace

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
