"""The command lines as a user meets them: --version on both binaries; `etraced help`
and each subcommand's --help; a wrong command or value prints one line naming it and
exits 64; etracectl --json has one shape per command (`stats` and `stats --watch` alike),
prints fields at their default values (clock TIMER, paused false) and the model hash in
hex as the text output does."""
import json
import subprocess
import unittest

import common
import etrace

ETRACED = common.os.environ["ETRACED"]


def run(args, want):
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == want, "%s: exit %d, wanted %d\n%s%s" % (
        " ".join(args), p.returncode, want, p.stdout, p.stderr)
    return p.stdout, p.stderr


class VersionHelpTest(unittest.TestCase):
    def test_version(self):
        for b in (ETRACED, common.ETRACECTL):
            out, _ = run([b, "--version"], 0)
            self.assertRegex(out, r"^etrace(d|ctl) \d+\.\d+")

    def test_help(self):
        out, _ = run([ETRACED, "help"], 0)
        self.assertIn("recording info FILE", out)
        for cmd, first in (("compile", "usage: etraced compile MODEL"),
                           ("run", "usage: etraced run MODEL"),
                           ("recording", "usage: etraced recording info FILE"),
                           ("export-checkpoint", "usage: etraced export-checkpoint")):
            self.assertTrue(run([ETRACED, cmd, "--help"], 0)[0].startswith(first), cmd)
            self.assertTrue(run([ETRACED, "help", cmd], 0)[0].startswith(first), cmd)
        self.assertIn("commands:", run([common.ETRACECTL, "help"], 0)[0])
        self.assertIn("commands:", run([common.ETRACECTL, "--help"], 0)[0])

    def test_usage_errors_are_one_line(self):
        for args, name in (([ETRACED, "frobnicate"], "frobnicate"),
                           ([ETRACED, "--frob"], "--frob"),
                           ([ETRACED, "help", "frob"], "frob"),
                           ([ETRACED, "compile", "--frob", "m.yaml"], "--frob"),
                           ([ETRACED, "run", "m.yaml", "--ticks", "x", "--out", "d"], "x"),
                           ([ETRACED, "recording", "export", "f", "--out", "d", "--format",
                             "csv"], "csv"),
                           ([common.ETRACECTL, "frobnicate"], "frobnicate"),
                           ([common.ETRACECTL, "learn", "maybe"], "maybe"),
                           ([common.ETRACECTL, "lr", "fast"], "fast"),
                           ([common.ETRACECTL, "--frob", "status"], "--frob"),
                           ([common.ETRACECTL, "reset", "everything"], "everything"),
                           ([common.ETRACECTL, "--timeout", "soon", "status"], "soon"),
                           ([common.ETRACECTL, "stats", "--watch", "--count", "x"], "'x'")):
            out, err = run(args, 64)
            self.assertEqual(out, "", args)
            self.assertEqual(len(err.strip().splitlines()), 1, (args, err))
            self.assertIn(name, err, args)


class JsonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = etrace.Daemon(common.MODEL, clock="timer", stats_period_ms=100)

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def ctl(self, *args):
        out, _ = run([common.ETRACECTL, "--config", self.d.config, "--json"] + list(args), 0)
        lines = [json.loads(l) for l in out.splitlines() if l.strip()]
        self.assertTrue(lines)
        return lines

    def test_status_defaults_and_hex_hash(self):
        s = self.ctl("status")[0]["status"]
        with self.d.client() as c:
            h = c.status().model_hash
        self.assertEqual(s["clock"], "TIMER")  # the enum's default, printed
        self.assertIs(s["paused"], False)
        self.assertEqual(s["modelHash"], "%016x" % h)
        self.assertEqual([i["name"] for i in s["inputs"]], ["sensors"])
        self.assertEqual(s["readouts"][0]["kind"], "values")
        text, _ = run([common.ETRACECTL, "--config", self.d.config, "status"], 0)
        self.assertIn("%016x" % h, text)

    def test_stats_and_watch_same_shape(self):
        one = self.ctl("stats")[0]
        watched = self.ctl("stats", "--watch", "--count", "2")

        def shape(o):
            return {k: shape(v) if isinstance(v, dict) else type(v).__name__
                    for k, v in o.items() if k != "id"}
        self.assertEqual(len(watched), 2)
        for w in watched:
            self.assertEqual(shape(w), shape(one))
        self.assertIn("curveDenials", one["stats"])  # 0, printed
        self.assertIn("modelHash", one["stats"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
