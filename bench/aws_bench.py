#!/usr/bin/env python3
"""The measuring half of bench/aws_bench.sh (which starts and seeds moto and sets the environment).

  aws_bench.py ATLAS_RUN

Each figure is the median of REPEAT interleaved rounds (atlas-run, then its peer).
"""
import os
import resource
import statistics
import subprocess
import sys
import time

ATLAS = sys.argv[1]
REPEAT = int(os.environ.get("REPEAT", "5"))
N = int(os.environ.get("N", "500"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE_CALL_LUA = ('local r = require("atlas.aws").call{service="ecs", action="DescribeServices", region="us-east-1", '
                'params={cluster="atlas-crm-production-cluster-us-east-1", '
                'services={"atlas-crm-production-service-us-east-1"}}} assert(r.services[1])')
ONE_CALL_PY = ('import boto3; r = boto3.client("ecs").describe_services(cluster="atlas-crm-production-cluster-us-east-1", '
               'services=["atlas-crm-production-service-us-east-1"]); assert r["services"][0]')

CLUSTER_EU, SERVICE_EU = "atlas-crm-production-cluster-eu-west-1", "atlas-crm-production-service-eu-west-1"
CLUSTER_US, SERVICE_US = "atlas-crm-production-cluster-us-east-1", "atlas-crm-production-service-us-east-1"
AWS_CLI_DR = [
    ["aws", "ecs", "describe-services", "--region", "eu-west-1", "--cluster", CLUSTER_EU, "--services", SERVICE_EU],
    ["aws", "ecs", "update-service", "--region", "us-east-1", "--cluster", CLUSTER_US, "--service", SERVICE_US,
     "--desired-count", "4"],
    ["aws", "route53", "list-hosted-zones-by-name", "--dns-name", "atlas-crm.com"],
    ["aws", "ecs", "wait", "services-stable", "--region", "us-east-1", "--cluster", CLUSTER_US, "--services",
     SERVICE_US],
]


def run(argv, env=None):
    """Runs argv to completion -> (wall seconds, child CPU seconds, child peak RSS KiB, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"aws_bench: {argv[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss, p.stdout


def figure(stdout, name):
    for line in stdout.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    sys.exit(f"aws_bench: no {name} in output: {stdout!r}")


def main():
    env = dict(os.environ, N=str(N))
    atlas_warm, boto_warm, atlas_one, boto_one, atlas_dr, cli_dr, rss = [], [], [], [], [], [], []
    floor = []
    for _ in range(REPEAT):
        if os.environ.get("AWS_CURL_FLOOR"):
            floor.append(figure(run([os.environ["AWS_CURL_FLOOR"], os.environ["AWS_ENDPOINT_URL"] + "/moto-api/data.json",
                                     str(N)])[3], "curl_floor_cpu_us_per_call"))
        atlas_warm.append(figure(run([ATLAS, "-e", 'dofile("bench/aws_cpu.lua")'], env)[3], "atlas_cpu_us_per_call"))
        boto_warm.append(figure(run([sys.executable, "bench/aws_cpu_boto3.py"], env)[3], "boto3_cpu_us_per_call"))
        atlas_one.append(run([ATLAS, "-e", ONE_CALL_LUA])[1] * 1000)
        boto_one.append(run([sys.executable, "-c", ONE_CALL_PY])[1] * 1000)
        wall, _, _, _ = run(["/usr/bin/time", "-f", "%M", "-o", "/tmp/atlas-awsbench-rss", ATLAS, "-e",
                             'dofile("bench/aws_dr.lua")'])
        atlas_dr.append(wall * 1000)
        with open("/tmp/atlas-awsbench-rss") as f:
            rss.append(int(f.read().split()[-1]))
        start = time.perf_counter()
        for argv in AWS_CLI_DR:
            run(argv)
        cli_dr.append((time.perf_counter() - start) * 1000)
    os.remove("/tmp/atlas-awsbench-rss")
    med = statistics.median
    print(f"rounds: {REPEAT} interleaved; warm loops: {N} DescribeServices calls after 20 warm-up calls")
    print(f"client CPU per DescribeServices call (warm process): atlas-run {med(atlas_warm):.0f} us, "
          f"boto3 {med(boto_warm):.0f} us -> atlas/boto3 = 1/{med(boto_warm) / med(atlas_warm):.1f} (goal <= 1/20)")
    if floor:
        print(f"floor: a bare libcurl easy_perform loop against the same moto: {med(floor):.0f} us CPU per request "
              f"(every request a new TCP connection: moto sends Connection: close)")
    print(f"CPU of a whole process making one call: atlas-run {med(atlas_one):.1f} ms, "
          f"python3+boto3 {med(boto_one):.0f} ms -> 1/{med(boto_one) / med(atlas_one):.0f}")
    print(f"DR sequence wall: atlas-run {med(atlas_dr):.0f} ms, aws-cli (4 commands) {med(cli_dr):.0f} ms "
          f"-> {med(cli_dr) / med(atlas_dr):.1f}x faster (goal >= 20x)")
    print(f"atlas-run peak RSS during the DR sequence: {max(rss) / 1024:.1f} MiB (max of {REPEAT}; goal < 15 MiB)")
    print("raw: atlas warm us", [round(x) for x in atlas_warm], "boto3 warm us", [round(x) for x in boto_warm])
    print("raw: atlas one-call ms", [round(x, 1) for x in atlas_one], "boto3 one-call ms", [round(x) for x in boto_one])
    print("raw: atlas DR ms", [round(x) for x in atlas_dr], "aws-cli DR ms", [round(x) for x in cli_dr])
    print("raw: atlas peak RSS KiB", rss)
    if floor:
        print("raw: libcurl floor us", [round(x) for x in floor])


if __name__ == "__main__":
    main()
