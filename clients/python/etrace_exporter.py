#!/usr/bin/python3
"""etrace_exporter: serves the Stats of one etraced as Prometheus metrics (Debian's
python3-prometheus-client), on 127.0.0.1 by default. Client layer.

    /usr/bin/python3 clients/python/etrace_exporter.py [--port 29464] [--addr 127.0.0.1]
        [--stats EP | --config FILE] [--build DIR]

It subscribes to the stats socket and answers every scrape from the newest Stats:
counters since the daemon started (`*_total`, never decreasing: a swap or restore does
not set them back), the running model's own counts as gauges (`etraced_model_*`), gauges
for the last stats period, the tick duration and lateness as summaries in seconds
(quantiles over the last stats period; _count and _sum since start), `etraced_build_info`
and `etraced_model_info`, and one series per projection, input, readout, socket and cell,
labelled by name. `etraced_up` is 1 while Stats arrive (within 3 stats periods, at least
3 s). The default port, 29464, is outside 9100-9999, the range of the Prometheus
exporters' port list (9464 is OpenTelemetry's), and below Linux's ephemeral ports."""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

QUANTILES = (("0.5", "p50_ns"), ("0.99", "p99_ns"), ("0.999", "p999_ns"))
# The reasons each receiving socket can reject for (the PUB sockets receive nothing).
SOCKET_REASONS = {
    "input": ("undecodable", "wrong_size", "unknown_name", "non_finite", "oversized",
              "over_ring"),
    "control": ("undecodable", "wrong_size", "unknown_name", "non_finite", "oversized",
                "unknown_command", "bad_argument"),
}
DEFAULT_PORT = 29464


