# shellcheck shell=bash
# A private PostgreSQL for the scripts in scripts/ (cluster-demo.sh, queue-bench.sh, pg-bench.sh):
# sourced, not run. It owns the server's start-up only: initdb into a directory, the postmaster in
# the background (as nobody when run as root: PostgreSQL refuses to run as root), the wait until it
# answers, and psql over its Unix socket. Stopping it is the caller's: the caller defines `die MSG`
# (exit 1), `usage MSG` (exit 2) and an array PIDS that its cleanup stops (pg_launch appends the
# postmaster's pid to it).
#
#   PG_BINDIR=/usr/lib/postgresql/15/bin   # initdb and postgres (psql too, where it is there)
#   . "$ROOT/scripts/lib/pg.sh"
#   pg_check                               # before anything is started or built
#   pg_init "$TMP/pg"                      # every parent of the directory must be reachable by nobody
#   PG_PREFIX=(ip netns exec "$NS")        # optional: words put before the postmaster's command
#   pg_launch "$PORT" -c listen_addresses=127.0.0.1
#   pg_wait
#   pg_sql 'CREATE DATABASE x' [DB]         # DB defaults to postgres

PG_PREFIX=()
PG_AS_NOBODY=()
if [ "$(id -u)" = 0 ]; then PG_AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi

# pg_check: a usage error unless PG_BINDIR has initdb and postgres.
pg_check() {
    local t
    for t in initdb postgres; do
        [ -x "$PG_BINDIR/$t" ] || usage "no $PG_BINDIR/$t: install postgresql-15 or set PG_BINDIR"
    done
}

# pg_init DIR: a new cluster in DIR/data (superuser fanout, trust, UTF8), socket directory DIR/sock,
# initdb's log in DIR/initdb.log. Sets PG_DIR.
pg_init() {
    PG_DIR=$1
    mkdir -p "$PG_DIR/sock"
    if [ "$(id -u)" = 0 ]; then chown -R nobody:nogroup "$PG_DIR"; fi
    "${PG_AS_NOBODY[@]}" "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U fanout --auth=trust -E UTF8 \
        >"$PG_DIR/initdb.log" 2>&1 || die "initdb failed: $(tail -3 "$PG_DIR/initdb.log")"
}

# pg_launch PORT [POSTGRES_ARGS...]: starts the postmaster of pg_init's cluster on PORT in the
# background, behind PG_PREFIX, its log in PG_DIR/pg.log. Sets PG_PORT and PG_PID. Not from a
# subshell or through a function of the caller's: `ip netns exec` and setpriv exec, so $! is the
# postmaster itself, and the caller's cleanup can send it SIGINT (fast shutdown).
pg_launch() {
    PG_PORT=$1
    shift
    "${PG_PREFIX[@]}" "${PG_AS_NOBODY[@]}" "$PG_BINDIR/postgres" -D "$PG_DIR/data" -p "$PG_PORT" \
        -k "$PG_DIR/sock" "$@" >"$PG_DIR/pg.log" 2>&1 &
    PG_PID=$!
    PIDS+=("$PG_PID")
}

# pg_sql SQL [DB]: runs SQL over the Unix socket (a file: reachable from any network namespace),
# unaligned, tuples only.
pg_sql() {
    local psql=psql
    [ -x "$PG_BINDIR/psql" ] && psql=$PG_BINDIR/psql
    "$psql" -X -q -At -h "$PG_DIR/sock" -p "$PG_PORT" -U fanout -d "${2:-postgres}" -c "$1"
}

# pg_wait: waits up to 30 s for the server to answer; dies with its log's tail if it does not.
pg_wait() {
    local _
    for _ in $(seq 300); do pg_sql 'SELECT 1' >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "PostgreSQL did not start: $(tail -3 "$PG_DIR/pg.log")"
}

# pg_stop_all: the caller's cleanup: stops every pid of PIDS, last started first (what uses
# PostgreSQL goes while it is still up), PostgreSQL (PG_PID) with SIGINT (its fast shutdown), the
# others with SIGTERM; whatever outlasts 10 s gets SIGKILL.
pg_stop_all() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        if [ "$pid" = "${PG_PID:-}" ]; then kill -INT "$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
        timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
}
