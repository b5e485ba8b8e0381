#!/usr/bin/env bash
# `npm start`: brings up the local services (scripts/services.sh), migrates, then runs the api,
# worker and relay processes until Ctrl-C. Output of each process goes to the terminal prefixed
# with its name, and unprefixed to $LEDGERLINE_RUN_DIR/<name>.log.
#
# Ctrl-C / SIGTERM: SIGTERM to every process started here, up to 15 s to finish, then SIGKILL;
# a second Ctrl-C kills at once. The Kafka mock is stopped only if this run started it;
# Postgres and Redis are left running. If any process exits on its own, the rest are stopped.
#
# Options: --api N (API processes; N > 1 puts Debian's nginx on PORT in front of them, the api
# processes listen on PORT+1..PORT+N: the same topology as docker-compose), --workers N.
#   npm start -- --api 3 --workers 2
#
# Environment (all optional): NODE_ENV (development), PORT (3000), ADMIN_TOKEN (generated when
# unset outside production, kept in $LEDGERLINE_RUN_DIR/admin-token), API_PROCESSES (1, same as
# --api), WORKER_PROCESSES (1, same as --workers), METRICS_BASE_PORT (9464: the relay's
# /metrics; worker i serves it on METRICS_BASE_PORT+i), LEDGERLINE_RUN_DIR (/tmp/ledgerline),
# KAFKA_PORT (19092), GATEWAY_SIM_PORT (4010; the simulator is started unless GATEWAY_URL is set),
# plus everything src/config.ts reads (DATABASE_URL, REDIS_URL, ...).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export NODE_ENV="${NODE_ENV:-development}"
export PORT="${PORT:-3000}"
export LEDGERLINE_RUN_DIR="${LEDGERLINE_RUN_DIR:-/tmp/ledgerline}"
RUN_DIR="$LEDGERLINE_RUN_DIR"
API_PROCESSES="${API_PROCESSES:-1}"
WORKER_PROCESSES="${WORKER_PROCESSES:-1}"
METRICS_BASE_PORT="${METRICS_BASE_PORT:-9464}"
SHUTDOWN_GRACE_SECONDS=15
HEALTH_TIMEOUT_SECONDS=90

say() { printf 'start: %s\n' "$*"; }
die() {
  printf 'start: ERROR: %s\n' "$*" >&2
  exit 1
}

while (($#)); do
  case "$1" in
    --api) API_PROCESSES="${2:-}"; shift 2 ;;
    --api=*) API_PROCESSES="${1#*=}"; shift ;;
    --workers) WORKER_PROCESSES="${2:-}"; shift 2 ;;
    --workers=*) WORKER_PROCESSES="${1#*=}"; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (use --api N, --workers N)" ;;
  esac
done

[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "PORT must be a port number, got '$PORT'"
[[ "$API_PROCESSES" =~ ^[0-9]+$ ]] && ((API_PROCESSES >= 1)) || die "API_PROCESSES must be >= 1, got '$API_PROCESSES'"
[[ "$WORKER_PROCESSES" =~ ^[0-9]+$ ]] || die "WORKER_PROCESSES must be >= 0, got '$WORKER_PROCESSES'"
[[ "$METRICS_BASE_PORT" =~ ^[0-9]+$ ]] || die "METRICS_BASE_PORT must be a port number, got '$METRICS_BASE_PORT'"
# More than one api process: nginx listens on PORT, the api processes on PORT+1..PORT+N.
USE_NGINX=0
((API_PROCESSES > 1)) && USE_NGINX=1
NGINX_BIN=""
if ((USE_NGINX)); then
  NGINX_BIN=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
fi

API_ENTRY=src/api/server.ts
WORKER_ENTRY=src/workers/main.ts
RELAY_ENTRY=src/events/relay-main.ts
CONSUMER_ENTRY=src/events/consumers/main.ts
MIGRATE_ENTRY=src/db/migrate-main.ts
GATEWAY_SIM_ENTRY=src/gateway-sim/main.ts
for f in "$API_ENTRY" "$WORKER_ENTRY" "$RELAY_ENTRY" "$CONSUMER_ENTRY" "$MIGRATE_ENTRY" "$GATEWAY_SIM_ENTRY"; do
  [[ -f "$f" ]] || die "$f is missing"
done
[[ -d node_modules ]] || die "node_modules is missing: run npm ci first"

# --- state shared with the signal handlers ----------------------------------------------------
PIDS=()   # node processes started here
NAMES=()  # their names, same index
KAFKA_STARTED_HERE=0
STOPPING=0
FORCE=0

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]; }

