/* Tests of daemon/config.c: defaults, every row read back, and bad configs whose errors
 * name the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static int
load(struct config *c, const char *text, char *err, size_t len)
{
    return config_load_text(c, text, strlen(text), "t.yaml", err, len);
}

static void
test_config_defaults_match_table(void **state)
{
    struct config c;
    int n;
    const struct config_row *rows = config_rows(&n);
    (void)state;
    assert_int_equal(config_init_defaults(&c, "m.yaml"), 0);
    assert_string_equal(c.model, "m.yaml");
    assert_int_equal(c.clock, CONFIG_CLOCK_TIMER);
    assert_int_equal(c.period_us, 0);
    assert_int_equal(c.stats_period_ms, 1000);
    assert_int_equal(c.max_msg_bytes, 512LL << 20);
    assert_int_equal(c.limit_input_bytes, 1 << 20);
    assert_int_equal(c.limit_control_bytes, 256 << 20);
    assert_int_equal(c.limit_connections, 256);
    assert_int_equal(c.limit_subscribers, 64);
    assert_int_equal(c.limit_subscriber_queue, 1000);
    assert_int_equal(c.checkpoint_keep, 3);
    assert_int_equal(c.rt_cpu, -1);
    assert_int_equal(c.snapshot_slice_bytes, 1 << 20);
    assert_int_equal(c.publish_every_us, 1000);
    assert_int_equal(c.engine_threads, 1);
    assert_null(c.endpoints[CONFIG_EP_INPUT]);
    assert_true(n >= 21);
    for (int i = 0; i < n; i++)
        assert_non_null(rows[i].doc);
    config_fini(&c);
}

static void
test_config_empty_file_is_defaults(void **state)
{
    struct config c;
    char err[256] = "";
    (void)state;
    assert_int_equal(load(&c, "", err, sizeof(err)), 0);
    assert_int_equal(c.stats_period_ms, 1000);
    assert_int_equal(c.n_inputs, 0);
    config_fini(&c);
}

static const char full[] = "model: models/default.yaml\n"
                           "clock: lockstep\n"
                           "period_us: 500\n"
                           "stats_period_ms: 250\n"
                           "endpoints:\n"
                           "  input: ipc:///tmp/x/in\n"
                           "  output: tcp://127.0.0.1:5001\n"
                           "  control: ipc:///tmp/x/ctl\n"
                           "  stats: ipc:///tmp/x/st\n"
                           "max_msg_bytes: 1000000000\n"
                           "limits: {input_bytes: 2048, control_bytes: 100000}\n"
                           "checkpoint:\n"
                           "  dir: /tmp/ck\n"
                           "  every_s: 60\n"
                           "  keep: 5\n"
                           "  resume: true\n"
                           "snapshot_slice_bytes: 65536\n"
                           "realtime: {priority: 50, cpu: 1, mlockall: yes}\n"
                           "curve:\n"
                           "  server_secret_file: /etc/etraced/key\n"
                           "  allow: [abc, def]\n"
                           "security: {allow_plaintext_tcp: true, socket_group: robot}\n"
                           "outputs: {publish_every_us: 250}\n"
                           "engine: {threads: 2}\n"
                           "inputs:\n"
                           "  sensors: {max_age_ms: 20, on_stale: zero}\n"
                           "  cam: {max_age_ms: 5}\n";

static void
test_config_every_row_read(void **state)
{
    struct config c;
    char err[256] = "";
    (void)state;
    assert_int_equal(load(&c, full, err, sizeof(err)), 0);
    assert_string_equal(c.model, "models/default.yaml");
    assert_int_equal(c.clock, CONFIG_CLOCK_LOCKSTEP);
    assert_int_equal(c.period_us, 500);
    assert_int_equal(c.stats_period_ms, 250);
    assert_string_equal(c.endpoints[CONFIG_EP_INPUT], "ipc:///tmp/x/in");
    assert_string_equal(c.endpoints[CONFIG_EP_OUTPUT], "tcp://127.0.0.1:5001");
    assert_string_equal(c.endpoints[CONFIG_EP_CONTROL], "ipc:///tmp/x/ctl");
    assert_string_equal(c.endpoints[CONFIG_EP_STATS], "ipc:///tmp/x/st");
    assert_int_equal(c.max_msg_bytes, 1000000000);
    assert_int_equal(c.limit_input_bytes, 2048);
    assert_int_equal(c.limit_control_bytes, 100000);
    assert_string_equal(c.checkpoint_dir, "/tmp/ck");
    assert_int_equal(c.checkpoint_every_s, 60);
    assert_int_equal(c.checkpoint_keep, 5);
    assert_int_equal(c.checkpoint_resume, 1);
    assert_int_equal(c.snapshot_slice_bytes, 65536);
    assert_int_equal(c.rt_priority, 50);
    assert_int_equal(c.rt_cpu, 1);
    assert_int_equal(c.rt_mlockall, 1);
    assert_string_equal(c.curve_server_secret_file, "/etc/etraced/key");
    assert_int_equal(c.n_curve_allow, 2);
    assert_string_equal(c.curve_allow[1], "def");
    assert_int_equal(c.security_allow_plaintext_tcp, 1);
    assert_string_equal(c.security_socket_group, "robot");
    assert_int_equal(c.publish_every_us, 250);
    assert_int_equal(c.engine_threads, 2);
    assert_int_equal(c.n_inputs, 2);
    const struct config_input *in = config_find_input(&c, "sensors");
    assert_non_null(in);
    assert_int_equal(in->max_age_ms, 20);
    assert_int_equal(in->on_stale, CONFIG_ON_STALE_ZERO);
    in = config_find_input(&c, "cam");
    assert_int_equal(in->on_stale, CONFIG_ON_STALE_HOLD);
    assert_null(config_find_input(&c, "nope"));
    config_fini(&c);
}

struct bad {
    const char *text;
    const char *expect; /* a substring of the error */
};

