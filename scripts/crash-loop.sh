#!/usr/bin/env bash
# Kill/resume torture test: runs `fanout fetch` on a large input, SIGKILLs it at random points
# CYCLES times, then reruns it to completion and reports lost and duplicated outcomes.
#
#   scripts/crash-loop.sh [CYCLES] [REQUESTS]      (defaults: 20 cycles, 100000 requests at 20ms server latency)
#
# Env: FANOUT_BIN (prebuilt binary), LATENCY (server latency, default 20ms), CONC (default 64).
# All traffic goes to a `fanout serve` on 127.0.0.1 started (and stopped) by this script.
set -euo pipefail
cycles=${1:-20}
n=${2:-100000}
latency=${LATENCY:-20ms}
conc=${CONC:-64}
cd "$(dirname "$0")/.."
if [ -z "${FANOUT_BIN:-}" ]; then
  cargo build --release --quiet
  FANOUT_BIN=$PWD/target/release/fanout
fi
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FANOUT_BIN" serve --port "$port" --latency "$latency" --count-paths 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

seq 1 "$n" | sed "s|^|http://127.0.0.1:$port/item/|" >"$work/urls.txt"
db=$work/crash.db

for c in $(seq 1 "$cycles"); do
  "$FANOUT_BIN" fetch "$work/urls.txt" --db "$db" -c "$conc" -q &
  pid=$!
  # A random point: 0.2 to 1.5 seconds into the run.
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.2, 1.5), 3))')"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    echo "cycle $c: killed; $(python3 - "$db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("PRAGMA integrity_check").fetchone()[0], "-", c.execute("SELECT count(*) FROM outcomes").fetchone()[0], "outcomes")
PY
)"
  else
    wait "$pid" || true
    echo "cycle $c: the run finished before the kill"
  fi
done

"$FANOUT_BIN" fetch "$work/urls.txt" --db "$db" -c "$conc" -q
kill -INT "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

python3 - "$db" "$n" "$work/server.log" <<'PY'
import re, sqlite3, sys
db, n, log = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
c = sqlite3.connect(db)
rows, keys = c.execute("SELECT count(*), count(DISTINCT key) FROM outcomes").fetchone()
ok = c.execute("SELECT count(*) FROM outcomes WHERE status = 200").fetchone()[0]
runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
integrity = c.execute("PRAGMA integrity_check").fetchone()[0]
requests = int(re.search(r"(\d+) requests", log).group(1))
paths = re.search(r"(\d+) distinct paths, (\d+) requested more than once, at most (\d+) times", log)
print(f"requests in input:        {n}")
print(f"runs (kills + final):     {runs}")
print(f"outcomes / distinct keys: {rows} / {keys}")
print(f"status 200:               {ok}")
print(f"lost (no outcome):        {n - keys}")
print(f"duplicated outcomes:      {rows - keys}")
print(f"server requests:          {requests} ({requests - n} refetches of in-flight or uncommitted work)")
print(f"URLs fetched more than once: {paths.group(2)}, at most {paths.group(3)} times")
print(f"integrity_check:          {integrity}")
sys.exit(0 if (n - keys == 0 and rows == keys and ok == n and integrity == "ok") else 1)
PY
