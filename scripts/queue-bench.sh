#!/usr/bin/env bash
# The work queue's two targets (issue 14), on demand (not part of the tests or CI):
#
#   scripts/queue-bench.sh                 # both, median of 3 runs each
#   ONLY=a RUNS=5 scripts/queue-bench.sh
#
# (a) latency-bound: `fanout serve --latency 100ms`, N_A jobs (10,000), `fanout work -c 50` on
#     1, 2 and 4 workers at once: jobs/s of each and the ratio to 1 worker (target >= 3.6x at 4).
# (b) queue overhead: one `fanout work` against `fanout serve` (no latency) against `fanout fetch`
#     into a new SQLite file on the same N_B URLs (100,000) at the same -c (64): req/s of each and
#     the ratio (target >= 0.5).
#
# A private PostgreSQL 15 (initdb into a temp dir, run as nobody when root; default durability:
# fsync and synchronous_commit on; pg_stat_statements loaded) listens on a free 127.0.0.1 port;
# every run gets a new database, loaded by `fanout enqueue` (timed apart: not part of jobs/s).
# jobs/s = jobs ÷ wall time from starting the workers to the last one's exit (start-up, and the
# drain check of an idle worker, which polls every --poll = 1s, included); the "db span" column
# is jobs ÷ (last completion − first claim) by the database's clock, without them. Each run checks
# that the store holds exactly one outcome per job. For (b) it also prints the CPU seconds of the
# worker, of PostgreSQL (the postmaster's children, reaped and live) and of `fanout fetch`, and
# the statements PostgreSQL spent the most time in (pg_stat_statements) during the last run.
# Everything started here is stopped on exit. Prints one markdown table; writes it to
# target/queue-bench.md too.
#
# Environment:
#   RUNS=3          runs per figure (medians)
#   ONLY="a b"      parts to run
#   N_A=10000  C_A=50  LAT_A=100ms  WORKERS_A="1 2 4"
#   N_B=100000 C_B=64
#   RUN_CAP=600     seconds any one run may take before it is killed (the run then fails)
#   WORK_ARGS=...   more flags for every `fanout work` (e.g. "--poll 100ms"), shown in the table
#   PG_OPTS=...     more postgres flags (e.g. "-c synchronous_commit=off"), shown above the table
#   FANOUT_BIN=...  a fanout binary instead of `cargo build --release`
#   PG_BINDIR=...   PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   KEEP_TMP=1      keep the temp dir (logs, PostgreSQL's data)
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
ONLY=${ONLY:-a b}
N_A=${N_A:-10000}
C_A=${C_A:-50}
LAT_A=${LAT_A:-100ms}
WORKERS_A=${WORKERS_A:-1 2 4}
N_B=${N_B:-100000}
C_B=${C_B:-64}
RUN_CAP=${RUN_CAP:-600}
WORK_ARGS=${WORK_ARGS:-}
read -ra WORK_ARGV <<<"$WORK_ARGS"
PG_OPTS=${PG_OPTS:-}
read -ra PG_ARGV <<<"$PG_OPTS"
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
OUT_MD=$ROOT/target/queue-bench.md

log() { printf '==> %s\n' "$*" >&2; }
usage() { printf 'queue-bench: %s\n' "$*" >&2; exit 2; }
die() { printf 'queue-bench: error: %s\n' "$*" >&2; exit 1; }
wants() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }
for v in RUNS N_A C_A N_B C_B RUN_CAP; do is_uint "${!v}" && [ "${!v}" -ge 1 ] || usage "$v=${!v}: a positive number"; done
for w in $WORKERS_A; do is_uint "$w" && [ "$w" -ge 1 ] || usage "WORKERS_A='$WORKERS_A': positive numbers"; done
for t in psql python3 timeout; do command -v "$t" >/dev/null || usage "'$t' is required"; done
[ -x /usr/bin/time ] || usage "/usr/bin/time (Debian package 'time') is required"
# scripts/lib/pg.sh: initdb, the postmaster (as nobody when root), the wait, psql.
. "$ROOT/scripts/lib/pg.sh"
pg_check

