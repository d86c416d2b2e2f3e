#!/usr/bin/env bash
# A real single-node Apache Kafka 4.x broker for mlpredict's tests and quickstart:
# KRaft combined mode (broker + controller in one JVM) on 127.0.0.1, jars from Maven
# Central (scripts/kafka/pom.xml), no Docker and no Kafka tarball.
#
#   scripts/kafka/broker.sh deps                  install Java 17 + Maven with apt-get, if either is missing
#   scripts/kafka/broker.sh fetch [--force]       download the jars into $MLPREDICT_CACHE/kafka/libs (once)
#   scripts/kafka/broker.sh start [--port N|auto] [--controller-port N] [--prop key=value]...
#                                                 start in the background and wait until ready; prints the bootstrap
#                                                 (--port auto: the default port if free, else the next free pair)
#   scripts/kafka/broker.sh stop | status | bootstrap | logs [N] | reset
#   scripts/kafka/broker.sh topic create NAME PARTITIONS [--compact] [--config k=v]...
#   scripts/kafka/broker.sh topic delete NAME | list | describe [NAME]
#   scripts/kafka/broker.sh topic produce NAME [--key-separator SEP]     (one message per stdin line)
#   scripts/kafka/broker.sh topic consume NAME [--max N] [--timeout-ms MS] [--read-uncommitted] [--keys] [--group G]
#   scripts/kafka/broker.sh tool CLASS [ARGS...]  run any Kafka CLI class (short names mean org.apache.kafka.tools.*)
#   scripts/kafka/broker.sh selftest              topic + produce/consume + transactional copy, checked
#
# See scripts/kafka/README.md for the settings and the environment variables.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"

abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

CACHE_DIR="$(abspath "${MLPREDICT_CACHE:-$REPO/.cache}")/kafka"
LIBS="$CACHE_DIR/libs"
DATA="$(abspath "${MLPREDICT_KAFKA_DIR:-$REPO/.cache/kafka-run}")"
POM="$SCRIPT_DIR/pom.xml"

DEFAULT_PORT="${MLPREDICT_KAFKA_PORT:-19092}"
START_TIMEOUT="${MLPREDICT_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${MLPREDICT_KAFKA_STOP_TIMEOUT:-30}"
HEAP="${MLPREDICT_KAFKA_HEAP:-512m}"

PROPS="$DATA/server.properties"
LOG="$DATA/broker.log"
PID_FILE="$DATA/broker.pid"
PORT_FILE="$DATA/ports"
LOG_DIRS="$DATA/kraft-logs"

die() { echo "broker.sh: error: $*" >&2; exit 1; }
note() { echo "broker.sh: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- prerequisites

KAFKA_JAVA=""
find_java() {
  [[ -n "$KAFKA_JAVA" ]] && return 0
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    KAFKA_JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    KAFKA_JAVA="$(command -v java)"
  else
    die "java not found; Kafka 4.x needs Java 17 or newer. Install it with: $0 deps (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)"
  fi
  local v
  # The line to read is like: openjdk version "17.0.15" 2025-04-15 (JAVA_TOOL_OPTIONS may add one before it).
  v="$("$KAFKA_JAVA" -version 2>&1 | sed -nE 's/.* version "([0-9]+).*/\1/p' || true)"
  v="${v%%$'\n'*}"
  if [[ ! "$v" =~ ^[0-9]+$ ]] || ((v < 17)); then
    die "$KAFKA_JAVA is Java '${v:-?}'; Kafka 4.x needs Java 17 or newer (set JAVA_HOME, or run: $0 deps)"
  fi
}

need_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found; it is needed once to download the Kafka jars. Install it with: $0 deps (Debian/Ubuntu: apt-get install -y maven)"
}

java_ok() { (find_java) >/dev/null 2>&1; } # subshell: find_java exits on failure

