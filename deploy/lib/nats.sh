# A throwaway nats-server with JetStream, for the tests and deploy/cluster.sh; source this file.
#
#   nats_start     install Debian's nats-server if missing, start one on a free port with a fresh
#                  store dir, wait until it takes connections, export SWITCHBOARD_TEST_NATS_URL
#   nats_restart   stop it and start it again on the same port and store dir (failover tests)
#   nats_stop      stop it and remove its store dir
#   nats_cluster_start N   N servers (nats1..nN) routed into one JetStream cluster; exports
#                  SWITCHBOARD_TEST_NATS_URL as the comma-separated list of their URLs and
#                  NATS_CLUSTER_PIDS; nats_stop stops them all
#
# Its files live under $RUN_TMP when tests/run set it (so an interrupted run cleans them up),
# else under $TMPDIR. The log is $NATS_DIR/server.log.

NATS_BIN=""
NATS_PID=""
NATS_PORT=""
NATS_DIR=""
NATS_CLUSTER_PIDS=()
# How long a starting server may take before we give up, in tenths of a second.
NATS_START_TICKS=100

# Debian installs it in /usr/sbin, which a non-login PATH often lacks.
nats_find() {
  NATS_BIN=$(command -v nats-server 2>/dev/null || true)
  [[ -z "$NATS_BIN" && -x /usr/sbin/nats-server ]] && NATS_BIN=/usr/sbin/nats-server
  [[ -n "$NATS_BIN" ]]
}

# Debian's package is 2.9.10: every feature the bus uses must exist there.
nats_install() {
  nats_find && return 0
  if [[ "$(id -u)" != "0" ]]; then
    echo "error: nats-server is not on PATH and installing Debian's package needs root" >&2
    return 1
  fi
  echo "nats: installing Debian's nats-server" >&2
  local log
  log=$(mktemp) || return 1
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server; } >"$log" 2>&1; then
    echo "error: apt-get could not install nats-server:" >&2
    tail -n 20 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  nats_find || {
    echo "error: nats-server was installed but is neither on PATH nor in /usr/sbin" >&2
    return 1
  }
}

