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