. "$ROOT/scripts/lib/bin.sh"
fanout_bin
ulimit -n 65536 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout-qbench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
PIDS=()
PG_PID=""
group_alive() { ps -e -o pgid= | awk -v g="$1" '$1 == g {f = 1} END {exit !f}'; }
cleanup() {
    local pid
    # Workers and fetches run under `timeout`, which makes a process group of its own (a Ctrl-C
    # does not reach it), from subshells: their group ids are in $TMP/pids. Those groups go first,
    # while PostgreSQL is up to take the workers' hand-backs; then the servers, last PostgreSQL
    # (SIGINT: its fast shutdown). Whatever outlasts 10 s gets SIGKILL.
    if [ -f "$TMP/pids" ]; then
        while read -r pid; do
            group_alive "$pid" || continue
            kill -TERM -- "-$pid" 2>/dev/null
            for _ in $(seq 100); do group_alive "$pid" || break; sleep 0.1; done
            kill -KILL -- "-$pid" 2>/dev/null
        done <"$TMP/pids"
    fi
    pg_stop_all
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { local i; for i in $(seq 300); do port_open "$1" && return 0; sleep 0.1; done; return 1; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# ------------------------------------------------------------------------------------- PostgreSQL
pg_init "$TMP/pg"
pg_launch "$(free_port)" -c listen_addresses=127.0.0.1 \
    -c max_connections=100 -c shared_preload_libraries=pg_stat_statements "${PG_ARGV[@]}"
sql() { pg_sql "$@"; }
pg_wait
sql 'CREATE EXTENSION pg_stat_statements' >/dev/null || die "pg_stat_statements is not available"
PG_VERSION=$(sql 'SHOW server_version')
db_url() { echo "postgres://fanout@127.0.0.1:$PG_PORT/$1?sslmode=disable"; }
new_db() { sql "CREATE DATABASE $1" >/dev/null || die "CREATE DATABASE $1 failed"; db_url "$1"; }
# CPU seconds of PostgreSQL so far: the postmaster and its reaped children (cutime, cstime) and its
# live children (backends, checkpointer, walwriter...).
pg_cpu() {
    python3 - "$PG_PID" <<'EOF'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
pm = sys.argv[1]
def fields(pid):
    s = open(f"/proc/{pid}/stat").read()
    return s[s.rindex(")") + 2:].split()
f = fields(pm)
total = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
for d in os.listdir("/proc"):
    if d.isdigit() and d != pm:
        try:
            g = fields(d)
        except OSError:
            continue
        if g[1] == pm:
            total += int(g[11]) + int(g[12])
print(total / hz)
EOF
}

# --------------------------------------------------------------------------------------- servers
# serve LATENCY: starts `fanout serve` and sets SERVE_PORT (not through $(...): the server's pid
# must be recorded in this shell, for the cleanup).
serve() {
    SERVE_PORT=$(free_port)
    "$BIN" serve --port "$SERVE_PORT" --latency "$1" >"$TMP/serve-$SERVE_PORT.log" 2>&1 &
    PIDS+=($!)
    wait_port "$SERVE_PORT" || die "fanout serve did not start: $(cat "$TMP/serve-$SERVE_PORT.log")"
}

check_store() { # WHAT N COUNT DISTINCT DONE
    [ "$3" = "$2" ] && [ "$4" = "$2" ] && [ "$5" = "$2" ] ||
        die "$1: $3 outcome rows, $4 distinct keys, $5 jobs done; expected $2 of each"
}

# run_workers DB W C N -> prints "wall_s span_s worker_cpu_s head_s tail_s"; dies unless the store
# holds one outcome per job. A worker that exits non-zero is noted in $TMP/failures and the run
# returns 1 (its figures are not used: the others waited out its leases).
run_workers() {
    local name=$1 w=$2 c=$3 n=$4 url i t0 t1 pids=() code cpu failed=0
    url=$(db_url "$name")
    t0=$(now)
    for i in $(seq "$w"); do
        timeout "$RUN_CAP" /usr/bin/time -f '%e %U %S' -o "$TMP/$name.w$i.time" \
            "$BIN" work --db "$url" -c "$c" -q --progress never "${WORK_ARGV[@]}" >"$TMP/$name.w$i.log" 2>&1 &
        pids+=($!)
        echo $! >>"$TMP/pids"
    done
    for i in $(seq "$w"); do
        wait "${pids[$((i - 1))]}"
        code=$?
        if [ "$code" != 0 ]; then
            failed=1
            echo "$name: worker $i of $w exited $code: $(tail -1 "$TMP/$name.w$i.log")" >>"$TMP/failures"
            printf 'queue-bench: warning: %s\n' "$(tail -1 "$TMP/failures")" >&2
        fi
    done
    t1=$(now)
    # Summed after t1: a python3 per worker inside the loop would add ~0.1 s each to the wall time.
    cpu=$(cat "$TMP/$name".w*.time | awk '{c += $2 + $3} END {print c}')
    # PostgreSQL's share, before this script's own checks add to it.
    if [ "${PG_STATS:-0}" = 1 ]; then
        sleep 0.5 # the worker's backends exit and are reaped
        pg_cpu >"$TMP/pgcpu.after"
        psql -X -q -At -F ' | ' -h "$PG_DIR/sock" -p "$PG_PORT" -U fanout -d postgres -c "
            SELECT calls, round(total_exec_time::numeric, 1), round(min_exec_time::numeric, 3),
                   round(mean_exec_time::numeric, 3), round(max_exec_time::numeric, 3), rows,
                   regexp_replace(left(regexp_replace(query, '\s+', ' ', 'g'), 90), '\|', '/', 'g')
            FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = '$name' ORDER BY total_exec_time DESC LIMIT 8" >"$TMP/stmts.txt"
    fi
    local got distinct ndone span
    got=$(sql 'SELECT count(*) FROM outcomes' "$name")
    distinct=$(sql 'SELECT count(DISTINCT key) FROM outcomes' "$name")
    ndone=$(sql "SELECT count(*) FROM queue_jobs WHERE state = 'done'" "$name")
    check_store "$name" "$n" "$got" "$distinct" "$ndone"
    span=$(sql 'SELECT extract(epoch FROM max(done_at) - min(leased_at)) FROM queue_jobs' "$name")
    # Where the rest of the wall time went (the database runs on this machine: one clock): from
    # starting the workers to the first claim (process start, connecting, the schema), and from
    # the last completion to the last worker's exit (the drain check, closing).
    local head tail
    head=$(sql "SELECT round((extract(epoch FROM min(leased_at)) - $t0)::numeric, 3) FROM queue_jobs" "$name")
    tail=$(sql "SELECT round(($t1 - extract(epoch FROM max(done_at)))::numeric, 3) FROM queue_jobs" "$name")
    echo "$(calc "round($t1 - $t0, 3)") $span $cpu $head $tail"
    return "$failed"
}

enqueue() { # NAME LIST -> seconds
    local t0 t1
    t0=$(now)
    "$BIN" enqueue --db "$(db_url "$1")" "$2" >/dev/null 2>"$TMP/$1.enqueue.log" ||
        die "enqueue into $1 failed: $(cat "$TMP/$1.enqueue.log")"
    t1=$(now)
    calc "round($t1 - $t0, 3)"
}

ROWS=()
row() { ROWS+=("$(printf '| %s ' "$@")|"); }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------------- (a) latency-bound scale
if wants a; then
    serve "$LAT_A"
    PORT_A=$SERVE_PORT
    seq 0 $((N_A - 1)) | sed "s|^|http://127.0.0.1:$PORT_A/item/|" >"$TMP/a.txt"
    declare -A A_RATE=() A_SPAN=() A_WALL=() A_HEAD=() A_TAIL=()
    for r in $(seq "$RUNS"); do
        for w in $WORKERS_A; do
            # A run in which a worker failed is run again, once; the failure is listed under the table.
            for try in 1 2; do
                name=a${w}r${r}t$try
                new_db "$name" >/dev/null
                enqueue "$name" "$TMP/a.txt" >/dev/null
                out=$(run_workers "$name" "$w" "$C_A" "$N_A") && break
                [ -n "$out" ] || exit 1
                [ "$try" = 2 ] && die "(a) run $r with $w workers failed twice (see above)"
            done
            read -r wall span _ head tail <<<"$out"
            A_WALL[$w]+="$wall "
            A_RATE[$w]+="$(calc "round($N_A / $wall)") "
            A_SPAN[$w]+="$(calc "round($N_A / $span)") "
            A_HEAD[$w]+="$head "
            A_TAIL[$w]+="$tail "
            log "(a) run $r, $w workers: $wall s, $(calc "round($N_A / $wall)") jobs/s (db span $span s; start to first claim $head s, last completion to exit $tail s)"
        done
    done
    first=${WORKERS_A%% *}
    base=$(tr ' ' '\n' <<<"${A_RATE[$first]}" | grep . | median)
    base_span=$(tr ' ' '\n' <<<"${A_SPAN[$first]}" | grep . | median)
    for w in $WORKERS_A; do
        m=$(tr ' ' '\n' <<<"${A_RATE[$w]}" | grep . | median)
        ms=$(tr ' ' '\n' <<<"${A_SPAN[$w]}" | grep . | median)
        mw=$(tr ' ' '\n' <<<"${A_WALL[$w]}" | grep . | median)
        ratio=$(calc "'%.2f' % ($m / $base * $first)")
        ratio_span=$(calc "'%.2f' % ($ms / $base_span * $first)")
        mh=$(tr ' ' '\n' <<<"${A_HEAD[$w]}" | grep . | median)
        mt=$(tr ' ' '\n' <<<"${A_TAIL[$w]}" | grep . | median)
        target="start → first claim $mh s, last completion → exit $mt s"
        [ "$w" = 4 ] && target="≥ 3.60×: $(calc "'met' if $m / $base * $first >= 3.6 else 'missed'"); $target"
        row "(a) $N_A jobs, --latency $LAT_A" "$w × fanout work -c $C_A${WORK_ARGS:+ $WORK_ARGS}" "$mw" "$m (${A_RATE[$w]% })" \
            "$ms" "${ratio}× (db span ${ratio_span}×)" "$target"
    done
fi

# ------------------------------------------------------------------------------ (b) queue overhead
if wants b; then
    serve 0s
    PORT_B=$SERVE_PORT
    seq 0 $((N_B - 1)) | sed "s|^|http://127.0.0.1:$PORT_B/item/|" >"$TMP/b.txt"
    B_HEAD=() B_TAIL=() B_FETCH=() B_WORK=() B_SPAN=() B_ENQ=() B_FCPU=() B_WCPU=() B_PGCPU=()
    for r in $(seq "$RUNS"); do
        db=$TMP/b$r.db
        t0=$(now)
        timeout "$RUN_CAP" /usr/bin/time -f '%e %U %S' -o "$TMP/b$r.fetch.time" \
            "$BIN" fetch "$TMP/b.txt" -c "$C_B" -q --progress never --db "$db" >"$TMP/b$r.fetch.log" 2>&1 &
        echo $! >>"$TMP/pids"
        wait $! || die "fanout fetch failed: $(tail -3 "$TMP/b$r.fetch.log")"
        t1=$(now)
        got=$(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(*c.execute('SELECT count(*), count(DISTINCT key) FROM outcomes').fetchone())" "$db")
        check_store "fetch run $r" "$N_B" "${got% *}" "${got#* }" "$N_B"
        B_FETCH+=("$(calc "round($N_B / ($t1 - $t0))")")
        B_FCPU+=("$(awk 'END {print $2 + $3}' "$TMP/b$r.fetch.time")")
        rm -f "$db" "$db-wal" "$db-shm"

        name=b1r$r
        new_db "$name" >/dev/null
        B_ENQ+=("$(calc "round($N_B / $(enqueue "$name" "$TMP/b.txt"))")")
        sql 'SELECT pg_stat_statements_reset()' >/dev/null
        cpu0=$(pg_cpu)
        out=$(PG_STATS=1 run_workers "$name" 1 "$C_B" "$N_B") || exit 1
        read -r wall span wcpu head tail <<<"$out"
        B_HEAD+=("$head")
        B_TAIL+=("$tail")
        B_WORK+=("$(calc "round($N_B / $wall)")")
        B_SPAN+=("$(calc "round($N_B / $span)")")
        B_WCPU+=("$wcpu")
        B_PGCPU+=("$(calc "round($(cat "$TMP/pgcpu.after") - $cpu0, 2)")")
        log "(b) run $r: fetch ${B_FETCH[-1]} req/s; work ${B_WORK[-1]} jobs/s (db span ${B_SPAN[-1]}), enqueue ${B_ENQ[-1]} jobs/s; CPU: fetch ${B_FCPU[-1]} s, worker $wcpu s, PostgreSQL ${B_PGCPU[-1]} s"
    done
    mf=$(printf '%s\n' "${B_FETCH[@]}" | median)
    mw=$(printf '%s\n' "${B_WORK[@]}" | median)
    ms=$(printf '%s\n' "${B_SPAN[@]}" | median)
    me=$(printf '%s\n' "${B_ENQ[@]}" | median)
    row "(b) $N_B URLs, no latency" "fanout fetch -c $C_B --db (SQLite)" "$(calc "round($N_B / $mf, 2)")" \
        "$mf (${B_FETCH[*]})" "–" "1.00×" "CPU $(printf '%s\n' "${B_FCPU[@]}" | median) s"
    row "(b) $N_B URLs, no latency" "1 × fanout work -c $C_B${WORK_ARGS:+ $WORK_ARGS} (PostgreSQL)" "$(calc "round($N_B / $mw, 2)")" \
        "$mw (${B_WORK[*]})" "$ms" "$(calc "'%.2f' % ($mw / $mf)")× (db span $(calc "'%.2f' % ($ms / $mf)")×)" \
        "≥ 0.50×: $(calc "'met' if $mw / $mf >= 0.5 else 'missed'"); CPU worker $(printf '%s\n' "${B_WCPU[@]}" | median) s, PostgreSQL $(printf '%s\n' "${B_PGCPU[@]}" | median) s; start → first claim $(printf '%s\n' "${B_HEAD[@]}" | median) s, last completion → exit $(printf '%s\n' "${B_TAIL[@]}" | median) s; enqueue $me jobs/s"
fi

# -------------------------------------------------------------------------------------------- table
{
    echo "fanout work queue benchmark: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), PostgreSQL $PG_VERSION (${PG_OPTS:-default settings: fsync and synchronous_commit on}), $(nproc) cores; load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); medians of $RUNS runs"
    echo
    echo "| workload | command | wall s | jobs/s (runs) | db span jobs/s | ratio | target / notes |"
    echo "|---|---|---:|---:|---:|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ -s "$TMP/failures" ]; then
        echo
        echo "Runs in which a worker failed (run again; not in the figures):"
        echo
        sed 's/^/- /' "$TMP/failures"
    fi
    if wants b && [ -s "$TMP/stmts.txt" ]; then
        echo
        echo "PostgreSQL statements of the last (b) worker run, by total time (pg_stat_statements):"
        echo
        echo "| calls | total ms | min ms | mean ms | max ms | rows | statement |"
        echo "|---:|---:|---:|---:|---:|---:|---|"
        sed 's/^/| /; s/$/ |/' "$TMP/stmts.txt"
    fi
} | tee "$OUT_MD"
