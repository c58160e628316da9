#!/bin/sh
# atlas.aws against boto3 and aws-cli, in one run, against ONE moto_server on
# loopback seeded with the reference environment (tests/support/seed_moto.py):
#   1. client CPU per DescribeServices call, one warm process each: atlas-run vs boto3 (goal <= 1/20)
#      (and, for context, the CPU of a whole process that makes one call)
#   2. the runbook's DR call sequence (describe eu-west-1, update us-east-1, find the zone, wait stable):
#      one atlas-run process vs the same four aws-cli commands (goal >= 20x faster wall)
#   3. atlas-run's peak RSS during the DR sequence (goal < 15 MiB)
#
#   bench/aws_bench.sh [path/to/atlas-run]     (default: build/atlas-run)
# Prints the figures for the "## AWS" section of docs/benchmarks.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ATLAS=${1:-$root/build/atlas-run}
[ -x "$ATLAS" ] || { echo "aws_bench: no atlas-run at $ATLAS (run make first)" >&2; exit 2; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/atlas-awsbench-moto.XXXXXX)
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
cleanup() { kill "$moto" 2>/dev/null || true; wait "$moto" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT INT TERM
python3 - "$port" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("moto_server did not start")
PY

endpoint="http://127.0.0.1:$port"
python3 "$root/tests/support/seed_moto.py" "$endpoint" >/dev/null

# Everyone talks to the same moto with the same static credentials; the run
# must not find a real ~/.aws or the instance metadata service.
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=""
unset ATLAS_LUA_PATH
cd "$root"
floor=$(mktemp /tmp/atlas-awsbench-floor.XXXXXX)
trap 'cleanup; rm -f "$floor"' EXIT INT TERM
cc -O2 -o "$floor" "$here/aws_curl_floor.c" $(pkg-config --cflags --libs libcurl)
AWS_CURL_FLOOR="$floor" python3 "$here/aws_bench.py" "$ATLAS"
