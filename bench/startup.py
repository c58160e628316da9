#!/usr/bin/env python3
"""Start-up and mock-suite figures for atlas-run (issue 2's targets).

Measures, in one run on this machine:
  - wall time of `atlas-run -e ''` (mean and p95 over N runs), beside
    `/bin/true` (process creation floor) and `aws --version` (the peer);
  - peak RSS of `atlas-run -e ''`;
  - wall time of the whole mock test suite, `atlas-run test tests/mock`,
    and the simulated time its playbook runs cover.
Usage: bench/startup.py [path/to/atlas-run] [runs]
"""
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "atlas-run")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def wall(cmd, runs):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.mean(samples), samples[int(len(samples) * 0.95) - 1]


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    return int(out.stderr.strip().splitlines()[-1])


def main():
    env_note = "ATLAS_LUA_PATH unset" if "ATLAS_LUA_PATH" not in os.environ else "ATLAS_LUA_PATH set!"
    floor, _ = wall(["/bin/true"], RUNS)
    mean, p95 = wall([BINARY, "-e", ""], RUNS)
    aws_mean, _ = wall(["aws", "--version"], 10)
    rss = max(peak_rss_kib([BINARY, "-e", ""]) for _ in range(5))
    t = time.perf_counter()
    suite = subprocess.run([BINARY, "test", "tests/mock"], cwd=ROOT, capture_output=True, text=True)
    suite_s = time.perf_counter() - t
    summary = suite.stdout.strip().splitlines()[-1] if suite.stdout.strip() else "?"
    print(f"binary: {BINARY} ({env_note}), {RUNS} runs")
    print(f"/bin/true                 mean {floor:6.2f} ms   (process-creation floor)")
    print(f"atlas-run -e ''           mean {mean:6.2f} ms   p95 {p95:6.2f} ms   target < 5 ms")
    print(f"aws --version             mean {aws_mean:6.2f} ms   ratio {aws_mean / mean:5.1f}x slower than atlas-run")
    print(f"atlas-run -e '' peak RSS  {rss / 1024:6.2f} MiB   target < 10 MiB")
    print(f"atlas-run test tests/mock {suite_s:6.2f} s wall   target < 2 s   ({summary})")
    return 0 if suite.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
