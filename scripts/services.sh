#!/usr/bin/env bash
# Ensures the local services Ledgerline runs against: Postgres and Redis on 127.0.0.1, and a
# Kafka-protocol broker at the fixed address 127.0.0.1:$KAFKA_PORT (librdkafka's mock cluster,
# run by kcat, behind socat, because the mock picks random ports on every start).
# Idempotent: whatever already runs is left alone. Postgres and Redis are never stopped.
#
#   scripts/services.sh              ensure everything is up (default)
#   scripts/services.sh stop-kafka   stop the kcat + socat this script started
#
# Sourced (`source scripts/services.sh`), it only defines the svc_* functions; svc_ensure sets
# LEDGERLINE_KAFKA_STARTED=1 when it started the mock, so the caller knows to stop it.
#
# Environment: LEDGERLINE_RUN_DIR (default /tmp/ledgerline: logs and pid files), KAFKA_PORT
# (default 19092), KAFKA_BROKERS (when set and not pointing at 127.0.0.1:$KAFKA_PORT, no mock is
# started), CI (when true, a freshly installed Postgres is switched to trust auth on localhost).
set -euo pipefail

SVC_RUN_DIR="${LEDGERLINE_RUN_DIR:-/tmp/ledgerline}"
SVC_KAFKA_PORT="${KAFKA_PORT:-19092}"
SVC_KAFKA_ADDR="127.0.0.1:${SVC_KAFKA_PORT}"
SVC_PG_PORT=5432
SVC_REDIS_PORT=6379
SVC_INSTALLED_POSTGRES=0
LEDGERLINE_KAFKA_STARTED="${LEDGERLINE_KAFKA_STARTED:-0}"

svc_say() { printf 'services: %s\n' "$*"; }
svc_die() {
  printf 'services: ERROR: %s\n' "$*" >&2
  exit 1
}

# True when something accepts TCP connections on host:port.
svc_port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# True when pid is a live (non-zombie) process whose command name is $2.
svc_pid_is() {
  local pid=$1 name=$2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/comm" ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
  [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]
}

