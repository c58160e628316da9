#!/usr/bin/env python3
"""Client CPU per DescribeServices call against a keep-alive endpoint.

moto closes every connection, so against moto each call pays a TCP connect
(bench/aws_bench.sh). Real AWS endpoints keep connections alive. This
bench serves the same DescribeServices answer from a loopback HTTP/1.1
server that keeps connections open, and measures atlas-run and boto3 on it,
one warm process each, interleaved ROUNDS times. Only the client's CPU is
counted (os.clock / time.process_time); the server is another process.

The answer body is what the mock world returns for the us-east-1 service,
encoded as the JSON 1.1 protocol sends it.

Usage: bench/aws_keepalive.py [path/to/atlas-run] [rounds]
"""
import os
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATLAS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "atlas-run")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
N = os.environ.get("N", "2000")

BODY = subprocess.run(
    [ATLAS, "-e", """
local World = require "atlas.mock.world"
local json = require "atlas.json"
local w = World.new { scenario = "healthy" }
io.write(json.encode(w:aws_invoke("ecs", "DescribeServices", "us-east-1", {
    cluster = "atlas-crm-production-cluster-us-east-1",
    services = { "atlas-crm-production-service-us-east-1" } })))
"""],
    check=True, capture_output=True, env={k: v for k, v in os.environ.items() if k != "ATLAS_LUA_PATH"},
).stdout


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: bench\r\n"
    + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # One write for headers and body: two small writes meet the client's
        # delayed ACK (Nagle) and every call would stall ~40 ms.
        self.wfile.write(RESPONSE)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", N=N)
    env.pop("ATLAS_LUA_PATH", None)
    atlas, boto = [], []
    for _ in range(ROUNDS):
        out = subprocess.run([ATLAS, "-e", 'dofile("bench/aws_cpu.lua")'], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        atlas.append(float(out.split()[-1]))
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "aws_cpu_boto3.py")], env=env, check=True,
                             capture_output=True, text=True).stdout
        boto.append(float(out.split()[-1]))
    server.shutdown()
    a, b = statistics.median(atlas), statistics.median(boto)
    print(f"keep-alive endpoint, {ROUNDS} rounds x {N} calls, body {len(BODY)} bytes")
    print(f"client CPU per DescribeServices call: atlas-run {a:.1f} us, boto3 {b:.1f} us -> 1/{b / a:.1f} (goal <= 1/20)")
    print(f"raw: atlas us {[round(x, 1) for x in atlas]} boto3 us {[round(x, 1) for x in boto]}")


if __name__ == "__main__":
    main()
