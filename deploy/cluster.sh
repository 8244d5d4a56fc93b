#!/usr/bin/env bash
# A whole Switchboard cluster on one machine, without containers: nats-server
# with JetStream, PostgreSQL, edges and persist workers, all logs in one folder.
#
#   deploy/cluster.sh up DIR             start it; DIR/cluster.env tells where everything is
#   deploy/cluster.sh add DIR KIND       start one more worker of KIND (persist, sync, whatsapp)
#   deploy/cluster.sh restart-nats DIR   stop NATS and start it again (same port, same store)
#   deploy/cluster.sh down DIR           stop everything `up` started and remove what it made
#   deploy/cluster.sh stop-postgres DIR [fast|immediate]
#                                        stop the PostgreSQL `up` started (pg_ctl's mode, default fast)
#   deploy/cluster.sh start-postgres DIR start it again (same port, same data, same settings)
#
# Knobs (environment):
#   EDGES=2 WORKERS=2 SYNC_WORKERS=1 WA_WORKERS=1
#                                        how many of each (persist, sync and whatsapp workers)
#   SWITCHBOARD_BIN                      the binary (default target/release/switchboard, else target/debug)
#   SWITCHBOARD_JWT_SECRET               token secret (default: a random one, written to cluster.env)
#   SWITCHBOARD_DATABASE_URL             use this database instead of starting PostgreSQL
#   SWITCHBOARD_NATS_URL                 use this NATS (one URL or a comma-separated list) instead of starting nats-server
#   NATS_NODES=1                         3: a three-node NATS cluster (nats1..nats3), streams and
#                                        buckets with SWITCHBOARD_NATS_REPLICAS=3 unless set
#   SWITCHBOARD_PARTITIONS=32            command partitions (every process gets the same)
#
# DIR/cluster.env holds shell assignments: NATS_URL, DATABASE_URL, SECRET, PARTITIONS,
# EDGE<i>_URL and EDGE<i>_PID, WORKER<i>_PID, SYNC<i>_PID, WA<i>_PID (each worker also
# <NAME>_METRICS_URL, its /metrics), NATS<i>_PID with NATS_NODES
# (i from 1), and what `down` needs.
# Logs: DIR/logs/edge<i>.log, DIR/logs/worker<i>.log, DIR/logs/sync<i>.log, and NATS's and PostgreSQL's own.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=deploy/lib/nats.sh
source "$HERE/lib/nats.sh"
# shellcheck source=deploy/lib/postgres.sh
source "$HERE/lib/postgres.sh"

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

