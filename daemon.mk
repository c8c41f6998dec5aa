# daemon.mk: the daemon shell, the wire protocol and the C client (issue 5), included by the
# top Makefile. Lists only; the rules are the Makefile's, except the daemon bench's link.
DAEMON_SRC := daemon/main.c daemon/daemon.c daemon/config.c daemon/spsc.c daemon/hist.c \
              daemon/wire.c daemon/ticker.c daemon/endpoint.c daemon/control.c \
              daemon/stats.c daemon/sdnotify.c daemon/log.c daemon/snapshot.c \
              daemon/checkpoint.c daemon/ops.c daemon/curve.c \
              daemon/decode.c daemon/conns.c
PROTO      := proto/etrace.proto
CLIENT_SRC := clients/etrace_client.c
CTL_SRC    := clients/etracectl.c clients/ctl_json.c clients/ctl_top.c
DAEMON_TEST_NAMES := spsc hist config decode conns
INTEG_TEST_NAMES  := daemon learning ops limits
# The integration tests' harness: the real etraced in a temp dir, through the client library.
INTEG_SUPPORT_SRC := tests/support/daemon_run.c

# The daemon bench talks to a running etraced through the client library.
$(BUILD)/bench/daemon_bench: $(BUILD)/obj/tests/bench/daemon_bench.o \
        $(BUILD)/obj/tests/bench/benchutil.o $(BUILD)/libetrace-client.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ -lzmq -lprotobuf-c -lm