class StatsCollector:
    """A prometheus_client collector over the newest Stats, fed by a thread that owns
    the SUB socket."""

    def __init__(self, stats_ep, curve_server=None, curve_keys=None):
        self.stats_ep = stats_ep
        self.curve = (curve_server, curve_keys)  # CURVE on a tcp stats endpoint
        self.lock = threading.Lock()
        self.last = None       # the newest Stats
        self.last_rx = 0.0     # time.monotonic() of its arrival
        self.n_received = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import etrace
        with etrace.Client(stats=self.stats_ep, curve_server=self.curve[0],
                           curve_keys=self.curve[1]) as c:
            while not self.stop.is_set():
                try:
                    for s in c.stats_stream(timeout_ms=500):
                        with self.lock:
                            self.last, self.last_rx = s, time.monotonic()
                            self.n_received += 1
                        if self.stop.is_set():
                            return
                except etrace.EtraceTimeout:
                    continue

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, SummaryMetricFamily)

        with self.lock:
            s, rx = self.last, self.last_rx
        period_s = s.interval_ns / 1e9 if s is not None and s.interval_ns > 0 else 1.0
        up = s is not None and time.monotonic() - rx <= max(3.0, 3 * period_s)
        yield GaugeMetricFamily("etraced_up", "1 while the daemon publishes Stats", value=int(up))
        if s is None:
            return

        def counter(name, doc, value, labels=None, label_values=None):
            m = CounterMetricFamily(name, doc, labels=labels)
            m.add_metric(label_values or [], value)
            return m

        def gauge(name, doc, value):
            return GaugeMetricFamily(name, doc, value=value)

        yield InfoMetricFamily("etraced_build", "The daemon's version",
                               value={"version": s.version or "unknown"})
        model = [s.model_name, "%016x" % s.model_hash]
        info = GaugeMetricFamily("etraced_model_info", "The running model (1), its name and "
                                 "hash (FNV-1a 64, hex as etracectl prints it)",
                                 labels=["model", "hash"])
        info.add_metric(model, 1)
        yield info
        # Since the daemon started: never decrease, whatever is swapped in or restored.
        yield counter("etraced_ticks_total", "Ticks run since the daemon started",
                      s.ticks_total)
        yield counter("etraced_optimizer_steps_total",
                      "Optimizer steps applied since the daemon started", s.optimizer_steps_total)
        yield counter("etraced_updates_refused_total",
                      "Optimizer steps refused as non-finite since the daemon started",
                      s.updates_refused_total)
        yield counter("etraced_state_resets_total",
                      "Cells reset after a non-finite state since the daemon started",
                      s.state_resets_total)
        yield counter("etraced_process_cpu_seconds_total", "The daemon's CPU time (user and "
                      "system, every thread)", s.cpu_seconds)
        yield gauge("etraced_process_resident_memory_bytes", "The daemon's resident memory",
                    s.rss_bytes)
        yield gauge("etraced_uptime_seconds", "Time since the daemon started", s.uptime_ns / 1e9)
        # The running model's own counts: a restore sets them back, a load starts them again.
        yield gauge("etraced_model_tick", "The running model's tick count (a restore sets it "
                    "back)", s.tick)
        yield gauge("etraced_model_optimizer_steps",
                    "The running model's optimizer steps (a load without keep_weights starts "
                    "them at 0)", s.optimizer_steps)
        yield gauge("etraced_period_seconds", "The tick period", s.period_ns / 1e9)
        yield gauge("etraced_stats_age_seconds", "Time since the newest Stats arrived",
                    time.monotonic() - rx)
        timings = [("etraced_tick_duration_seconds", "tick_time",
                    "Tick start to finish (quantiles over the last stats period)")]
        if not s.lockstep:  # lockstep ticks have no deadline to be late for
            timings.append(("etraced_tick_lateness_seconds", "lateness",
                            "Tick start minus its deadline (quantiles over the last stats "
                            "period)"))
        for metric, field, doc in timings:
            p = getattr(s, field)
            m = SummaryMetricFamily(metric, doc, labels=[])
            m.add_metric([], count_value=p.count_total, sum_value=p.sum_ns_total / 1e9)
            for q, attr in QUANTILES:
                m.add_sample(metric, {"quantile": q}, getattr(p, attr) / 1e9)
            yield m
            yield gauge(metric.replace("_seconds", "_max_seconds"),
                        "The largest over the last stats period", p.max_ns / 1e9)
        if not s.lockstep:
            yield counter("etraced_overruns_total", "Ticks that ended after the next deadline",
                          s.overruns)
            yield counter("etraced_skipped_periods_total",
                          "Periods whose deadline passed before a tick could start", s.skipped)
            yield counter("etraced_output_wakes_total",
                          "Times the tick thread woke the loop to publish Outputs",
                          s.output_wakes)
        yield counter("etraced_invalid_ticks_total", "Ticks whose Outputs had valid = false",
                      s.invalid_ticks)
        yield counter("etraced_swaps_total", "Hot swaps and restores", s.swaps)
        if s.swaps:
            yield gauge("etraced_last_swap_gap_seconds",
                        "Last old to first new tick of the last swap", s.last_swap_gap_ns / 1e9)
        if s.curve_denials:
            yield counter("etraced_curve_denials_total", "CURVE clients refused",
                          s.curve_denials)
        yield gauge("etraced_loss", "Mean loss over the last stats period's ticks with a "
                    "target", s.loss_avg)
        yield gauge("etraced_reward", "Mean reward per tick over the last stats period",
                    s.reward_avg)
        yield gauge("etraced_learning", "1 when learning is on", int(s.learning))
        yield gauge("etraced_learning_rate", "The optimizer's learning rate", s.lr)
        yield gauge("etraced_paused", "1 while paused", int(s.paused))

        msgs = CounterMetricFamily("etraced_socket_messages_total",
                                   "Messages accepted (received, or sent by a PUB socket)",
                                   labels=["socket"])
        rej = CounterMetricFamily("etraced_socket_rejected_total", "Messages rejected, by reason",
                                  labels=["socket", "reason"])
        peer = CounterMetricFamily("etraced_socket_peer_dropped_total",
                                   "Connections closed by the transport", labels=["socket"])
        drop = CounterMetricFamily("etraced_socket_dropped_total",
                                   "Messages lost for lack of room", labels=["socket"])
        conns = GaugeMetricFamily("etraced_socket_connections",
                                  "Connections (subscribers) open now", labels=["socket"])
        refused = CounterMetricFamily("etraced_socket_connections_refused_total",
                                      "Connections closed at once for limits.connections or "
                                      "limits.subscribers", labels=["socket"])
        for k in s.sockets:
            conns.add_metric([k.name], k.connections)
            refused.add_metric([k.name], k.connections_refused)
            msgs.add_metric([k.name], k.accepted)
            # Only the sockets that receive can reject; each reason where it can occur.
            for r in SOCKET_REASONS.get(k.name, ()):
                rej.add_metric([k.name, r], getattr(k, r))
            peer.add_metric([k.name], k.peer_dropped)
            drop.add_metric([k.name], k.dropped)
        yield from (msgs, rej, peer, drop, conns, refused)

        for metric, attr, doc, only_spikes in (
                ("etraced_input_frames_total", "frames", "Frames applied to a tick", False),
                ("etraced_input_superseded_total", "superseded",
                 "Frames overwritten before a tick read them", False),
                ("etraced_input_dropped_overflow_total", "dropped_overflow",
                 "Spike events over the input's size in one tick", True),
                ("etraced_input_stale_ticks_total", "stale_ticks",
                 "Ticks at which the input was stale", False)):
            m = CounterMetricFamily(metric, doc, labels=["input"])
            for i in s.inputs:
                if i.spikes or not only_spikes:
                    m.add_metric([i.name], getattr(i, attr))
            if m.samples:
                yield m
        for metric, attr, doc in (
                ("etraced_readout_targets_total", "targets", "Targets applied"),
                ("etraced_readout_superseded_total", "superseded",
                 "Targets replaced before a tick consumed them")):
            m = CounterMetricFamily(metric, doc, labels=["readout"])
            for r in s.readouts:
                m.add_metric([r.name], getattr(r, attr))
            yield m
        norms = [("etraced_projection_weight_norm", "w_norm", "||W|| (weight and bias)")]
        if s.optimizer_steps_total:  # the weights move only when a model learns
            norms += [
                ("etraced_projection_drift_norm", "drift_norm",
                 "||W - W0||, W0 the weights at load"),
                ("etraced_projection_delta_norm", "delta_norm",
                 "||delta W|| over the last stats period"),
                ("etraced_projection_grad_norm", "grad_norm",
                 "||gradient|| of the last optimizer step"),
                ("etraced_projection_trace_norm", "trace_norm", "||traces||")]
        for metric, attr, doc in norms:
            m = GaugeMetricFamily(metric, doc, labels=["projection"])
            for p in s.projections:
                m.add_metric([p.name], getattr(p, attr))
            yield m
        if s.cells:
            m = GaugeMetricFamily("etraced_cell_spike_rate",
                                  "Mean spikes per neuron per tick over the last stats period",
                                  labels=["cell"])
            for c in s.cells:
                m.add_metric([c.name], c.rate)
            yield m


