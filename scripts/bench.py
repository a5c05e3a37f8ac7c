#!/usr/bin/env python3
"""The load benchmark's driver, run by scripts/bench.sh (which builds what it names).

Starts jvm-guard and the baseline (benches/baseline.rs: the same serving stack, answering
`allowed` without mutating) on loopback with an ECDSA P-256 certificate, loads each in turn
with oha, samples their RSS from /proc, and prints one table. Figures, never pass/fail: the
targets are in the last column for the reader.

With --compare OLD it measures instead two builds of jvm-guard taking turns (`scripts/bench.sh
compare REV`): the two, the baseline and the "floor" (the baseline answering with jvm-guard's
own patch for that body, so the answer is as large), keep-alive, each body size --turns times,
the order rotated each turn. One run's figures move with the machine's neighbours by more than
a change does; a ratio taken within a turn does not.
"""
import argparse
import base64
import http.client
import statistics
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REVIEWS = REPO / "benches" / "reviews"
SIZES = ["2kb", "10kb", "20kb"]

# Every feature on, so the mutation does all of its work.
DEFAULTS = REPO / "benches" / "defaults.yaml"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


class Sampler:
    """The highest RSS of a process while a block runs, sampled every 50 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, rss_kib(pid), threading.Event()

    def __enter__(self):
        def run():
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, rss_kib(self.pid))
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


class Server:
    def __init__(self, name, argv, port, log):
        self.name, self.port = name, port
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        self.url = f"https://127.0.0.1:{port}/mutate"
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"error: {name} exited with {self.proc.returncode}; see {log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"error: {name} did not listen on {port} within 30 s; see {log}")
                time.sleep(0.05)

    def post(self, body):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
        conn.request("POST", "/mutate", body, {"content-type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
        return response.status, answer

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def oha(args, url, body, *extra):
    argv = [args.oha, "--no-tui", "--output-format", "json", "--insecure", "-m", "POST", "-w",
            "-H", "content-type: application/json", "-D", str(body), *extra, url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    summary, pct = result["summary"], result["latencyPercentiles"]
    codes = result.get("statusCodeDistribution", {})
    errors = result.get("errorDistribution", {})
    ok = codes.get("200", 0)
    bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
    return {
        "rps": summary["requestsPerSec"],
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "ok": ok,
        "failed": bad,
        "errors": errors,
    }


def load(args, server, body, *extra):
    with Sampler(server.proc.pid) as sampler:
        result = oha(args, server.url, body, *extra)
    result["rss_mib"] = sampler.peak / 1024
    return result


def check(server, expect_patch):
    """One request by hand: the server answers, and only jvm-guard patches."""
    for size in SIZES:
        status, answer = server.post((REVIEWS / f"{size}.json").read_bytes())
        response = answer.get("response", {})
        if status != 200 or response.get("allowed") is not True:
            sys.exit(f"error: {server.name} answered {status} {answer} to {size}.json")
        if bool(response.get("patch")) != expect_patch:
            sys.exit(f"error: {server.name} {'did not patch' if expect_patch else 'patched'} "
                     f"{size}.json: {answer}")
        bad = [w for w in response.get("warnings") or [] if "internal error" in w]
        if bad:
            sys.exit(f"error: {server.name}: {bad}")


def row(label, a, b):
    ratio = a["rps"] / b["rps"] if b["rps"] else 0
    return (f"| {label:<28} | {a['rps']:>8.0f} | {a['p50_ms']:>6.2f} | {a['p99_ms']:>6.2f} | "
            f"{a['rss_mib']:>6.1f} | {b['rps']:>8.0f} | {b['p50_ms']:>6.2f} | {b['p99_ms']:>6.2f} | "
            f"{b['rss_mib']:>6.1f} | {ratio:>5.2f} |")


HEADER = ("| scenario                     | jvm-guard rps | p50 ms | p99 ms | RSS MiB "
          "| baseline rps | p50 ms | p99 ms | RSS MiB | ratio |")


def soak(args, server, body):
    """RSS after a warm-up, then over --soak requests more; the drift is end vs warm."""
    oha(args, server.url, body, "-n", str(args.warmup), "-c", str(args.connections))
    warm = server.rss()
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.wait(1.0):
            samples.append(server.rss())
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.time()
    result = oha(args, server.url, body, "-n", str(args.soak), "-c", str(args.connections))
    stop.set()
    thread.join()
    end = server.rss()
    return {
        "requests": args.soak,
        "seconds": time.time() - start,
        "rps": result["rps"],
        "failed": result["failed"],
        "warm_kib": warm,
        "end_kib": end,
        "max_kib": max(samples + [end]),
        "drift_pct": (end - warm) * 100 / warm,
    }


def serve(name, binary, tls, log):
    """`BINARY serve` as the benchmark runs it: --dev, offline, with the bench defaults."""
    port = free_port()
    return Server(name, [binary, "serve", "--dev", "--offline",
                         "--addr", f"127.0.0.1:{port}",
                         "--admin-addr", f"127.0.0.1:{free_port()}",
                         "--defaults", str(DEFAULTS), *tls],
                  port, log)


def compare(args, work, tls, new, base):
    """The turn-taking table of --compare (see the module's doc)."""
    old = serve("old", args.compare, tls, work / "old.log")
    floors, answer_bytes = {}, {}
    try:
        check(old, expect_patch=True)
        for size in SIZES:
            body = (REVIEWS / f"{size}.json").read_bytes()
            _, answer = new.post(body)
            patch = work / f"patch-{size}.json"
            patch.write_bytes(base64.b64decode(answer["response"]["patch"]))
            port = free_port()
            floors[size] = Server(f"floor-{size}", [args.baseline, "--addr", f"127.0.0.1:{port}",
                                                    "--patch", str(patch), *tls],
                                  port, work / f"floor-{size}.log")
            # The floor answers the very patch, encoded as jvm-guard encodes it.
            _, floor_answer = floors[size].post(body)
            if floor_answer["response"].get("patch") != answer["response"]["patch"]:
                sys.exit(f"error: the floor's answer to {size}.json is not jvm-guard's patch: "
                         f"{str(floor_answer)[:200]}")
            answer_bytes[size] = len(json.dumps(answer, separators=(",", ":")))
        c = str(args.connections)
        rows = []
        print(f"\n## {args.label} against {args.compare}: {os.cpu_count()} cores, "
              f"{args.turns} turns of oha {args.duration} (after 1 s of warm-up), c={c}\n")
        print("| body | answer bytes | old rps | new rps | baseline rps | floor rps "
              "| new / old | new / baseline | new / floor | old / baseline |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for size in SIZES:
            body = REVIEWS / f"{size}.json"
            named = {"old": old, "new": new, "baseline": base, "floor": floors[size]}
            order = list(named)
            turns = []
            for turn in range(args.turns):
                rps = {}
                for name in order[turn % 4:] + order[:turn % 4]:
                    oha(args, named[name].url, body, "-z", "1s", "-c", c)
                    rps[name] = oha(args, named[name].url, body, "-z", args.duration, "-c", c)["rps"]
                turns.append(rps)
            med = {name: statistics.median(t[name] for t in turns) for name in order}
            ratio = {f"{a}/{b}": statistics.median(t[a] / t[b] for t in turns)
                     for a, b in [("new", "old"), ("new", "baseline"), ("new", "floor"),
                                  ("old", "baseline")]}
            rows.append({"size": size, "rps": med, "ratios": ratio, "turns": turns})
            print(f"| {size} | {answer_bytes[size]:,} | {med['old']:,.0f} | {med['new']:,.0f} "
                  f"| {med['baseline']:,.0f} | {med['floor']:,.0f} | {ratio['new/old']:.2f} "
                  f"| {ratio['new/baseline']:.2f} | {ratio['new/floor']:.2f} "
                  f"| {ratio['old/baseline']:.2f} |", flush=True)
        print("\nrps: the median of the turns; ratios: the median of each turn's ratio")
        return rows
    finally:
        old.stop()
        for floor in floors.values():
            floor.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jvm-guard", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--oha", required=True)
    p.add_argument("--label", default="jvm-guard")
    p.add_argument("--duration", default="10s", help="each loaded run (oha -z)")
    p.add_argument("--connections", type=int, default=32, help="oha -c of the matrix")
    p.add_argument("--soak", type=int, default=1_000_000, help="requests; 0 skips the soak")
    p.add_argument("--warmup", type=int, default=100_000)
    p.add_argument("--json", help="also write every figure here")
    p.add_argument("--compare", metavar="OLD", help="another jvm-guard binary: the turn-taking "
                   "table instead of the matrix")
    p.add_argument("--turns", type=int, default=3, help="turns of --compare")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jvm-guard-bench-"))
    subprocess.run([args.jvm_guard, "certs", "--out", str(work)], check=True,
                   capture_output=True)
    tls = ["--tls-cert", str(work / "tls.crt"), "--tls-key", str(work / "tls.key")]
    base_port = free_port()
    guard = serve(args.label, args.jvm_guard, tls, work / "jvm-guard.log")
    base = Server("baseline", [args.baseline, "--addr", f"127.0.0.1:{base_port}", *tls],
                  base_port, work / "baseline.log")
    figures = {"label": args.label}
    try:
        figures["idle_rss_mib"] = {"jvm-guard": guard.rss() / 1024, "baseline": base.rss() / 1024}
        check(guard, expect_patch=True)
        check(base, expect_patch=False)
        if args.compare:
            figures["compare"] = compare(args, work, tls, guard, base)
            if args.json:
                Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
            return
        c = str(args.connections)
        rows, runs = [], {}
        scenarios = [(f"{s} keep-alive c={c}", s, ["-z", args.duration, "-c", c]) for s in SIZES]
        scenarios.append((f"2kb no keep-alive c={c}", "2kb",
                          ["-z", args.duration, "-c", c, "--disable-keepalive"]))
        for label, size, extra in scenarios:
            a = load(args, guard, REVIEWS / f"{size}.json", *extra)
            b = load(args, base, REVIEWS / f"{size}.json", *extra)
            runs[label] = {"jvm-guard": a, "baseline": b}
            rows.append(row(label, a, b))
        # p99 at 50% and 80% of jvm-guard's max keep-alive throughput, both servers at that
        # rate (where the two maxima are close, 80% is the baseline's 80% too).
        for size, share in [(s, f) for f in (50, 80) for s in SIZES]:
            rate = int(runs[f"{size} keep-alive c={c}"]["jvm-guard"]["rps"] * share / 100)
            label = f"{size} at {rate}/s ({share}%)"
            extra = ["-z", args.duration, "-c", c, "-q", str(rate), "--latency-correction"]
            a = load(args, guard, REVIEWS / f"{size}.json", *extra)
            b = load(args, base, REVIEWS / f"{size}.json", *extra)
            runs[label] = {"jvm-guard": a, "baseline": b}
            rows.append(row(label, a, b))
        label = "20kb keep-alive c=1000"
        extra = ["-z", args.duration, "-c", "1000"]
        a = load(args, guard, REVIEWS / "20kb.json", *extra)
        b = load(args, base, REVIEWS / "20kb.json", *extra)
        runs[label] = {"jvm-guard": a, "baseline": b}
        rows.append(row(label, a, b))
        figures["runs"] = runs
        figures["idle_after_load_rss_mib"] = {"jvm-guard": guard.rss() / 1024,
                                             "baseline": base.rss() / 1024}

        print(f"\n## {args.label}: {os.cpu_count()} cores, oha {args.duration} per run\n")
        print(HEADER)
        print("|" + "|".join("-" * (len(h)) for h in HEADER.split("|")[1:-1]) + "|")
        for r in rows:
            print(r)
        failed = {k: (v["jvm-guard"]["failed"], v["baseline"]["failed"]) for k, v in runs.items()
                  if v["jvm-guard"]["failed"] or v["baseline"]["failed"]}
        idle, after = figures["idle_rss_mib"], figures["idle_after_load_rss_mib"]
        print(f"\nidle RSS: jvm-guard {idle['jvm-guard']:.1f} MiB at start, "
              f"{after['jvm-guard']:.1f} MiB after the runs (target <= 20); "
              f"baseline {idle['baseline']:.1f} / {after['baseline']:.1f} MiB")
        print("targets: ratio >= 0.80; p99 <= 2 ms at 80%; RSS <= 64 MiB at c=1000 20kb; "
              "oha runs on the same cores")
        if failed:
            print(f"non-200 answers or errors (jvm-guard, baseline): {failed}")

        if args.soak:
            s = soak(args, guard, REVIEWS / "10kb.json")
            figures["soak"] = s
            print(f"\nsoak: {s['requests']} requests of 10kb after {args.warmup} warm-up, "
                  f"{s['seconds']:.0f} s at {s['rps']:.0f}/s, {s['failed']} failed; RSS warm "
                  f"{s['warm_kib'] / 1024:.1f} MiB, end {s['end_kib'] / 1024:.1f} MiB, max "
                  f"{s['max_kib'] / 1024:.1f} MiB: drift {s['drift_pct']:+.1f}% (target <= 5%)")
    finally:
        guard.stop()
        base.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