svc_install_missing() {
  local missing=()
  { command -v pg_ctlcluster && command -v pg_isready && command -v psql; } >/dev/null 2>&1 \
    || missing+=(postgresql)
  { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || missing+=(redis-server)
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  command -v socat >/dev/null 2>&1 || missing+=(socat)
  # nginx: the load balancer of `npm start -- --api N`; promtool (package prometheus) and
  # docker-compose: the alert-rule and compose-file checks in `npm test`.
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  ((${#missing[@]} == 0)) && return 0

  svc_say "installing missing packages: ${missing[*]}"
  local apt=(apt-get)
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 \
      || svc_die "missing packages (${missing[*]}) and not root; install them with apt-get"
    apt=(sudo apt-get)
  fi
  command -v apt-get >/dev/null 2>&1 \
    || svc_die "missing packages (${missing[*]}) and no apt-get on this machine"
  mkdir -p "$SVC_RUN_DIR"
  if ! { "${apt[@]}" update \
    && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } \
    >"$SVC_RUN_DIR/apt.log" 2>&1; then
    tail -n 20 "$SVC_RUN_DIR/apt.log" >&2
    svc_die "apt-get install ${missing[*]} failed (full log: $SVC_RUN_DIR/apt.log)"
  fi
  [[ " ${missing[*]} " == *" postgresql "* ]] && SVC_INSTALLED_POSTGRES=1
  svc_say "installed ${missing[*]}"
}

svc_pg_ready() { pg_isready -q -h 127.0.0.1 -p "$SVC_PG_PORT" >/dev/null 2>&1; }
# SQL over this cluster's Unix socket, as the postgres OS user when we are not it (peer auth).
svc_pg_local_sql() {
  psql -p "$SVC_PG_PORT" -U postgres -d postgres -w -Atqc "$1" 2>/dev/null \
    || su postgres -c "psql -p $SVC_PG_PORT -d postgres -w -Atqc \"$1\"" 2>/dev/null
}
svc_pg_login() { psql -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres -w -Atqc 'select 1' >/dev/null 2>&1; }
# A server setting's value (in its base unit: MB for max_wal_size); fails when Postgres does not answer.
svc_pg_setting() { psql -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres -w -Atqc "SELECT setting FROM pg_settings WHERE name = '$1'" 2>/dev/null; }

# The test suite runs several worlds at once, each with pools on up to four shard databases, and
# the shard-move test adds a process of its own: Debian's default of 100 connections is too few.
SVC_PG_MIN_CONNECTIONS=${SVC_PG_MIN_CONNECTIONS:-300}
svc_pg_connections() {
  local current line ver name
  current=$(svc_pg_setting max_connections) || return 0
  ((current >= SVC_PG_MIN_CONNECTIONS)) && return 0
  line=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$SVC_PG_PORT" '$3 == p { print; exit }')
  [[ -n "$line" ]] || { svc_say "postgres: max_connections is $current (< $SVC_PG_MIN_CONNECTIONS); not a Debian cluster, left alone"; return 0; }
  read -r ver name _ <<<"$line"
  svc_say "postgres: raising max_connections from $current to $SVC_PG_MIN_CONNECTIONS (restarts $ver/$name)"
  psql -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres -w -qc "ALTER SYSTEM SET max_connections = $SVC_PG_MIN_CONNECTIONS" \
    || svc_die "postgres: ALTER SYSTEM failed"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart </dev/null >"$SVC_RUN_DIR/postgres-restart.log" 2>&1 \
    || svc_die "postgres: restart failed (see $SVC_RUN_DIR/postgres-restart.log)"
  local i
  for ((i = 0; i < 60; i++)); do svc_pg_ready && return 0; sleep 0.5; done
  svc_die "postgres: not back after the restart"
}

# A ledger writes WAL fast (the benchmark's bulk phase ~0.5 GB in a minute): at Postgres's default
# 1 GB, checkpoints came every 15-22 s, and in npm run bench the accept p95 at half our maximum was
# 24-26 ms against 17-20 ms at 4 GB (three alternating pairs). Raised only, applied by a reload.
SVC_PG_MIN_WAL_MB=${SVC_PG_MIN_WAL_MB:-4096}
# Each new 16 MB WAL segment is zero-filled and fsynced while commits wait (every ~2.3 s at the
# benchmark's fixed rate, until checkpoints leave segments to recycle: a fresh cluster creates
# all of them): commits stalled 31-63 ms at each. Off, a segment is created by writing its last
# byte (Postgres's documented setting; ext4 allocates the blocks as WAL is written). "on" keeps
# the default.
SVC_PG_WAL_INIT_ZERO=${SVC_PG_WAL_INIT_ZERO:-off}
svc_pg_wal() {
  local current changes=()
  [[ "$SVC_PG_WAL_INIT_ZERO" == on || "$SVC_PG_WAL_INIT_ZERO" == off ]] || svc_die "SVC_PG_WAL_INIT_ZERO must be on or off"
  current=$(svc_pg_setting max_wal_size) || return 0
  if ((current < SVC_PG_MIN_WAL_MB)); then
    svc_say "postgres: raising max_wal_size from ${current} MB to ${SVC_PG_MIN_WAL_MB} MB (reload)"
    changes+=(-c "ALTER SYSTEM SET max_wal_size = '${SVC_PG_MIN_WAL_MB}MB'")
  fi
  current=$(svc_pg_setting wal_init_zero) || current=$SVC_PG_WAL_INIT_ZERO
  if [[ "$current" != "$SVC_PG_WAL_INIT_ZERO" ]]; then
    svc_say "postgres: wal_init_zero ${current} -> ${SVC_PG_WAL_INIT_ZERO} (reload)"
    changes+=(-c "ALTER SYSTEM SET wal_init_zero = ${SVC_PG_WAL_INIT_ZERO}")
  fi
  ((${#changes[@]} > 0)) || return 0
  psql -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres -w -q "${changes[@]}" -c "SELECT pg_reload_conf()" >/dev/null \
    || svc_say "postgres: could not change the WAL settings; left as they are"
}

svc_ensure_postgres() {
  if svc_pg_ready; then
    svc_say "postgres: already running on 127.0.0.1:$SVC_PG_PORT"
  else
    # The Debian cluster listening on our port (the package creates <version>/main).
    local line ver name
    line=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$SVC_PG_PORT" '$3 == p { print; exit }')
    if [[ -z "$line" ]]; then
      ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
      [[ -n "$ver" ]] || svc_die "postgres: no server installed under /usr/lib/postgresql"
      svc_say "postgres: creating cluster $ver/main on port $SVC_PG_PORT"
      pg_createcluster -p "$SVC_PG_PORT" "$ver" main >"$SVC_RUN_DIR/postgres-create.log" 2>&1 \
        || svc_die "postgres: pg_createcluster failed (see $SVC_RUN_DIR/postgres-create.log)"
    else
      read -r ver name _ <<<"$line"
    fi
    name=${name:-main}
    svc_say "postgres: starting cluster $ver/$name"
    if ! pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start \
      </dev/null >"$SVC_RUN_DIR/postgres-start.log" 2>&1; then
      cat "$SVC_RUN_DIR/postgres-start.log" >&2
      svc_die "postgres: pg_ctlcluster $ver $name start failed"
    fi
    local i
    for ((i = 0; i < 60; i++)); do svc_pg_ready && break; sleep 0.5; done
    svc_pg_ready || svc_die "postgres: not accepting connections on 127.0.0.1:$SVC_PG_PORT after 30 s"
    svc_say "postgres: started ($ver/$name, 127.0.0.1:$SVC_PG_PORT)"
  fi

  svc_pg_login && return 0
  # A fresh Debian cluster wants a password over TCP; the app connects as postgres without one.
  if [[ "$SVC_INSTALLED_POSTGRES" == 1 || "${CI:-}" == true ]]; then
    # Over the Unix socket (peer auth as the postgres OS user), on this cluster's port.
    local hba
    hba=$(svc_pg_local_sql 'show hba_file') && [[ -f "$hba" ]] \
      || svc_die "postgres: cannot log in over the local socket to find pg_hba.conf"
    svc_say "postgres: allowing passwordless (trust) logins from localhost in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    svc_pg_local_sql 'select pg_reload_conf()' >/dev/null || svc_die "postgres: pg_reload_conf() failed"
    sleep 0.5
    svc_pg_login && return 0
  fi
  svc_die "postgres: running, but 'psql -h 127.0.0.1 -U postgres' is refused; allow trust auth for 127.0.0.1 in pg_hba.conf or set DATABASE_URL with a password"
}

svc_redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$SVC_REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

svc_ensure_redis() {
  if svc_redis_ready; then
    svc_say "redis: already running on 127.0.0.1:$SVC_REDIS_PORT"
    return 0
  fi
  svc_say "redis: starting"
  if ! redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$SVC_REDIS_PORT" \
    --save "" --appendonly no --dir "$SVC_RUN_DIR" --logfile "$SVC_RUN_DIR/redis.log" \
    </dev/null >"$SVC_RUN_DIR/redis-start.log" 2>&1; then
    cat "$SVC_RUN_DIR/redis-start.log" >&2
    svc_die "redis: redis-server failed to start"
  fi
  local i
  for ((i = 0; i < 50; i++)); do svc_redis_ready && break; sleep 0.2; done
  svc_redis_ready || svc_die "redis: no PONG on 127.0.0.1:$SVC_REDIS_PORT after 10 s (see $SVC_RUN_DIR/redis.log)"
  svc_say "redis: started (127.0.0.1:$SVC_REDIS_PORT, log $SVC_RUN_DIR/redis.log)"
}

# Cheap liveness probe: a metadata request through the fixed address.
svc_kafka_answers() { timeout 15 kcat -b "$SVC_KAFKA_ADDR" -L -m 5 >/dev/null 2>&1; }

# Produces one unique message through the fixed address and reads it back.
svc_kafka_smoke() {
  local token topic=ledgerline.smoke
  token="smoke-$$-$RANDOM"
  printf '%s\n' "$token" | timeout 20 kcat -b "$SVC_KAFKA_ADDR" -P -t "$topic" -m 10 \
    2>"$SVC_RUN_DIR/kafka-smoke.err" || return 1
  timeout 20 kcat -b "$SVC_KAFKA_ADDR" -C -t "$topic" -o beginning -e -q -m 10 \
    2>>"$SVC_RUN_DIR/kafka-smoke.err" | grep -qx "$token"
}

svc_stop_kafka() {
  local name pidfile pid stopped=0 i
  for name in socat kcat; do
    pidfile="$SVC_RUN_DIR/$name.pid"
    [[ -f "$pidfile" ]] || continue
    pid=$(<"$pidfile")
    if svc_pid_is "$pid" "$name"; then
      # Each was started as its own session/process-group leader; the group also holds
      # socat's per-connection children.
      if [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" == "$pid" ]]; then
        kill -TERM -- "-$pid" 2>/dev/null || true
      else
        kill -TERM "$pid" 2>/dev/null || true
      fi
      for ((i = 0; i < 50; i++)); do svc_pid_is "$pid" "$name" || break; sleep 0.1; done
      if svc_pid_is "$pid" "$name"; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
      stopped=1
    fi
    rm -f "$pidfile"
  done
  rm -f "$SVC_RUN_DIR/kafka.bootstrap"
  if ((stopped)); then svc_say "kafka: mock broker stopped"; else svc_say "kafka: no mock broker of ours was running"; fi
}

svc_start_kafka() {
  local err="$SVC_RUN_DIR/kcat.err" kpid spid bootstrap="" first i
  : >"$err"
  # setsid: own session, so a Ctrl-C in the caller's terminal does not reach it; all fds
  # redirected, so it never holds a caller's pipe (CI would wait for it forever).
  # kcat logs the mock's address list at notice level even with -q: no -d mock needed
  # (which would also flood the log with every request).
  # Two attempts, 30 s each: on a cold machine the first start of kcat has been seen to stay
  # silent past 10 s; a second start then came up in about a second.
  local attempt
  for attempt in 1 2; do
    : >"$err"
    setsid nohup kcat -q -b 127.0.0.1:1 -C -t boot -X test.mock.num.brokers=3 \
      </dev/null >"$SVC_RUN_DIR/kcat.out" 2>"$err" &
    kpid=$!
    echo "$kpid" >"$SVC_RUN_DIR/kcat.pid"
    for ((i = 0; i < 300; i++)); do
      bootstrap=$(sed -nE 's/.*(bootstrap\.servers=|replaced with )([^[:space:]]+).*/\2/p' "$err" | head -n 1)
      [[ -n "$bootstrap" ]] && break
      svc_pid_is "$kpid" kcat || break
      sleep 0.1
    done
    [[ -n "$bootstrap" ]] && break
    cat "$err" >&2
    svc_stop_kafka >/dev/null
    svc_say "kafka: kcat mock cluster did not report its bootstrap servers (attempt $attempt)"
  done
  [[ -n "$bootstrap" ]] \
    || svc_die "kafka: kcat mock cluster did not report its bootstrap servers in two 30 s attempts (see $err)"
  echo "$bootstrap" >"$SVC_RUN_DIR/kafka.bootstrap"
  first=${bootstrap%%,*}

  setsid nohup socat "TCP-LISTEN:${SVC_KAFKA_PORT},bind=127.0.0.1,fork,reuseaddr" "TCP:${first}" \
    </dev/null >"$SVC_RUN_DIR/socat.log" 2>&1 &
  spid=$!
  echo "$spid" >"$SVC_RUN_DIR/socat.pid"
  for ((i = 0; i < 50; i++)); do
    svc_port_open 127.0.0.1 "$SVC_KAFKA_PORT" && break
    svc_pid_is "$spid" socat || break
    sleep 0.1
  done
  if ! svc_port_open 127.0.0.1 "$SVC_KAFKA_PORT"; then
    cat "$SVC_RUN_DIR/socat.log" >&2
    svc_stop_kafka >/dev/null
    svc_die "kafka: socat is not listening on $SVC_KAFKA_ADDR (see $SVC_RUN_DIR/socat.log)"
  fi
  if ! svc_kafka_smoke; then
    cat "$SVC_RUN_DIR/kafka-smoke.err" >&2
    svc_stop_kafka >/dev/null
    svc_die "kafka: mock broker at $SVC_KAFKA_ADDR failed the produce/consume smoke test"
  fi
  LEDGERLINE_KAFKA_STARTED=1
  svc_say "kafka: mock cluster started ($SVC_KAFKA_ADDR -> $bootstrap; kcat pid $kpid, socat pid $spid; smoke message round-tripped)"
}

svc_ensure_kafka() {
  if [[ -n "${KAFKA_BROKERS:-}" ]]; then
    local b local_target=0
    for b in ${KAFKA_BROKERS//,/ }; do
      [[ "$b" == "$SVC_KAFKA_ADDR" || "$b" == "localhost:$SVC_KAFKA_PORT" ]] && local_target=1
    done
    if ((!local_target)); then
      svc_say "kafka: KAFKA_BROKERS=$KAFKA_BROKERS is not $SVC_KAFKA_ADDR; not starting the mock"
      return 0
    fi
  fi

  if svc_port_open 127.0.0.1 "$SVC_KAFKA_PORT"; then
    if svc_kafka_answers; then
      local what="a Kafka broker"
      [[ -f "$SVC_RUN_DIR/kafka.bootstrap" ]] && svc_pid_is "$(cat "$SVC_RUN_DIR/kcat.pid" 2>/dev/null)" kcat \
        && what="mock cluster ($(<"$SVC_RUN_DIR/kafka.bootstrap"))"
      svc_say "kafka: already running on $SVC_KAFKA_ADDR ($what)"
      return 0
    fi
    # Our socat outlived its kcat (or the mock hangs): replace both.
    if svc_pid_is "$(cat "$SVC_RUN_DIR/socat.pid" 2>/dev/null)" socat; then
      svc_say "kafka: $SVC_KAFKA_ADDR does not answer as a broker; restarting our mock"
      svc_stop_kafka >/dev/null
    else
      svc_die "kafka: something not started by this script listens on $SVC_KAFKA_ADDR but does not answer as a Kafka broker; free the port or set KAFKA_PORT"
    fi
  else
    # Leftovers of a half-dead mock (e.g. socat killed, kcat still up).
    svc_stop_kafka >/dev/null
  fi
  svc_start_kafka
}

svc_ensure() {
  mkdir -p "$SVC_RUN_DIR"
  svc_install_missing
  svc_ensure_postgres
  svc_pg_connections
  svc_pg_wal
  svc_ensure_redis
  svc_ensure_kafka
}

svc_main() {
  case "${1:-ensure}" in
    ensure | start | up) svc_ensure ;;
    stop-kafka) svc_stop_kafka ;;
    -h | --help | help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) svc_die "unknown command '$1' (use: ensure | stop-kafka)" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  svc_main "$@"
fi