binary() {
  local bin="${SWITCHBOARD_BIN:-}"
  if [[ -z "$bin" ]]; then
    bin="$ROOT/target/release/switchboard"
    [[ -x "$bin" ]] || bin="$ROOT/target/debug/switchboard"
  fi
  [[ -x "$bin" ]] || {
    echo "cluster: no switchboard binary at $bin: run cargo build --release" >&2
    exit 1
  }
  echo "$bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

record() {
  printf '%s=%q\n' "$1" "$2" >>"$DIR/cluster.env"
}

# spawn NAME ARGS...: a switchboard process in the background, logging to DIR/logs/NAME.log.
spawn() {
  local name="$1"
  shift
  SWITCHBOARD_NATS_URL="$NATS_URL" SWITCHBOARD_DATABASE_URL="$DATABASE_URL" \
    SWITCHBOARD_JWT_SECRET="$SECRET" SWITCHBOARD_NODE_ID="$name" \
    SWITCHBOARD_PARTITIONS="$PARTITIONS" SWITCHBOARD_NATS_REPLICAS="$REPLICAS" \
    "$BIN" "$@" >>"$DIR/logs/$name.log" 2>&1 &
  echo $!
}

# await_line PID LOG TEXT: until the process printed TEXT (bounded); fails if it died.
await_line() {
  local pid="$1" log="$2" text="$3" tick
  for ((tick = 0; tick < 300; tick++)); do
    grep -q "$text" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || {
      echo "cluster: process $pid exited at start; $log:" >&2
      tail -n 30 "$log" >&2
      return 1
    }
    sleep 0.1
  done
  echo "cluster: no '$text' in $log within 30 s" >&2
  return 1
}

up() {
  mkdir -p "$DIR/logs"
  # PostgreSQL runs as its own OS user and keeps its files in here.
  chmod 755 "$DIR"
  : >"$DIR/cluster.env"
  BIN="$(binary)"
  SECRET="${SWITCHBOARD_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
  record SECRET "$SECRET"
  PARTITIONS="${SWITCHBOARD_PARTITIONS:-32}"
  record PARTITIONS "$PARTITIONS"
  REPLICAS="${SWITCHBOARD_NATS_REPLICAS:-1}"
  if [[ -n "${SWITCHBOARD_NATS_URL:-}" ]]; then
    NATS_URL="$SWITCHBOARD_NATS_URL"
  elif ((${NATS_NODES:-1} > 1)); then
    RUN_TMP="$DIR" nats_cluster_start "$NATS_NODES"
    NATS_URL="$SWITCHBOARD_TEST_NATS_URL"
    REPLICAS="${SWITCHBOARD_NATS_REPLICAS:-3}"
    local node
    for ((node = 1; node <= NATS_NODES; node++)); do
      record "NATS${node}_PID" "${NATS_CLUSTER_PIDS[node - 1]}"
    done
    record NATS_DIR "$NATS_DIR"
  else
    RUN_TMP="$DIR" nats_start
    NATS_URL="$SWITCHBOARD_TEST_NATS_URL"
    record NATS_PID "$NATS_PID"
    record NATS_PORT "$NATS_PORT"
    record NATS_DIR "$NATS_DIR"
  fi
  record NATS_URL "$NATS_URL"
  if [[ -n "${SWITCHBOARD_DATABASE_URL:-}" ]]; then
    DATABASE_URL="$SWITCHBOARD_DATABASE_URL"
  else
    TMPDIR="$DIR" pg_start
    DATABASE_URL="$SWITCHBOARD_TEST_DATABASE_URL"
    record PG_TMP_DIR "$PG_TMP_DIR"
    record PG_PORT "$PG_PORT"
  fi
  record DATABASE_URL "$DATABASE_URL"
  record REPLICAS "$REPLICAS"
  # Migrate once up front, so processes do not race to create the schema.
  SWITCHBOARD_DATABASE_URL="$DATABASE_URL" "$BIN" migrate >>"$DIR/logs/migrate.log" 2>&1
  local i pid port
  for ((i = 1; i <= ${WORKERS:-2}; i++)); do start_worker persist "$i"; done
  for ((i = 1; i <= ${SYNC_WORKERS:-1}; i++)); do start_worker sync "$i"; done
  for ((i = 1; i <= ${WA_WORKERS:-1}; i++)); do start_worker whatsapp "$i"; done
  for ((i = 1; i <= ${EDGES:-2}; i++)); do
    port=$(free_port)
    pid=$(SWITCHBOARD_HTTP_ADDR="127.0.0.1:$port" spawn "edge$i" edge)
    record "EDGE${i}_PID" "$pid"
    record "EDGE${i}_URL" "http://127.0.0.1:$port"
    await_line "$pid" "$DIR/logs/edge$i.log" "ready on"
  done
  echo "cluster up: $DIR/cluster.env"
}

# start_worker KIND I: worker number I of KIND (persist: worker<I>, sync: sync<I>, whatsapp: wa<I>).
start_worker() {
  local kind="$1" i="$2" name pid port
  case "$kind" in
    persist) name="worker$i" ;;
    sync) name="sync$i" ;;
    whatsapp) name="wa$i" ;;
    *) usage ;;
  esac
  port=$(free_port)
  pid=$(SWITCHBOARD_METRICS_ADDR="127.0.0.1:$port" spawn "$name" worker "$kind")
  record "${name^^}_PID" "$pid"
  record "${name^^}_METRICS_URL" "http://127.0.0.1:$port/metrics"
  await_line "$pid" "$DIR/logs/$name.log" "ready"
  echo "$name"
}