cmd_deps() {
  local pkgs=()
  java_ok || pkgs+=(jre)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  if ((${#pkgs[@]} == 0)); then
    note "Java 17+ and Maven are present; nothing to install"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "no apt-get here: install Java 17+ (JRE is enough) and Maven with this system's package manager"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing packages needs root (or sudo)"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  if [[ " ${pkgs[*]} " == *" jre "* ]]; then
    # Debian 12 / Ubuntu 22.04+ have openjdk-17; newer releases may only have a newer default JRE.
    if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then
      pkgs=("${pkgs[@]/jre/openjdk-17-jre-headless}")
    else
      pkgs=("${pkgs[@]/jre/default-jre-headless}")
    fi
  fi
  note "installing: ${pkgs[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
}

# ---------------------------------------------------------------- jars

fetch_stamp() {
  echo "pom=$(sha256sum "$POM" | cut -c1-16) kafka.version=${MLPREDICT_KAFKA_VERSION:-pom-default}"
}
is_fetched() { [[ -f "$LIBS/.fetched" && "$(cat "$LIBS/.fetched")" == "$(fetch_stamp)" ]]; }

lock() { # lock FD FILE: serialize concurrent callers (no-op without flock)
  command -v flock >/dev/null 2>&1 || return 0
  eval "exec $1>\"\$2\""
  flock "$1"
}

cmd_fetch() {
  local force=0
  [[ "${1:-}" == --force ]] && force=1
  mkdir -p "$CACHE_DIR"
  lock 8 "$CACHE_DIR/.fetch.lock"
  if ((force == 0)) && is_fetched; then
    note "Kafka jars already in $LIBS"
    return 0
  fi
  need_mvn
  find_java
  local tmp="$CACHE_DIR/libs.tmp" t0
  t0="$(now)"
  rm -rf "$tmp"
  local args=(-B -q -f "$POM" dependency:copy-dependencies "-DoutputDirectory=$tmp"
    -Dstyle.color=never -Dmaven.wagon.http.retryHandler.count=3)
  [[ -n "${MLPREDICT_KAFKA_VERSION:-}" ]] && args+=("-Dkafka.version=$MLPREDICT_KAFKA_VERSION")
  note "downloading the Kafka jars with Maven (scripts/kafka/pom.xml) ..."
  if ! mvn "${args[@]}" >"$CACHE_DIR/fetch.log" 2>&1; then
    cat "$CACHE_DIR/fetch.log" >&2
    die "mvn could not fetch the Kafka jars (output above, also in $CACHE_DIR/fetch.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "mvn finished but $tmp has no kafka_2.13 jar"
  fetch_stamp >"$tmp/.fetched"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  note "fetched Kafka $(kafka_version): $(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1), in $(since "$t0") s -> $LIBS"
}

ensure_fetched() { is_fetched || cmd_fetch; }

kafka_version() {
  local jar
  jar="$(compgen -G "$LIBS/kafka_2.13-*.jar" | head -n1 || true)"
  jar="${jar##*/kafka_2.13-}"
  echo "${jar%.jar}"
}

# ---------------------------------------------------------------- process helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first PORT, PORT+1 pair from FROM on (in steps of 2) that nothing listens on.
AUTO_TRIES=100
free_port_pair() {
  local p="$1" i
  for ((i = 0; i < AUTO_TRIES; i++)); do
    if ! port_open "$p" && ! port_open "$((p + 1))"; then
      echo "$p"
      return 0
    fi
    p=$((p + 2))
  done
  return 1
}

# True if PID exists and is not a zombie.
is_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ -r "/proc/$1/stat" ]] || return 0
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [[ -n "$st" && "$st" != Z ]]
}

# True if PID is a live (not zombie) JVM running our server.properties.
is_our_broker() {
  local pid="$1"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  is_alive "$pid" || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$PROPS" || return 1
  fi
}

running_pid() {
  local pid=""
  [[ -f "$PID_FILE" ]] && pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  if is_our_broker "$pid"; then echo "$pid"; fi
}

load_ports() {
  PORT="$DEFAULT_PORT"
  CPORT=$((PORT + 1))
  if [[ -n "$(running_pid)" && -f "$PORT_FILE" ]]; then read -r PORT CPORT <"$PORT_FILE"; fi
}

bootstrap() { load_ports; echo "127.0.0.1:$PORT"; }

