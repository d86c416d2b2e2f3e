#!/usr/bin/env bash
# The benchmark suite of docs/BENCHMARKS.md: builds the release binaries,
# runs mlpredict and its mock server as separate processes, and writes the
# results into docs/BENCHMARKS.md (between the bench:begin/end markers).
#
#   scripts/bench.sh                 # full suite, about 6 minutes, a few GB in target/bench
#   scripts/bench.sh --smoke         # tiny sizes in seconds; writes target/bench/smoke/BENCHMARKS.smoke.md
#   scripts/bench.sh --only ad       # some scenarios: a overhead, b memory, c API calls, d batch vs sync
#   scripts/bench.sh --perf          # also profile one (a) run with perf (apt-get install linux-perf)
#
# Run it on an otherwise idle machine: the figures are wall and CPU times.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average is $load; other work skews the figures" >&2
fi

cargo build --release --quiet -p mlpredict -p mlpredict-bench
exec target/release/mlpredict-bench --bin target/release/mlpredict "$@"