# One more worker of a kind, numbered after those cluster.env knows of.
add() {
  # shellcheck source=/dev/null
  source "$DIR/cluster.env"
  BIN="$(binary)"
  local kind="$1" prefix i=1
  case "$kind" in
    persist) prefix=WORKER ;;
    sync) prefix=SYNC ;;
    whatsapp) prefix=WA ;;
    *) usage ;;
  esac
  while [[ -n "$(eval "echo \${${prefix}${i}_PID:-}")" ]]; do i=$((i + 1)); done
  start_worker "$kind" "$i"
}

restart_nats() {
  # shellcheck source=/dev/null
  source "$DIR/cluster.env"
  [[ -n "${NATS_DIR:-}" ]] || {
    echo "cluster: NATS was not started by this script" >&2
    exit 1
  }
  nats_restart
  sed -i "s/^NATS_PID=.*/NATS_PID=$NATS_PID/" "$DIR/cluster.env"
}

# The PostgreSQL `up` started (not one passed in SWITCHBOARD_DATABASE_URL): its folder.
own_postgres() {
  # shellcheck source=/dev/null
  source "$DIR/cluster.env"
  [[ -n "${PG_TMP_DIR:-}" ]] || {
    echo "cluster: PostgreSQL was not started by this script" >&2
    exit 1
  }
}

# Fault injection: the server goes away under the running edges and workers.
stop_postgres() {
  own_postgres
  local mode="${1:-fast}"
  [[ "$mode" == "fast" || "$mode" == "immediate" ]] || usage
  _pg_as_owner "$PG_BIN_DIR/pg_ctl" -D "$PG_TMP_DIR/data" -m "$mode" -w -t 60 stop >/dev/null
}

start_postgres() {
  own_postgres
  local out
  # `restart` of a stopped server starts it with the options it last ran with
  # (data/postmaster.opts: the port, the socket folder, the settings of pg_start).
  out=$(_pg_as_owner "$PG_BIN_DIR/pg_ctl" -D "$PG_TMP_DIR/data" -l "$PG_TMP_DIR/server.log" -w -t 60 restart 2>&1) || {
    echo "cluster: PostgreSQL did not start again: $out" >&2
    tail -n 30 "$PG_TMP_DIR/server.log" >&2
    exit 1
  }
}

down() {
  [[ -f "$DIR/cluster.env" ]] || return 0
  # shellcheck source=/dev/null
  source "$DIR/cluster.env"
  local var pid
  local processes='^(EDGE|WORKER|SYNC|WA|NATS)[0-9]+_PID$'
  for var in $(compgen -v | grep -E "$processes"); do
    pid="${!var}"
    kill -TERM "$pid" 2>/dev/null || true
  done
  local tick
  for var in $(compgen -v | grep -E "$processes"); do
    pid="${!var}"
    # Draining is bounded by the processes' own timeout; this bounds it again.
    for ((tick = 0; tick < 200; tick++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [[ -n "${NATS_DIR:-}" ]] && nats_stop
  [[ -n "${PG_TMP_DIR:-}" ]] && pg_stop
  rm -f "$DIR/cluster.env"
}

[[ $# -eq 2 || ($# -eq 3 && ("$1" == "stop-postgres" || "$1" == "add")) ]] || usage
DIR="$(mkdir -p "$2" && cd "$2" && pwd)"
case "$1" in
  up) up ;;
  add) add "${3:-}" ;;
  restart-nats) restart_nats ;;
  down) down ;;
  stop-postgres) stop_postgres "${3:-fast}" ;;
  start-postgres) start_postgres ;;
  *) usage ;;
esac