# nats_launch PORT: start the server in the background; PORT -1 lets it pick a free one, which it
# then reports in a ports file, so no other process can take the port between choosing and binding.
nats_launch() {
  rm -f "$NATS_DIR"/ports/*.ports
  "$NATS_BIN" -js -a 127.0.0.1 -p "$1" -m -1 -sd "$NATS_DIR/store" \
    -ports_file_dir "$NATS_DIR/ports" >>"$NATS_DIR/server.log" 2>&1 &
  NATS_PID=$!
}

# Prints the client port once the server wrote its ports file; fails when it did not in time.
nats_await_port() {
  local tick ports
  for ((tick = 0; tick < NATS_START_TICKS; tick++)); do
    if ! kill -0 "$NATS_PID" 2>/dev/null; then
      echo "error: nats-server exited at start; its log:" >&2
      tail -n 20 "$NATS_DIR/server.log" >&2
      return 1
    fi
    ports=$(cat "$NATS_DIR"/ports/*.ports 2>/dev/null || true)
    if [[ "$ports" =~ \"nats://127\.0\.0\.1:([0-9]+)\" ]]; then
      echo "${BASH_REMATCH[1]}"
      return 0
    fi
    sleep 0.1
  done
  echo "error: nats-server did not report its ports within $((NATS_START_TICKS / 10)) s" >&2
  return 1
}

# The ports file is written once listening, but JetStream may still be recovering its store:
# /healthz answers 200 only when JetStream is ready too.
nats_await_healthy() {
  local tick monitor ports
  ports=$(cat "$NATS_DIR"/ports/*.ports)
  [[ "$ports" =~ \"(http://127\.0\.0\.1:[0-9]+)\" ]] || {
    echo "error: nats-server reported no monitoring port: $ports" >&2
    return 1
  }
  monitor="${BASH_REMATCH[1]}"
  for ((tick = 0; tick < NATS_START_TICKS; tick++)); do
    if nats_http_ok "${monitor#http://}" /healthz; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: nats-server at port $NATS_PORT was not healthy within $((NATS_START_TICKS / 10)) s" >&2
  return 1
}

# nats_http_ok HOST:PORT PATH: whether a GET answers 200, with bash alone (curl may be absent).
nats_http_ok() {
  local status fd
  # The group's redirection is temporary; one on `exec` itself would silence the shell for good.
  { exec {fd}<>"/dev/tcp/${1%:*}/${1#*:}"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&"$fd"
  read -r -t 2 _ status _ <&"$fd" || status=""
  exec {fd}>&-
  [[ "$status" == "200" ]]
}

# nats_run PORT: launch, then wait until it takes connections; sets NATS_PORT.
nats_run() {
  nats_launch "$1"
  local port
  port=$(nats_await_port) || {
    nats_kill
    return 1
  }
  NATS_PORT="$port"
  nats_await_healthy || {
    nats_kill
    return 1
  }
  export SWITCHBOARD_TEST_NATS_URL="nats://127.0.0.1:$NATS_PORT"
}

nats_kill() {
  [[ -n "$NATS_PID" ]] || return 0
  kill -TERM "$NATS_PID" 2>/dev/null || true
  # `wait` only knows this shell's children; a restart from another shell polls.
  wait "$NATS_PID" 2>/dev/null || true
  local tick
  for ((tick = 0; tick < NATS_START_TICKS; tick++)); do
    kill -0 "$NATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  NATS_PID=""
}

nats_start() {
  if [[ -n "$NATS_PID" ]]; then
    echo "error: nats-server already started (pid $NATS_PID)" >&2
    return 1
  fi
  nats_install || return 1
  NATS_DIR=$(mktemp -d "${RUN_TMP:-${TMPDIR:-/tmp}}/nats.XXXXXX") || return 1
  mkdir -p "$NATS_DIR/ports" "$NATS_DIR/store"
  if ! nats_run -1; then
    rm -rf "$NATS_DIR"
    NATS_DIR=""
    return 1
  fi
  echo "nats: nats-server $("$NATS_BIN" --version | awk '{print $NF}') on $SWITCHBOARD_TEST_NATS_URL (pid $NATS_PID, log $NATS_DIR/server.log)" >&2
}

nats_restart() {
  if [[ -z "$NATS_PORT" || -z "$NATS_DIR" ]]; then
    echo "error: nats_restart without nats_start" >&2
    return 1
  fi
  nats_find || return 1
  nats_kill
  nats_run "$NATS_PORT"
}

nats_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

nats_cluster_start() {
  local count="$1" i routes="" urls=""
  local -a client monitor route
  nats_install || return 1
  NATS_DIR=$(mktemp -d "${RUN_TMP:-${TMPDIR:-/tmp}}/nats.XXXXXX") || return 1
  # A cluster's routes must be known before any node starts, so its ports are chosen up front.
  for ((i = 1; i <= count; i++)); do
    client[i]=$(nats_free_port)
    monitor[i]=$(nats_free_port)
    route[i]=$(nats_free_port)
    routes+="${routes:+,}nats://127.0.0.1:${route[i]}"
    urls+="${urls:+,}nats://127.0.0.1:${client[i]}"
  done
  NATS_CLUSTER_PIDS=()
  for ((i = 1; i <= count; i++)); do
    mkdir -p "$NATS_DIR/nats$i"
    "$NATS_BIN" -js -n "nats$i" -a 127.0.0.1 -p "${client[i]}" -m "${monitor[i]}" \
      -sd "$NATS_DIR/nats$i/store" --cluster_name switchboard \
      --cluster "nats://127.0.0.1:${route[i]}" --routes "$routes" \
      >>"$NATS_DIR/nats$i/server.log" 2>&1 &
    NATS_CLUSTER_PIDS+=($!)
  done
  # /healthz answers 200 once the node's JetStream has joined the cluster's meta group.
  local tick
  for ((i = 1; i <= count; i++)); do
    for ((tick = 0; tick < NATS_START_TICKS * 3; tick++)); do
      nats_http_ok "127.0.0.1:${monitor[i]}" /healthz && break
      kill -0 "${NATS_CLUSTER_PIDS[i - 1]}" 2>/dev/null || tick=$((NATS_START_TICKS * 3))
      sleep 0.1
    done
    if ((tick >= NATS_START_TICKS * 3)); then
      echo "error: nats$i of the NATS cluster was not healthy; its log:" >&2
      tail -n 20 "$NATS_DIR/nats$i/server.log" >&2
      nats_stop
      return 1
    fi
  done
  export SWITCHBOARD_TEST_NATS_URL="$urls"
  echo "nats: a $count-node nats-server cluster on $urls (logs $NATS_DIR/nats*/server.log)" >&2
}

nats_stop() {
  nats_kill
  local pid
  for pid in "${NATS_CLUSTER_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${NATS_CLUSTER_PIDS[@]}"; do
    NATS_PID="$pid"
    nats_kill
  done
  NATS_CLUSTER_PIDS=()
  [[ -n "$NATS_DIR" ]] && rm -rf "$NATS_DIR"
  NATS_DIR=""
  NATS_PORT=""
  unset SWITCHBOARD_TEST_NATS_URL
}
