# shellcheck shell=bash
# A throwaway PostgreSQL 15 server, for the tests and deploy/cluster.sh. Source this file, then:
#
#   pg_start   # start a private server; exports SWITCHBOARD_TEST_DATABASE_URL (a superuser URL)
#   pg_stop    # stop it and delete all of its files
#
# The server lives in a fresh temp dir (data, socket, log), listens only on 127.0.0.1 on a
# free port, and trades durability for speed (fsync off): it is never meant to outlive a run.
# Works as root (as CI runs), where initdb and postgres run as the `postgres` OS user.

PG_BIN_DIR="${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
PG_TMP_DIR=""
PG_PORT=""

_pg_error() {
  echo "postgres.sh: error: $*" >&2
}

_pg_is_root() {
  [[ "$(id -u)" == "0" ]]
}

# Install the server when it is missing and we may (root with apt-get).
_pg_ensure_binaries() {
  [[ -x "$PG_BIN_DIR/initdb" ]] && return 0
  if ! _pg_is_root; then
    _pg_error "no PostgreSQL 15 in $PG_BIN_DIR and not root to install it: apt-get install postgresql-15"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _pg_error "no PostgreSQL 15 in $PG_BIN_DIR and no apt-get to install it"
    return 1
  fi
  echo "postgres.sh: installing postgresql-15" >&2
  apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >&2 || {
    _pg_error "apt-get install postgresql-15 failed"
    return 1
  }
  [[ -x "$PG_BIN_DIR/initdb" ]] || {
    _pg_error "postgresql-15 is installed but $PG_BIN_DIR/initdb is missing"
    return 1
  }
}

# initdb refuses to run as root, so root hands the server to the `postgres` user.
_pg_ensure_os_user() {
  _pg_is_root || return 0
  id -u postgres >/dev/null 2>&1 && return 0
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres || {
    _pg_error "could not create the postgres OS user"
    return 1
  }
}

# Run a server binary as whoever owns the server.
_pg_as_owner() {
  if _pg_is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_pg_port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_pg_free_port() {
  local port attempt
  for attempt in $(seq 1 50); do
    port=$((20000 + RANDOM % 30000))
    if ! _pg_port_in_use "$port"; then
      echo "$port"
      return 0
    fi
  done
  _pg_error "no free TCP port found after $attempt attempts"
  return 1
}

_pg_make_tmp_dir() {
  PG_TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-pg.XXXXXX")" || {
    _pg_error "could not create a temp dir under ${TMPDIR:-/tmp}"
    return 1
  }
  if _pg_is_root; then
    chown postgres: "$PG_TMP_DIR"
    # mktemp's parent may be private to root; postgres must reach its own dir.
    if ! runuser -u postgres -- test -w "$PG_TMP_DIR"; then
      _pg_error "the postgres OS user cannot write to $PG_TMP_DIR (is ${TMPDIR:-/tmp} private to root?)"
      return 1
    fi
  fi
}

_pg_init_cluster() {
  local password="$1"
  printf '%s\n' "$password" >"$PG_TMP_DIR/pwfile"
  _pg_is_root && chown postgres: "$PG_TMP_DIR/pwfile"
  # Password auth over TCP keeps other local users out of the superuser account.
  _pg_as_owner "$PG_BIN_DIR/initdb" -D "$PG_TMP_DIR/data" -U postgres --pwfile="$PG_TMP_DIR/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 \
    >"$PG_TMP_DIR/initdb.log" 2>&1 || {
    _pg_error "initdb failed:"
    cat "$PG_TMP_DIR/initdb.log" >&2
    return 1
  }
  rm -f "$PG_TMP_DIR/pwfile"
}

# Another process may take the port between choosing and binding it: try a few.
_pg_start_server() {
  local attempt port
  for attempt in 1 2 3 4 5; do
    port="$(_pg_free_port)" || return 1
    # Tests run in parallel, each with its own database and pools.
    if _pg_as_owner "$PG_BIN_DIR/pg_ctl" -D "$PG_TMP_DIR/data" -l "$PG_TMP_DIR/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_TMP_DIR \
          -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null; then
      PG_PORT="$port"
      return 0
    fi
  done
  _pg_error "the server did not start ($attempt attempts); its log:"
  tail -n 30 "$PG_TMP_DIR/server.log" >&2
  return 1
}

pg_start() {
  if [[ -n "$PG_TMP_DIR" ]]; then
    _pg_error "pg_start: a server from this shell is already running in $PG_TMP_DIR"
    return 1
  fi
  _pg_ensure_binaries || return 1
  _pg_ensure_os_user || return 1
  _pg_make_tmp_dir || { pg_stop; return 1; }
  local password
  password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  _pg_init_cluster "$password" || { pg_stop; return 1; }
  _pg_start_server || { pg_stop; return 1; }
  export SWITCHBOARD_TEST_DATABASE_URL="postgres://postgres:$password@127.0.0.1:$PG_PORT/postgres"
  echo "postgres.sh: PostgreSQL 15 on 127.0.0.1:$PG_PORT (data in $PG_TMP_DIR)" >&2
}

pg_stop() {
  [[ -n "$PG_TMP_DIR" ]] || return 0
  if [[ -f "$PG_TMP_DIR/data/postmaster.pid" ]]; then
    _pg_as_owner "$PG_BIN_DIR/pg_ctl" -D "$PG_TMP_DIR/data" -m fast -w -t 60 stop >/dev/null ||
      _pg_error "pg_ctl stop failed; removing $PG_TMP_DIR anyway"
  fi
  rm -rf "$PG_TMP_DIR"
  PG_TMP_DIR=""
  PG_PORT=""
  unset SWITCHBOARD_TEST_DATABASE_URL
}