stop_all() {
  local code=$1 i pid deadline
  STOPPING=1
  # A second signal cuts the grace period short, but not one within 0.5 s of the first: under
  # `npm start` the terminal's Ctrl-C reaches npm too, and npm forwards it here a moment later.
  # (The trap is a plain assignment: bash loses function-local scopes when a trap recurses.)
  # shellcheck disable=SC2034 # STOP_T0 is read by the trap string
  STOP_T0=$(now_us)
  trap '(($(now_us) - STOP_T0 > 500000)) && FORCE=1' INT TERM HUP
  if ((${#PIDS[@]})); then
    say "stopping ${NAMES[*]} (SIGTERM, up to ${SHUTDOWN_GRACE_SECONDS} s)"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + SHUTDOWN_GRACE_SECONDS))
    while ((SECONDS < deadline && !FORCE)); do
      local any=0
      for pid in "${PIDS[@]}"; do alive "$pid" && any=1; done
      ((any)) || break
      # In the background, a child ignores the terminal's SIGINT (a foreground sleep killed by a
      # second Ctrl-C makes bash exit from inside this handler); `wait` still lets the trap run.
      sleep 0.2 &
      wait $! || true
    done
    for i in "${!PIDS[@]}"; do
      if alive "${PIDS[$i]}"; then
        say "${NAMES[$i]} (pid ${PIDS[$i]}) is still running; SIGKILL"
        kill -KILL "${PIDS[$i]}" 2>/dev/null || true
      fi
    done
    wait "${PIDS[@]}" 2>/dev/null || true
    sleep 0.2 # let the log pipes drain
  fi
  if ((KAFKA_STARTED_HERE)); then svc_stop_kafka || true; fi
  ((${#PIDS[@]} == 0 && KAFKA_STARTED_HERE == 0)) || say "stopped"
  exit "$code"
}

on_signal() { stop_all $((128 + $1)); }
trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP
# Any other exit (set -e, die) must not leave children behind.
on_exit() {
  local rc=$1 pid
  if ((!STOPPING)); then
    stop_all "$rc"
  else
    # Leaving in the middle of stop_all: nothing may outlive this script.
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
}
trap 'on_exit $?' EXIT

# --- admin token ------------------------------------------------------------------------------
if [[ -z "${ADMIN_TOKEN:-}" ]]; then
  [[ "$NODE_ENV" != production ]] || die "ADMIN_TOKEN is required when NODE_ENV=production"
  mkdir -p "$RUN_DIR"
  token_file="$RUN_DIR/admin-token"
  if [[ -s "$token_file" ]] && (($(wc -c <"$token_file") > 16)); then
    ADMIN_TOKEN=$(<"$token_file")
  else
    ADMIN_TOKEN=$(openssl rand -hex 24 2>/dev/null \
      || node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("hex"))')
    (umask 077 && printf '%s' "$ADMIN_TOKEN" >"$token_file")
  fi
  export ADMIN_TOKEN
fi

# --- services ---------------------------------------------------------------------------------
# shellcheck source=scripts/services.sh
source scripts/services.sh
svc_ensure
KAFKA_STARTED_HERE="${LEDGERLINE_KAFKA_STARTED:-0}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-$SVC_KAFKA_ADDR}"

if ((USE_NGINX)) && [[ -z "$NGINX_BIN" ]]; then
  NGINX_BIN=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
  [[ -n "$NGINX_BIN" ]] || die "--api $API_PROCESSES needs nginx (apt-get install nginx; scripts/services.sh installs it)"
fi

# Something else answering /healthz on our port would pass for a healthy api.
for ((i = 0; i < API_PROCESSES + USE_NGINX; i++)); do
  ! svc_port_open 127.0.0.1 $((PORT + i)) || die "port $((PORT + i)) is already in use (another npm start?); set PORT"
done
for ((i = 0; i <= WORKER_PROCESSES; i++)); do
  ! svc_port_open 127.0.0.1 $((METRICS_BASE_PORT + i)) \
    || die "metrics port $((METRICS_BASE_PORT + i)) is already in use; set METRICS_BASE_PORT"
done

# The payment gateway simulator, unless GATEWAY_URL points at a gateway already.
START_GATEWAY_SIM=0
if [[ -z "${GATEWAY_URL:-}" ]]; then
  export GATEWAY_SIM_PORT="${GATEWAY_SIM_PORT:-4010}"
  ! svc_port_open 127.0.0.1 "$GATEWAY_SIM_PORT" || die "port $GATEWAY_SIM_PORT (gateway simulator) is in use; set GATEWAY_SIM_PORT"
  export GATEWAY_URL="http://127.0.0.1:$GATEWAY_SIM_PORT"
  START_GATEWAY_SIM=1
fi

# --- process launching ------------------------------------------------------------------------
NAME_WIDTH=9
((API_PROCESSES > 1 || WORKER_PROCESSES > 1)) && NAME_WIDTH=9

# Starts one node process in its own session (so a terminal Ctrl-C reaches only this script,
# which then shuts everything down in order), output teed to its log and to the terminal.
# The log pipe ignores INT/HUP/TERM (`timeout` signals its whole process group) so it keeps
# draining while the process shuts down.
launch_cmd() {
  local name=$1 label log
  shift
  printf -v label "%-${NAME_WIDTH}s" "$name"
  log="$RUN_DIR/$name.log"
  [[ -f "$log" ]] && mv -f "$log" "$log.1"
  setsid "$@" </dev/null \
    > >(trap '' INT HUP TERM; tee -a "$log" | sed -u "s/^/$label | /") 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}
# launch <name> <PORT> <entry> [<METRICS_PORT> [arguments of the entry...]]
launch() {
  local flags=()
  # V8 flags per entry, as every other launcher passes them (src/infra/node-flags.ts).
  [[ "$3" == "$RELAY_ENTRY" ]] && flags=(--initial-old-space-size=64)
  PORT="$2" METRICS_PORT="${4:-0}" launch_cmd "$1" node "${flags[@]}" --import tsx "$3" "${@:5}"
}

say "running migrations ($MIGRATE_ENTRY)"
migrate_log="$RUN_DIR/migrate.log"
[[ -f "$migrate_log" ]] && mv -f "$migrate_log" "$migrate_log.1"
if ! node --import tsx "$MIGRATE_ENTRY" </dev/null 2>&1 | tee "$migrate_log" | sed -u "s/^/migrate | /"; then
  die "migrations failed (log: $migrate_log)"
fi

((START_GATEWAY_SIM)) && launch gateway "$PORT" "$GATEWAY_SIM_ENTRY"
API_PORTS=()
for ((i = 0; i < API_PROCESSES; i++)); do
  name=api
  ((API_PROCESSES > 1)) && name="api-$((i + 1))"
  launch "$name" $((PORT + USE_NGINX + i)) "$API_ENTRY"
  API_PORTS+=($((PORT + USE_NGINX + i)))
done
for ((i = 0; i < WORKER_PROCESSES; i++)); do
  name=worker
  ((WORKER_PROCESSES > 1)) && name="worker-$((i + 1))"
  launch "$name" "$PORT" "$WORKER_ENTRY" $((METRICS_BASE_PORT + 1 + i))
done
launch relay "$PORT" "$RELAY_ENTRY" "$METRICS_BASE_PORT"
# Event consumers (docs/events.md), one process each in its own consumer group.
for consumer in audit analytics fraud webhooks; do launch "$consumer" "$PORT" "$CONSUMER_ENTRY" 0 "$consumer"; done
if ((USE_NGINX)); then
  # Round robin over the api processes, the proxy rules of the compose load balancer.
  nginx_conf=$(bash scripts/nginx-local.sh "$RUN_DIR/nginx" "$PORT" "${API_PORTS[@]}")
  "$NGINX_BIN" -t -q -p "$RUN_DIR/nginx" -c "$nginx_conf" -g 'daemon off;' 2>&1 || die "nginx rejected $nginx_conf"
  launch_cmd nginx "$NGINX_BIN" -p "$RUN_DIR/nginx" -c "$nginx_conf" -g 'daemon off;'
fi

# --- wait for health --------------------------------------------------------------------------
healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz" 2>/dev/null
  else
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "http://127.0.0.1:$1/healthz"
  fi
}

first_dead() {
  local i
  for i in "${!PIDS[@]}"; do
    alive "${PIDS[$i]}" || { echo "$i"; return 0; }
  done
  return 1
}

deadline=$((SECONDS + HEALTH_TIMEOUT_SECONDS))
CHECK_PORTS=("${API_PORTS[@]}")
((USE_NGINX)) && CHECK_PORTS+=("$PORT")
for port in "${CHECK_PORTS[@]}"; do
  until healthy "$port"; do
    if dead=$(first_dead); then
      code=0
      wait "${PIDS[$dead]}" || code=$?
      die "${NAMES[$dead]} exited with code $code during start-up (log: $RUN_DIR/${NAMES[$dead]}.log)"
    fi
    ((SECONDS < deadline)) || die "no 200 from http://127.0.0.1:$port/healthz after ${HEALTH_TIMEOUT_SECONDS} s"
    sleep 0.3
  done
done

base="http://127.0.0.1:$PORT"
api_line="$base"
((USE_NGINX)) && api_line="$base (nginx) → ${API_PROCESSES} api processes on ports ${API_PORTS[*]}"
metrics_line="api: <api>/metrics on ${API_PORTS[*]}; relay: $METRICS_BASE_PORT"
((WORKER_PROCESSES > 0)) && metrics_line+="; workers: $((METRICS_BASE_PORT + 1))…$((METRICS_BASE_PORT + WORKER_PROCESSES))"
kafka_line="$KAFKA_BROKERS"
if [[ -f "$RUN_DIR/kafka.bootstrap" && "$KAFKA_BROKERS" == "$SVC_KAFKA_ADDR" ]]; then
  kafka_line="$KAFKA_BROKERS (librdkafka mock cluster: $(<"$RUN_DIR/kafka.bootstrap"))"
fi
cat <<EOF

  Ledgerline is up (NODE_ENV=$NODE_ENV)
    API           $api_line
    Admin token   $ADMIN_TOKEN
    Bull Board    $base/admin/queues   (basic auth, password = admin token)
    OpenAPI       $base/openapi.json
    Metrics       $metrics_line
    API docs      $base/docs
    Kafka         $kafka_line, topic ${KAFKA_TOPIC:-ledger.events}
    Gateway       $GATEWAY_URL$( ((START_GATEWAY_SIM)) && echo " (simulator; POST $GATEWAY_URL/control {\"outage\":true})")
    Logs          $RUN_DIR/{$(IFS=,; echo "${NAMES[*]}")}.log
  Ctrl-C stops ${NAMES[*]}.

EOF

# --- run until a signal or until a process exits on its own ----------------------------------
RESTARTS=0
while true; do
  died=""
  code=0
  wait -n -p died "${PIDS[@]}" || code=$?
  if [[ -n "$died" ]]; then
    idx=""
    for i in "${!PIDS[@]}"; do [[ "${PIDS[$i]}" == "$died" ]] && { name="${NAMES[$i]}"; idx=$i; }; done
    # Behind nginx an api process that dies is replaced on its port (nginx sends its traffic
    # to the others meanwhile), like a container restart; anything else stops the run.
    if ((USE_NGINX)) && [[ "${name:-}" == api-* && -n "$idx" ]] && ((RESTARTS < 10)); then
      RESTARTS=$((RESTARTS + 1))
      port=${API_PORTS[$((${name#api-} - 1))]}
      say "$name exited with code $code; restarting it on port $port (restart $RESTARTS of 10)"
      unset 'PIDS[idx]' 'NAMES[idx]'
      PIDS=("${PIDS[@]}")
      NAMES=("${NAMES[@]}")
      launch "$name" "$port" "$API_ENTRY"
      continue
    fi
    say "${name:-process $died} exited with code $code; stopping the others"
    stop_all 1
  fi
done