static void
test_config_bad_names_line(void **state)
{
    static const struct bad bad[] = {
        {"clock: timer\nfoo: 1\n", "t.yaml:2: foo: unknown setting"},
        {"limits:\n  input_bytes: 100\n  outpt: 3\n", "t.yaml:3: limits.outpt: unknown"},
        {"period_us: 1.5\n", "t.yaml:1: period_us: expected an integer"},
        {"period_us: fast\n", "t.yaml:1: period_us: expected an integer"},
        {"\n\nperiod_us: 5\n", "t.yaml:3: period_us: 5 is out of bounds [10, 10000000]"},
        {"stats_period_ms: [1, 2]\n", "t.yaml:1: stats_period_ms: expected an integer"},
        {"clock: sometimes\n", "t.yaml:1: clock: expected one of timer | lockstep"},
        {"checkpoint: {resume: maybe}\n", "t.yaml:1: checkpoint.resume: expected true or"},
        {"limits: 5\n", "t.yaml:1: limits: expected a mapping"},
        {"curve: {allow: abc}\n", "t.yaml:1: curve.allow: expected a list"},
        {"realtime:\n  priority: 100\n", "t.yaml:2: realtime.priority: 100 is out of bounds"},
        {"max_msg_bytes: 1000\n", "t.yaml:1: max_msg_bytes: 1000 is out of bounds"},
        {"max_msg_bytes: 8192\n", "max_msg_bytes: 8192 is below"},
        {"inputs:\n  s: {max_age: 3}\n", "t.yaml:2: inputs.s.max_age: unknown setting"},
        {"inputs:\n  s: {on_stale: drop}\n", "t.yaml:2: inputs.s.on_stale: expected hold"},
        {"inputs:\n  s: {max_age_ms: -1}\n", "t.yaml:2: inputs.s.max_age_ms: expected"},
        {"inputs: [a]\n", "t.yaml:1: inputs: expected a mapping"},
        {"clock: timer\nclock: lockstep\n", "t.yaml:2: clock: given twice"},
        {"- a\n- b\n", "t.yaml:1: expected a mapping of settings"},
        {"clock: [timer\n", "t.yaml:2:"},
        {"model: \"\"\n", "t.yaml:1: model: expected a non-empty string"},
        {"outputs:\n  publish_every_us: -1\n",
         "t.yaml:2: outputs.publish_every_us: -1 is out of bounds [0, 100000]"},
        {"outputs: {publish_every_us: 100001}\n", "t.yaml:1: outputs.publish_every_us: 100001 is"},
        {"outputs: {publish_every_us: 1ms}\n", "t.yaml:1: outputs.publish_every_us: expected an"},
        {"outputs: 1000\n", "t.yaml:1: outputs: expected a mapping"},
        {"outputs: {every_us: 5}\n", "t.yaml:1: outputs.every_us: unknown setting"},
        {"engine: {threads: 0}\n", "t.yaml:1: engine.threads: 0 is out of bounds [1, 64]"},
        {"engine:\n  threads: 65\n", "t.yaml:2: engine.threads: 65 is out of bounds [1, 64]"},
        {"engine: {threads: two}\n", "t.yaml:1: engine.threads: expected an integer"},
        {"engine: {thread: 2}\n", "t.yaml:1: engine.thread: unknown setting"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config c;
        char err[256] = "";
        int rc = load(&c, bad[i].text, err, sizeof(err));
        if (rc != -1 || !strstr(err, bad[i].expect))
            fail_msg("case %zu: rc %d, error '%s', expected '%s'", i, rc, err, bad[i].expect);
        config_fini(&c);
    }
}

static void
test_config_missing_file(void **state)
{
    struct config c;
    char err[256] = "";
    (void)state;
    assert_int_equal(config_load(&c, "/nonexistent/etraced.yaml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/etraced.yaml"));
    config_fini(&c);
}

/* The config file may be a symlink (as /etc often has); a FIFO is refused at once rather
 * than waited on. */
static void
test_config_fifo_refused_symlink_read(void **state)
{
    struct config c;
    char dir[] = "/tmp/etraced-config-XXXXXX", fifo[64], file[64], link[64], err[256] = "";
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/fifo.yaml", dir);
    snprintf(file, sizeof file, "%s/real.yaml", dir);
    snprintf(link, sizeof link, "%s/link.yaml", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(config_load(&c, fifo, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a regular file"));
    config_fini(&c);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("clock: lockstep\n", f);
    fclose(f);
    assert_int_equal(symlink(file, link), 0);
    assert_int_equal(config_load(&c, link, err, sizeof(err)), 0);
    assert_int_equal(c.clock, CONFIG_CLOCK_LOCKSTEP);
    config_fini(&c);
    unlink(fifo);
    unlink(file);
    unlink(link);
    rmdir(dir);
}

struct seen {
    char names[512];
};

static void
record(void *ctx, const char *name, int reloadable)
{
    struct seen *s = ctx;
    strcat(s->names, name);
    strcat(s->names, reloadable ? "+ " : "- ");
}

static void
test_config_diff_reloadable(void **state)
{
    struct config a, b;
    struct seen s = {""};
    char err[256];
    (void)state;
    assert_int_equal(load(&a, "stats_period_ms: 100\nclock: timer\n", err, sizeof(err)), 0);
    assert_int_equal(load(&b,
                          "stats_period_ms: 200\nclock: lockstep\n"
                          "inputs: {x: {max_age_ms: 3}}\n",
                          err, sizeof(err)),
                     0);
    assert_int_equal(config_diff(&a, &b, record, &s), 3);
    assert_string_equal(s.names, "clock- stats_period_ms+ inputs+ ");
    config_fini(&a);
    config_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_match_table),
        cmocka_unit_test(test_config_empty_file_is_defaults),
        cmocka_unit_test(test_config_every_row_read),
        cmocka_unit_test(test_config_bad_names_line),
        cmocka_unit_test(test_config_missing_file),
        cmocka_unit_test(test_config_fifo_refused_symlink_read),
        cmocka_unit_test(test_config_diff_reloadable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
