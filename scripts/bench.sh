#!/usr/bin/env bash
# The benchmark suite of docs/BENCHMARKS.md: builds the release binaries,
# runs mlpredict and its mock server as separate processes, and writes the
# results into docs/BENCHMARKS.md (between the bench:begin/end markers).
#
#   scripts/bench.sh                 # full suite, about 9 minutes, a few GB in target/bench
#   scripts/bench.sh --smoke         # tiny sizes in seconds; writes target/bench/smoke/BENCHMARKS.smoke.md
#   scripts/bench.sh --only ad       # some scenarios: a overhead, b memory, c API calls, d batch vs sync, e Kafka
#   scripts/bench.sh --perf          # also profile one (a) run with perf (apt-get install linux-perf)
#
# Run it on an otherwise idle machine: the figures are wall and CPU times.
# Scenario e (Kafka mode) needs the project's broker: it is started here
# (scripts/kafka/broker.sh) and stopped afterwards if it was not running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average is $load; other work skews the figures" >&2
fi

# Which scenarios: the harness's --only (default: all of them).
only=abcde
prev=
for arg in "$@"; do
    case "$arg" in
        --only=*) only="${arg#--only=}" ;;
    esac
    if [ "$prev" = --only ]; then only="$arg"; fi
    prev="$arg"
done

cargo build --release --quiet -p mlpredict -p mlpredict-bench

if [[ "$only" == *e* ]]; then
    echo "== scenario e: starting the Kafka broker (scripts/kafka/broker.sh)" >&2
    if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
        scripts/kafka/broker.sh deps
    fi
    started_broker=0
    scripts/kafka/broker.sh status >/dev/null 2>&1 || started_broker=1
    MLPREDICT_KAFKA_BOOTSTRAP="$(scripts/kafka/broker.sh start)"
    # The harness reports the broker's CPU during each run (from /proc, by
    # the pid in the broker's data dir; see scripts/kafka/README.md).
    MLPREDICT_KAFKA_BROKER_PID_FILE="${MLPREDICT_KAFKA_DIR:-$root/.cache/kafka-run}/broker.pid"
    export MLPREDICT_KAFKA_BOOTSTRAP MLPREDICT_KAFKA_BROKER_PID_FILE
    if [ "$started_broker" = 1 ]; then
        trap 'echo "== stopping the Kafka broker" >&2; scripts/kafka/broker.sh stop >/dev/null 2>&1 || true' EXIT
    fi
fi

# Not exec: the trap above stops the broker afterwards.
target/release/mlpredict-bench --bin target/release/mlpredict "$@"