rss_mb() { awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

TOOL_JVM=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2-tools.properties")

kill_and_wait() { # PID: SIGTERM, wait STOP_TIMEOUT, then SIGKILL
  local pid="$1" t0 deadline
  t0="$(now)"
  deadline=$((SECONDS + STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while is_our_broker "$pid"; do
    if ((SECONDS >= deadline)); then
      note "broker (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while is_our_broker "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
      break
    fi
    sleep 0.1
  done
  is_our_broker "$pid" && die "could not stop broker pid $pid"
  note "stopped broker (pid $pid) in $(since "$t0") s"
}

# ---------------------------------------------------------------- start / stop

write_server_properties() {
  local tmp="$PROPS.tmp"
  cat >"$tmp" <<EOF
# Written by scripts/kafka/broker.sh start; rewritten on every start (use --prop to change a setting).
# Single-node KRaft: this one JVM is both the broker and the only controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$LOG_DIRS

# Topics are created explicitly (broker.sh topic create, or the app's admin client), with the
# partition count the test wants; a typo must fail rather than silently create a topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
delete.topic.enable=true

# One node: every internal topic has one replica, and acks=all / transactions work.
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# A restart after a kill -9 waits until the controller fences the old broker session: keep it short
# (default 9 s; a stopped broker is never fenced this way).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

# Small and quick for a test machine (2 cores).
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
offsets.topic.segment.bytes=16777216
transaction.state.log.segment.bytes=16777216
log.index.size.max.bytes=1048576
log.retention.hours=24
log.retention.check.interval.ms=60000
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
  local kv
  if ((${#START_PROPS[@]})); then
    echo "" >>"$tmp"
    echo "# --prop overrides (the last value of a key wins)" >>"$tmp"
    for kv in "${START_PROPS[@]}"; do
      [[ "$kv" == *=* ]] || die "--prop wants key=value, got '$kv'"
      echo "$kv" >>"$tmp"
    done
  fi
  mv "$tmp" "$PROPS"
}

format_storage_if_needed() {
  [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
  local id t0
  t0="$(now)"
  # A random cluster id: 16 random bytes, base64url without padding (what `random-uuid` prints).
  id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  if ! "$KAFKA_JAVA" "${TOOL_JVM[@]}" -cp "$LIBS/*" kafka.tools.StorageTool \
    format --cluster-id "$id" --config "$PROPS" >"$DATA/format.log" 2>&1; then
    cat "$DATA/format.log" >&2
    die "formatting $LOG_DIRS failed"
  fi
  note "formatted $LOG_DIRS (cluster id $id) in $(since "$t0") s"
}

START_PROPS=()
cmd_start() {
  local port="" cport=""
  while (($#)); do
    case "$1" in
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --controller-port) cport="${2:?--controller-port needs a value}"; shift 2 ;;
      --controller-port=*) cport="${1#*=}"; shift ;;
      --prop) START_PROPS+=("${2:?--prop needs key=value}"); shift 2 ;;
      --prop=*) START_PROPS+=("${1#*=}"); shift ;;
      *) die "start: unknown argument '$1' (see $0 help)" ;;
    esac
  done
  mkdir -p "$DATA"
  lock 9 "$DATA/.lock"

  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    load_ports
    if [[ -n "$port" && "$port" != auto && "$port" != "$PORT" ]]; then
      note "already running on port $PORT (pid $pid): --port $port ignored (stop it first to change the port)"
    else
      note "already running (pid $pid)"
    fi
    echo "127.0.0.1:$PORT"
    return 0
  fi
  rm -f "$PID_FILE"

  find_java
  if [[ "$port" == auto ]]; then
    [[ -z "$cport" ]] || die "--port auto picks the controller port too; drop --controller-port"
    port="$(free_port_pair "$DEFAULT_PORT")" ||
      die "no free pair of ports in $DEFAULT_PORT..$((DEFAULT_PORT + 2 * AUTO_TRIES)); use --port N"
    [[ "$port" == "$DEFAULT_PORT" ]] ||
      note "127.0.0.1:$DEFAULT_PORT is taken by another process (not the broker of $DATA); using port $port"
  fi
  PORT="${port:-$DEFAULT_PORT}"
  CPORT="${cport:-$((PORT + 1))}"
  [[ "$PORT" =~ ^[0-9]+$ && "$CPORT" =~ ^[0-9]+$ && "$PORT" != "$CPORT" ]] ||
    die "bad ports: --port '$PORT', --controller-port '$CPORT'"
  local p
  for p in "$PORT" "$CPORT"; do
    if port_open "$p"; then
      die "127.0.0.1:$p is already in use by another process (not the broker of $DATA); use --port N or --port auto, or stop that process"
    fi
  done

  ensure_fetched
  local t0
  t0="$(now)"
  write_server_properties
  format_storage_if_needed
  echo "$PORT $CPORT" >"$PORT_FILE"

  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
  local jvm=(-Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dlog4j2.shutdownHookEnabled=false
    "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2-broker.properties" "-Dkafka.logs.dir=$DATA")
  local extra=()
  read -r -a extra <<<"${MLPREDICT_KAFKA_JVM_OPTS:-}"
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  # Own session (no Ctrl-C / SIGHUP from the caller's terminal), std streams to the log, and the
  # lock fds closed so the broker does not hold them.
  "${detach[@]}" nohup "$KAFKA_JAVA" "${jvm[@]}" "${extra[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOG" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  # Ready = the broker logged "Kafka Server started" (KRaft logs it once the broker is registered
  # and unfenced, i.e. it serves metadata and produce requests) and the port accepts connections.
  local deadline=$((SECONDS + START_TIMEOUT)) why=""
  while :; do
    if ! is_alive "$pid"; then why="the broker process exited"; break; fi
    if grep -q "Kafka Server started" "$LOG" 2>/dev/null && port_open "$PORT"; then break; fi
    if ((SECONDS >= deadline)); then why="not ready after ${START_TIMEOUT}s"; break; fi
    sleep 0.2
  done
  if [[ -n "$why" ]]; then
    echo "----- last 60 lines of $LOG -----" >&2
    tail -n 60 "$LOG" >&2 || true
    echo "-----" >&2
    if is_our_broker "$pid"; then STOP_TIMEOUT=10 kill_and_wait "$pid" || true; fi
    rm -f "$PID_FILE"
    die "start failed: $why (log: $LOG)"
  fi
  note "Kafka $(kafka_version) ready on 127.0.0.1:$PORT (controller $CPORT, pid $pid) in $(since "$t0") s; data $DATA"
  echo "127.0.0.1:$PORT"
}

cmd_stop() {
  [[ -d "$DATA" ]] || { note "not running (no $DATA)"; return 0; }
  lock 9 "$DATA/.lock"
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    note "not running"
    return 0
  fi
  kill_and_wait "$pid"
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    echo "stopped (data: $DATA)"
    return 3
  fi
  load_ports
  local ready="not accepting connections"
  port_open "$PORT" && ready="accepting connections"
  echo "running: pid $pid, bootstrap 127.0.0.1:$PORT ($ready), controller 127.0.0.1:$CPORT, Kafka $(kafka_version), RSS $(rss_mb "$pid") MB, data $DATA"
}

cmd_reset() {
  cmd_stop
  if [[ -d "$DATA" ]]; then
    [[ -f "$PROPS" || -z "$(ls -A "$DATA")" || "$(ls -A "$DATA")" == .lock ]] ||
      die "$DATA does not look like a broker data dir; not deleting it"
    rm -rf "$DATA"
    note "deleted $DATA"
  fi
}

# ---------------------------------------------------------------- CLI tools

run_tool() { # CLASS ARGS...
  local cls="$1"
  shift
  case "$cls" in
    org.* | kafka.* | com.* | io.*) ;;
    *) cls="org.apache.kafka.tools.$cls" ;; # TopicCommand, consumer.ConsoleConsumer, ...
  esac
  find_java
  ensure_fetched
  "$KAFKA_JAVA" "${TOOL_JVM[@]}" -cp "$LIBS/*" "$cls" "$@"
}

require_running() {
  load_ports
  port_open "$PORT" || die "no broker on 127.0.0.1:$PORT; start it with: $0 start"
}

cmd_topic() {
  local sub="${1:-}"
  (($#)) && shift
  require_running
  local bs="127.0.0.1:$PORT"
  case "$sub" in
    create)
      (($# >= 2)) || die "usage: topic create NAME PARTITIONS [--compact] [--config k=v]..."
      local name="$1" parts="$2" cfg=()
      shift 2
      [[ "$parts" =~ ^[0-9]+$ ]] || die "PARTITIONS must be a number, got '$parts'"
      while (($#)); do
        case "$1" in
          --compact) cfg+=(--config cleanup.policy=compact); shift ;;
          --config) cfg+=(--config "${2:?--config needs k=v}"); shift 2 ;;
          *) die "topic create: unknown argument '$1'" ;;
        esac
      done
      run_tool TopicCommand --bootstrap-server "$bs" --create --if-not-exists --topic "$name" \
        --partitions "$parts" --replication-factor 1 "${cfg[@]}"
      ;;
    delete)
      (($# == 1)) || die "usage: topic delete NAME"
      run_tool TopicCommand --bootstrap-server "$bs" --delete --if-exists --topic "$1"
      ;;
    list) run_tool TopicCommand --bootstrap-server "$bs" --list ;;
    describe)
      if (($#)); then
        run_tool TopicCommand --bootstrap-server "$bs" --describe --topic "$1"
      else
        run_tool TopicCommand --bootstrap-server "$bs" --describe
      fi
      ;;
    produce)
      (($# >= 1)) || die "usage: topic produce NAME [--key-separator SEP] < lines"
      local name="$1" kopts=()
      shift
      while (($#)); do
        case "$1" in
          --key-separator) kopts=(--reader-property parse.key=true --reader-property "key.separator=${2:?}"); shift 2 ;;
          *) die "topic produce: unknown argument '$1'" ;;
        esac
      done
      run_tool ConsoleProducer --bootstrap-server "$bs" --topic "$name" \
        --command-property acks=all --command-property enable.idempotence=true "${kopts[@]}"
      ;;
    consume)
      (($# >= 1)) || die "usage: topic consume NAME [--max N] [--timeout-ms MS] [--read-uncommitted] [--keys] [--group G]"
      local name="$1" opts=(--from-beginning) iso=read_committed timeout=10000
      shift
      while (($#)); do
        case "$1" in
          --max) opts+=(--max-messages "${2:?}"); shift 2 ;;
          --timeout-ms) timeout="${2:?}"; shift 2 ;;
          --read-uncommitted) iso=read_uncommitted; shift ;;
          --keys) opts+=(--formatter-property print.key=true); shift ;;
          --group) opts+=(--group "${2:?}"); shift 2 ;;
          *) die "topic consume: unknown argument '$1'" ;;
        esac
      done
      run_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bs" --topic "$name" \
        --isolation-level "$iso" --timeout-ms "$timeout" "${opts[@]}"
      ;;
    *) die "usage: topic create|delete|list|describe|produce|consume ... (see $0 help)" ;;
  esac
}

# ---------------------------------------------------------------- selftest

cmd_selftest() {
  local t0 bs n=30 suffix in out got
  t0="$(now)"
  bs="$(cmd_start)"
  suffix="$$-$RANDOM"
  in="selftest-in-$suffix"
  out="selftest-out-$suffix"
  cmd_topic create "$in" 1 >/dev/null
  cmd_topic create "$out" 3 >/dev/null
  seq 1 "$n" | sed 's/^/k&:v&/' | cmd_topic produce "$in" --key-separator :
  got="$(cmd_topic consume "$in" --max "$n" --read-uncommitted 2>/dev/null | wc -l)"
  [[ "$got" == "$n" ]] || die "selftest: produced $n, consumed $got from $in"
  note "selftest: produce/consume ok ($n messages)"

  # Exactly-once read-process-write: copy in -> out in transactions of 7, offsets committed in the
  # transaction, some transactions aborted on purpose and redone. read_committed must see each once.
  run_tool TransactionalMessageCopier --broker-list "$bs" --transactional-id "selftest-tx-$suffix" \
    --input-topic "$in" --input-partition 0 --output-topic "$out" --consumer-group "selftest-$suffix" \
    --transaction-size 7 --max-messages "$n" --enable-random-aborts --use-group-metadata >/dev/null
  local copied
  copied="$(cmd_topic consume "$out" --max "$((n + 1))" --timeout-ms 3000 2>/dev/null)"
  got="$(printf '%s\n' "$copied" | grep -c . || true)"
  [[ "$got" == "$n" && "$(printf '%s\n' "$copied" | sort -u | grep -c .)" == "$n" ]] ||
    die "selftest: read_committed sees $got messages in $out (distinct: $(printf '%s\n' "$copied" | sort -u | grep -c .)), want $n each once"
  local all
  all="$(cmd_topic consume "$out" --read-uncommitted --timeout-ms 3000 2>/dev/null | grep -c . || true)"
  note "selftest: $out holds $all records; read_committed hides the $((all - n)) from aborted transactions"
  run_tool TransactionsCommand --bootstrap-server "$bs" list | grep -q "selftest-tx-$suffix" ||
    die "selftest: TransactionsCommand does not list selftest-tx-$suffix"
  cmd_topic list | grep -qx __transaction_state || die "selftest: no __transaction_state topic"
  note "selftest: transactions ok ($n messages copied exactly once under read_committed)"

  cmd_topic delete "$in" >/dev/null
  cmd_topic delete "$out" >/dev/null
  note "selftest passed in $(since "$t0") s ($bs)"
}

# ---------------------------------------------------------------- main

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

main() {
  local cmd="${1:-help}"
  (($#)) && shift
  case "$cmd" in
    deps) cmd_deps "$@" ;;
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start "$@" ;;
    status) cmd_status ;;
    bootstrap) bootstrap ;;
    logs) tail -n "${1:-100}" "$LOG" ;;
    reset) cmd_reset ;;
    topic) cmd_topic "$@" ;;
    tool)
      (($#)) || die "usage: tool CLASS [ARGS...]"
      run_tool "$@"
      ;;
    selftest) cmd_selftest ;;
    help | -h | --help) usage ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
