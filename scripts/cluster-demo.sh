#!/usr/bin/env bash
# Several "machines" on this one (issue 14): network namespaces joined by a bridge, PostgreSQL in
# one, the target server in another, a `fanout work` in each of the rest. It enqueues N URLs,
# SIGKILLs one worker mid-run, waits for the others to drain the queue, prints what each worker
# did and the fleet's rate, and checks that every job has exactly one outcome. On demand, as root
# (namespaces need it); not part of the tests.
#
#   sudo scripts/cluster-demo.sh
#   WORKERS=4 N=20000 KILL=0 scripts/cluster-demo.sh
#
# The "hosts" (names carry this script's pid, so two demos never meet):
#
#   fo<pid>-net   the switch: a bridge, one veth end per host (nothing else lives here)
#   fo<pid>-db    10.77.0.2   PostgreSQL 15 (initdb into a temp dir, run as nobody; trust for the subnet)
#   fo<pid>-web   10.77.0.3   fanout serve --host 10.77.0.3 --port 8080 --latency $LATENCY --count-paths
#   fo<pid>-wI    10.77.0.1I  fanout work -c $C --lease $LEASE (I = 1..WORKERS)
#
# Addresses exist only inside the namespaces; the root namespace gets no interface, address or
# route. The trap on EXIT kills every process started here (by pid), deletes the namespaces (their
# veths and the bridge go with them) and removes the temp dir.
#
# Environment:
#   WORKERS=3      worker hosts (1..100)
#   N=50000        URLs enqueued (distinct paths /item/0 .. /item/N-1)
#   KILL=1         SIGKILL the last worker once a third of the jobs are done (0: no failure)
#   C=64           -c of each worker
#   LATENCY=20ms   the target server's added latency
#   LEASE=5s       --lease of each worker: how soon the killed worker's jobs go back to the others
#   TIME_CAP=600   seconds the workers may take in all before the demo gives up (exit 1)
#   FANOUT_BIN=... a fanout binary to use instead of `cargo build --release`
#   PG_BINDIR=...  PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   KEEP_TMP=1     keep the temp dir (logs, PostgreSQL's data) for inspection
#
# Exit status: 0 when every check passed, 1 when one failed (or a step did), 2 on bad usage
# (not root, a bad knob, a missing tool).
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
WORKERS=${WORKERS:-3}
N=${N:-50000}
KILL=${KILL:-1}
C=${C:-64}
LATENCY=${LATENCY:-20ms}
LEASE=${LEASE:-5s}
TIME_CAP=${TIME_CAP:-600}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
usage() { printf 'cluster-demo: %s\n' "$*" >&2; exit 2; }
die() { printf 'cluster-demo: error: %s\n' "$*" >&2; exit 1; }
is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

[ "$(id -u)" = 0 ] || usage "needs root (it creates network namespaces): run it with sudo"
is_uint "$WORKERS" && [ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 100 ] || usage "WORKERS=$WORKERS: 1 to 100"
is_uint "$N" && [ "$N" -ge 1 ] || usage "N=$N: a positive number of URLs"
is_uint "$C" && [ "$C" -ge 1 ] || usage "C=$C: a positive concurrency"
is_uint "$TIME_CAP" && [ "$TIME_CAP" -ge 1 ] || usage "TIME_CAP=$TIME_CAP: seconds"
case $KILL in 0 | 1) ;; *) usage "KILL=$KILL: 0 or 1" ;; esac
[ "$KILL" = 1 ] && [ "$WORKERS" -lt 2 ] && usage "KILL=1 needs WORKERS >= 2 (someone must finish the killed worker's jobs)"
for t in ip setpriv psql jq timeout; do command -v "$t" >/dev/null || usage "'$t' is required"; done
# scripts/lib/pg.sh: initdb, the postmaster as nobody (here inside a namespace), the wait, psql.
. "$ROOT/scripts/lib/pg.sh"
pg_check

. "$ROOT/scripts/lib/bin.sh"
fanout_bin