def glue_key_args(argv):
    """`--curve-server KEY` as `--curve-server=KEY`: a Z85 key may begin with '-' (one key
    in 85), which argparse would take for an option and refuse."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--curve-server" and i + 1 < len(argv):
            out.append("--curve-server=" + argv[i + 1])
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT,
                    help="port (0: any free one; default %d)" % DEFAULT_PORT)
    ap.add_argument("--stats", help="the daemon's stats endpoint (default: its default)")
    ap.add_argument("--config", help="a daemon config to read the stats endpoint from")
    ap.add_argument("--build", help="the build directory holding python/etrace_pb2.py")
    ap.add_argument("--curve-server", help="the daemon's CURVE public key (Z85), for a tcp "
                                           "stats endpoint with CURVE")
    ap.add_argument("--curve-keys", help="this exporter's key file (`etracectl keygen`), "
                                         "its public key in the daemon's curve.allow")
    a = ap.parse_args(glue_key_args(sys.argv[1:] if argv is None else argv))
    if a.build:
        os.environ["ETRACE_PB2_DIR"] = os.path.join(a.build, "python")
    import etrace
    from prometheus_client import make_wsgi_app
    from prometheus_client.core import CollectorRegistry
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
    from socketserver import ThreadingMixIn

    stats_ep = a.stats
    if not stats_ep and a.config:
        stats_ep = etrace.read_config_endpoints(a.config).get("stats")
    stats_ep = stats_ep or etrace.default_endpoint("stats")
    registry = CollectorRegistry(auto_describe=False)
    if bool(a.curve_server) != bool(a.curve_keys):
        ap.error("--curve-server and --curve-keys go together")
    collector = StatsCollector(stats_ep, a.curve_server, a.curve_keys)
    registry.register(collector)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    httpd = make_server(a.addr, a.port, make_wsgi_app(registry), Server,
                        handler_class=QuietHandler)
    print("etrace_exporter: http://%s:%d/metrics (stats from %s)"
          % (a.addr, httpd.server_address[1], stats_ep), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop.set()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
