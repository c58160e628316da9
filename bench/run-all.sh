#!/bin/sh
# Runs every benchmark in bench/ against build/atlas-run. The figures are
# written up in docs/benchmarks.md; never use them as timed tests.
set -eu
cd "$(dirname "$0")/.."
for script in bench/startup.py bench/aws_bench.sh bench/aws_keepalive.py bench/sql_bench.sh; do
    if [ -x "$script" ]; then
        echo "== $script"
        "$script"
    fi
done
echo "== bench/sigv4_sign.lua"
build/atlas-run -e 'dofile("bench/sigv4_sign.lua")'
echo "== bench/aws_call_canned.lua"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
    build/atlas-run -e 'dofile("bench/aws_call_canned.lua")'
