#!/usr/bin/env bash
# PostgreSQL vs SQLite store throughput (issue 13), on demand (not part of the tests or CI):
#
#   scripts/pg-bench.sh              # 100,000 URLs, median of 3 runs into each store
#   N=20000 RUNS=5 scripts/pg-bench.sh
#
# Starts `fanout serve` and a private PostgreSQL (initdb into a temp dir, default settings: fsync
# and synchronous_commit on; run as nobody when root) on free loopback ports, then runs the same
# `fanout fetch` of N distinct URLs at -c 64 into a new SQLite file and into a new PostgreSQL
# database, alternating, and prints each run's requests/s and the medians. Everything it starts is
# stopped on exit.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-100000}
RUNS=${RUNS:-3}
C=${C:-64}
BIN=${FANOUT_BIN:-$ROOT/target/release/fanout}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
PG_BINDIR=${FANOUT_PG_BINDIR:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout-pgbench.XXXXXX")
chmod 755 "$TMP" # PostgreSQL (nobody, when run as root) reaches its directory through it
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
die() { echo "pg-bench: error: $*" >&2; exit 1; }
usage() { echo "pg-bench: $*" >&2; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HTTP_PORT=$(free_port)
"$BIN" serve --port "$HTTP_PORT" 2>/dev/null &
PIDS+=($!)
# scripts/lib/pg.sh: initdb, the postmaster (as nobody when root), the wait, psql.
. "$ROOT/scripts/lib/pg.sh"
pg_check
pg_init "$TMP/pg"
pg_launch "$(free_port)" -c listen_addresses=127.0.0.1
pg_wait
for _ in $(seq 100); do curl -s "http://127.0.0.1:$HTTP_PORT/item/0" >/dev/null 2>&1 && break; sleep 0.1; done

seq 0 $((N - 1)) | sed "s|^|http://127.0.0.1:$HTTP_PORT/item/|" >"$TMP/urls.txt"
rate() { # command... -> requests per second
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  python3 -c "print(round($N / ($t1 - $t0)))"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lite=() pg=()
for i in $(seq "$RUNS"); do
  r=$(rate "$BIN" fetch "$TMP/urls.txt" -q -c "$C" --db "$TMP/run$i.db"); lite+=("$r")
  pg_sql "CREATE DATABASE run$i" >/dev/null
  r=$(rate "$BIN" fetch "$TMP/urls.txt" -q -c "$C" --db "postgres://fanout@127.0.0.1:$PG_PORT/run$i?sslmode=disable")
  pg+=("$r")
  got=$(pg_sql 'SELECT count(*) FROM outcomes' "run$i")
  [ "$got" = "$N" ] || echo "warning: run$i holds $got rows, not $N" >&2
  echo "run $i: sqlite ${lite[-1]} req/s, postgresql ${pg[-1]} req/s" >&2
done
ml=$(printf '%s\n' "${lite[@]}" | median)
mp=$(printf '%s\n' "${pg[@]}" | median)
echo "fanout fetch of $N URLs at -c $C against fanout serve, median of $RUNS runs:"
echo "  SQLite     $ml req/s   (${lite[*]})"
echo "  PostgreSQL $mp req/s   (${pg[*]})"
python3 -c "print('  PostgreSQL / SQLite = %.2f' % ($mp / $ml))"