# ------------------------------------------------------------------------------- state and cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout-cluster.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP" # PostgreSQL (nobody) reaches its directory through it
P="fo$$"
NS_NET=$P-net
NS_DB=$P-db
NS_WEB=$P-web
NAMESPACES=()
PIDS=()      # every process started here, in start order
PG_PID=""
WEB_PID=""
declare -A WPID=() # worker index -> pid
cleanup() {
    local ns
    # Last started first: the workers hand their jobs back while PostgreSQL is still up, then the
    # server, then PostgreSQL (SIGINT: its fast shutdown). Whatever outlasts 10 s gets SIGKILL.
    pg_stop_all
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------- network
ns_add() { ip netns add "$1" || die "ip netns add $1 failed"; NAMESPACES+=("$1"); ip -n "$1" link set lo up; }
# host NS ADDR: a namespace whose eth0 (10.77.0.ADDR/24) is one end of a veth, the other end on the bridge.
host() {
    local ns=$1 addr=$2 port=$3
    ns_add "$ns"
    ip -n "$NS_NET" link add "$port" type veth peer name eth0 netns "$ns" || die "veth for $ns failed"
    ip -n "$NS_NET" link set "$port" master br0 up || die "bridge port $port failed"
    ip -n "$ns" addr add "10.77.0.$addr/24" dev eth0 || die "address for $ns failed"
    ip -n "$ns" link set eth0 up || die "eth0 up in $ns failed"
}
log "network: namespaces $P-*, bridge br0 in $NS_NET, 10.77.0.0/24"
ns_add "$NS_NET"
ip -n "$NS_NET" link add br0 type bridge || die "bridge failed"
ip -n "$NS_NET" link set br0 up
host "$NS_DB" 2 db
host "$NS_WEB" 3 web
for i in $(seq "$WORKERS"); do host "$P-w$i" $((10 + i)) "w$i"; done
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Wait until ADDR:PORT accepts connections, seen from worker 1's host.
wait_tcp() {
    local i
    for i in $(seq 300); do
        in_ns "$P-w1" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------------------------- PostgreSQL
pg_init "$TMP/pg"
printf 'local all all trust\nhost all all 10.77.0.0/24 trust\n' >"$PG_DIR/data/pg_hba.conf"
PG_PREFIX=(ip netns exec "$NS_DB")
pg_launch 5432 -c listen_addresses=10.77.0.2 -c max_connections=$((20 + 4 * WORKERS))
# The script itself talks to PostgreSQL over its Unix socket (a file: no namespace needed).
sql() { pg_sql "$1" "${2:-fanout}"; }
pg_wait
sql 'CREATE DATABASE fanout' postgres >/dev/null || die "CREATE DATABASE failed"
wait_tcp 10.77.0.2 5432 || die "PostgreSQL is not reachable at 10.77.0.2:5432 from $P-w1"
DB="postgres://fanout@10.77.0.2:5432/fanout?sslmode=disable"
log "PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}') on 10.77.0.2:5432 in $NS_DB (pid $PG_PID, as nobody)"

# ---------------------------------------------------------------------------------- target server
ip netns exec "$NS_WEB" "$BIN" serve --host 10.77.0.3 --port 8080 --latency "$LATENCY" --count-paths \
    >"$TMP/web.log" 2>&1 &
WEB_PID=$!
PIDS+=("$WEB_PID")
wait_tcp 10.77.0.3 8080 || die "fanout serve did not start: $(tail -3 "$TMP/web.log")"
log "fanout serve on 10.77.0.3:8080 in $NS_WEB (pid $WEB_PID), latency $LATENCY"

# ---------------------------------------------------------------------------------------- enqueue
seq 0 $((N - 1)) | sed 's|^|http://10.77.0.3:8080/item/|' >"$TMP/urls.txt"
log "fanout enqueue (from $P-w1): $N URLs"
t0=$(date +%s.%N)
in_ns "$P-w1" "$BIN" enqueue --db "$DB" "$TMP/urls.txt" 2>"$TMP/enqueue.log" ||
    die "fanout enqueue failed: $(cat "$TMP/enqueue.log")"
t1=$(date +%s.%N)
sed 's/^/    /' "$TMP/enqueue.log" >&2
ENQ_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')

# ---------------------------------------------------------------------------------------- workers
log "starting $WORKERS workers: fanout work --db $DB -c $C --lease $LEASE"
START=$(date +%s.%N)
for i in $(seq "$WORKERS"); do
    ip netns exec "$P-w$i" "$BIN" work --db "$DB" -c "$C" --lease "$LEASE" --progress never \
        >"$TMP/w$i.log" 2>&1 &
    WPID[$i]=$!
    PIDS+=("${WPID[$i]}")
done
alive() { kill -0 "$1" 2>/dev/null; }
done_jobs() { sql "SELECT count(*) FROM queue_jobs WHERE state = 'done'" 2>/dev/null || echo 0; }
DEADLINE=$(($(date +%s) + TIME_CAP))
VICTIM=""
KILLED_HELD=0
if [ "$KILL" = 1 ]; then
    VICTIM=$WORKERS
    vp=${WPID[$VICTIM]}
    until [ "$(done_jobs)" -ge $((N / 3)) ]; do
        alive "$vp" || die "worker $VICTIM exited before a third of the jobs were done: $(tail -3 "$TMP/w$VICTIM.log")"
        [ "$(date +%s)" -lt "$DEADLINE" ] || die "a third of the jobs not done within TIME_CAP=${TIME_CAP}s"
        sleep 0.1
    done
    kill -KILL "$vp"
    KILL_AT=$(done_jobs)
    wait "$vp" 2>/dev/null
    # What it held when it died: these jobs wait for their leases to run out, then others take them.
    KILLED_HELD=$(sql "SELECT count(*) FROM queue_jobs WHERE state = 'leased' AND worker LIKE '%:$vp:%'")
    log "SIGKILL worker $VICTIM (pid $vp) at $KILL_AT of $N done; it held $KILLED_HELD leased jobs"
fi
declare -A WCODE=()
for i in $(seq "$WORKERS"); do
    [ "$i" = "$VICTIM" ] && { WCODE[$i]="137 (SIGKILL)"; continue; }
    while alive "${WPID[$i]}"; do
        if [ "$(date +%s)" -ge "$DEADLINE" ]; then
            die "the workers did not drain the queue within TIME_CAP=${TIME_CAP}s ($(done_jobs) of $N done)"
        fi
        sleep 0.1
    done
    wait "${WPID[$i]}"
    WCODE[$i]=$?
done
END=$(date +%s.%N)
WALL=$(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.2f", b - a}')

# ------------------------------------------------------------------------------------------ report
# The server's own count of what it was sent (at-least-once fetches), printed when it stops.
kill -TERM "$WEB_PID" 2>/dev/null
timeout 10 tail --pid="$WEB_PID" -f /dev/null
in_ns "$P-w1" "$BIN" status --db "$DB" --json >"$TMP/status.json" 2>"$TMP/status.err" ||
    die "fanout status failed: $(cat "$TMP/status.err")"

echo
echo "## fanout work queue across $((WORKERS + 3)) network namespaces"
echo
echo "PostgreSQL 10.77.0.2 ($NS_DB), fanout serve --latency $LATENCY 10.77.0.3 ($NS_WEB), $WORKERS workers 10.77.0.11.. ($P-w1..), $N URLs, -c $C each, --lease $LEASE"
echo
echo "| worker | namespace | address | pid | exit | state (status) | jobs done | failed | completions refused | outcomes of its run | jobs/s |"
echo "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|"
for i in $(seq "$WORKERS"); do
    pid=${WPID[$i]}
    row=$(jq -r --arg pid ":$pid:" \
        '.workers[] | select(.worker | contains($pid)) | [.worker, .run_id, .state, .done, .failed, .stale] | @tsv' \
        "$TMP/status.json")
    IFS=$'\t' read -r name run state wdone wfailed wstale <<<"$row"
    outs=$(sql "SELECT count(*) FROM outcomes WHERE run_id = ${run:-0}")
    # Its rate by the database's clock: the jobs it completed over its first claim to its last completion.
    rate=$(sql "SELECT round(count(*) / greatest(extract(epoch FROM max(done_at) - min(leased_at)), 0.001)) FROM queue_jobs WHERE state = 'done' AND worker = '${name:-?}'")
    [ "$i" = "$VICTIM" ] && rate="$rate (until killed)"
    echo "| w$i${name:+ ($name)} | $P-w$i | 10.77.0.$((10 + i)) | $pid | ${WCODE[$i]} | ${state:-?} | ${wdone:-?} | ${wfailed:-?} | ${wstale:-?} | $outs | $rate |"
done
echo
read -r outcomes distinct jobs_done not_done released <<<"$(sql "SELECT (SELECT count(*) FROM outcomes), (SELECT count(DISTINCT key) FROM outcomes), (SELECT count(*) FROM queue_jobs WHERE state = 'done'), (SELECT count(*) FROM queue_jobs WHERE state <> 'done'), (SELECT count(*) FROM queue_jobs WHERE leases > 1)" | tr '|' ' ')"
sum_done=$(jq '[.workers[].done] | add' "$TMP/status.json")
span=$(sql "SELECT round(extract(epoch FROM max(done_at) - min(leased_at))::numeric, 2) FROM queue_jobs")
served=$(grep -o '[0-9]* requests, at most' "$TMP/web.log" | awk '{print $1}')
repeated=$(grep -o '[0-9]* requested more than once' "$TMP/web.log" | awk '{print $1}')
echo "| fleet | |"
echo "|---|---|"
echo "| enqueue ($N URLs, COPY) | ${ENQ_SECS} s |"
echo "| workers started → last worker exited | ${WALL} s: **$(awk -v n="$N" -v w="$WALL" 'BEGIN {printf "%.0f", n / w}') jobs/s** |"
echo "| first claim → last completion (database clock) | ${span} s: $(awk -v n="$N" -v w="$span" 'BEGIN {printf "%.0f", n / w}') jobs/s |"
[ -n "$VICTIM" ] && echo "| killed | w$VICTIM (pid ${WPID[$VICTIM]}) with SIGKILL at $KILL_AT of $N done, holding $KILLED_HELD leases (--lease $LEASE) |"
echo "| jobs leased more than once | $released |"
echo "| requests the server received | ${served:-?} (${repeated:-?} paths more than once: fetches are at least once) |"
echo
fail=0
check() { # WHAT GOT WANT
    if [ "$2" = "$3" ]; then echo "ok    $1 = $2"; else echo "FAIL  $1 = $2, expected $3"; fail=1; fi
}
check "outcome rows, count(*)" "$outcomes" "$N"
check "distinct keys among them, count(DISTINCT key)" "$distinct" "$N"
check "jobs done" "$jobs_done" "$N"
check "jobs not done" "$not_done" 0
check "sum of the workers' completions (fanout status)" "$sum_done" "$N"
for i in $(seq "$WORKERS"); do
    [ "$i" = "$VICTIM" ] && continue
    check "exit status of worker w$i" "${WCODE[$i]}" 0
    [ "${WCODE[$i]}" = 0 ] || sed 's/^/      w'"$i"': /' "$TMP/w$i.log" | tail -5
done
if [ -n "$VICTIM" ]; then
    [ "$released" -ge 1 ] && echo "ok    the killed worker's leases went to the others ($released jobs leased twice)" ||
        { echo "FAIL  no job was leased twice: the kill came too late to show anything"; fail=1; }
fi
[ "$fail" = 0 ] && echo "all checks passed" || echo "some checks FAILED"
exit "$fail"
