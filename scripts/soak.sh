#!/usr/bin/env bash
# Soak: REQUESTS requests (default 1,000,000) against the fault server (`fanout serve --faults`),
# one in FAULT_EVERY (default 100: 1%) a fault, spread evenly over every HTTP/1.1 fault class and a
# stalled TLS handshake; the rest `/fault/ok`. Hangs end by a short --timeout (1s). Checks exactly
# one outcome per request in the SQLite store and each fault's kind, and reports the run's time,
# peak RSS (VmHWM) with RSS sampled through the run, and fanout's open file descriptors, sampled
# through the run and once more when every outcome is in but the process still runs (its input, a
# FIFO, still open): what is left then is what a long-lived process would keep.
#
#   scripts/soak.sh [REQUESTS]
#
# Env: FANOUT_BIN (prebuilt binary; else a release build), CONC (-c, default 256), FAULT_EVERY.
# The Retry-After faults go to their own host name (`pause.test`, --resolve to 127.0.0.1), since a
# 503 with Retry-After pauses its whole host; --max-retry-after 1s bounds each pause. HTTP/2 faults
# are not in the soak: one HTTP/2 connection carries every request to a host, and the fault server
# answers only the first stream of each HTTP/2 connection (tests/cli/faults.rs covers them).
# Bounded: fanout runs with --deadline 30m. All traffic stays on 127.0.0.1.
set -euo pipefail
n=${1:-1000000}
conc=${CONC:-256}
every=${FAULT_EVERY:-100}
cd "$(dirname "$0")/.."
if [ -z "${FANOUT_BIN:-}" ]; then
  cargo build --release --locked --quiet
  FANOUT_BIN=$PWD/target/release/fanout
fi
work=$(mktemp -d)
server_pid=
fanout_pid=
cleanup() {
  [ -n "$fanout_pid" ] && kill "$fanout_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FANOUT_BIN" serve --faults --port "$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# Faults and what each must be recorded as (an error kind, or a status).
cat >"$work/expect.tsv" <<'EOF'
hang	timeout
headers-then-silence	timeout
drip	timeout
tls-stall	timeout
empty	reset
reset-before	reset
reset-mid-body	reset
short-body	reset
cut-chunked	reset
bad-chunk-size	protocol
chunk-size-overflow	protocol
endless-trailers	protocol
bad-status	protocol
http09	protocol
big-head	protocol
endless-body	body-too-large
gzip-bomb	body-too-large
broken-gzip	decode
gzip-bad-chunk	protocol
codings-chain	decode
redirect-loop	too-many-redirects
bad-location	bad-redirect
redirect-ftp	bad-redirect
redirect-no-location	302
slow-close	200
retry-after-seconds	503
retry-after-date	503
retry-after-past	503
retry-after-garbage	503
retry-after-huge	503
EOF

mkfifo "$work/in"
db=$work/soak.db
start=$(date +%s.%N)
"$FANOUT_BIN" fetch - --db "$db" -q -c "$conc" --timeout 1s --max-body 1MiB \
  --max-retry-after 1s --resolve "pause.test:$port:127.0.0.1" --deadline 30m \
  <"$work/in" 2>"$work/fanout.log" &
fanout_pid=$!
exec 3>"$work/in"
python3 - "$n" "$every" "$port" "$work/expect.tsv" >&3 <<'PY' &
import sys
n, every, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
faults = [l.split("\t")[0] for l in open(sys.argv[4]).read().splitlines() if l]
out = sys.stdout
for i in range(n):
    if i % every == every - 1:
        f = faults[(i // every) % len(faults)]
        if f == "tls-stall":
            out.write(f"https://127.0.0.1:{port}/fault/tls-stall/{i}\n")
        elif f.startswith("retry-after"):
            out.write(f"http://pause.test:{port}/fault/{f}/{i}\n")
        else:
            out.write(f"http://127.0.0.1:{port}/fault/{f}/{i}\n")
    else:
        out.write(f"http://127.0.0.1:{port}/fault/ok/{i}\n")
PY
gen_pid=$!

count() {
  python3 - "$db" <<'PY' 2>/dev/null || echo 0
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(c.execute("SELECT count(*) FROM outcomes").fetchone()[0])
PY
}
field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$fanout_pid/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$fanout_pid/fd" 2>/dev/null | wc -l; }

: >"$work/samples.tsv"
while kill -0 "$fanout_pid" 2>/dev/null; do
  done_n=$(count)
  now=$(date +%s.%N)
  printf '%.0f\t%s\t%s\t%s\n' "$(echo "$now - $start" | bc)" "$done_n" "$(field VmRSS)" "$(fds)" >>"$work/samples.tsv"
  [ "$done_n" -ge "$n" ] && break
  sleep 5
done
wait "$gen_pid"
end=$(date +%s.%N)
# Every outcome is in; the process still runs, its input open: what it holds now.
sleep 1
idle_fds=$(fds)
idle_rss=$(field VmRSS)
peak_rss=$(field VmHWM)
fd_list=$(ls -l "/proc/$fanout_pid/fd" 2>/dev/null | awk 'NR > 1 { t = $NF; sub(/:.*/, "", t); if (t ~ /^\//) t = "file"; n[t]++ } END { for (t in n) printf "%s %d, ", t, n[t] }')
exec 3>&-
set +e
wait "$fanout_pid"
code=$?
set -e
fanout_pid=
sleep 1
server_open=$(ls "/proc/$server_pid/fd" | wc -l)
kill -INT "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

python3 - "$db" "$n" "$work/expect.tsv" "$work/samples.tsv" "$(echo "$end - $start" | bc)" \
  "$peak_rss" "$idle_rss" "$idle_fds" "$fd_list" "$code" "$server_open" "$conc" "$work/server.log" <<'PY'
import re, sqlite3, sys
from collections import defaultdict
(db, n, expect, samples, secs, peak, idle_rss, idle_fds, fd_list, code, server_open, conc,
 server_log) = sys.argv[1:]
n, secs = int(n), float(secs)
c = sqlite3.connect(db)
rows, keys, urls = c.execute(
    "SELECT count(*), count(DISTINCT key), count(DISTINCT url) FROM outcomes").fetchone()
expect = dict(l.split("\t") for l in open(expect).read().splitlines() if l)
expect = {"ok": "200", **expect}
seen = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # name -> what -> [count, attempts]
times = defaultdict(list)
for url, error, status, attempts, total in c.execute(
        "SELECT url, error, status, attempts, total_ms FROM outcomes"):
    name = url.split("/fault/", 1)[1].split("/", 1)[0]
    what = error or str(status)
    seen[name][what][0] += 1
    seen[name][what][1] += attempts
    if name != "ok":
        times[name].append(total)
faults = sum(sum(v[0] for v in seen[k].values()) for k in seen if k != "ok")
print(f"requests: {n:,} ({faults:,} faults), -c {conc}, exit status {code}")
print(f"outcomes / distinct keys / distinct URLs: {rows:,} / {keys:,} / {urls:,}: "
      f"lost {n - keys}, duplicated {rows - keys}")
print(f"time: {secs:.1f} s ({n / secs:,.0f} requests/s)")
print(f"{'fault':<22} {'expected':<19} {'recorded ×count (attempts)':<36} {'median ms':>9} {'max ms':>8}")
bad = []
for name, want in expect.items():
    got = seen.get(name, {})
    desc = ", ".join(f"{w} ×{cnt:,} ({a:,})" for w, (cnt, a) in sorted(got.items()))
    ok = bool(got) and set(got) == {want}
    if not ok:
        bad.append(name)
    t = sorted(times.get(name, []))
    p50 = f"{t[len(t) // 2]:.0f}" if t else ""
    mx = f"{t[-1]:.0f}" if t else ""
    print(f"{name:<22} {want:<19} {desc:<36} {p50:>9} {mx:>8}{'' if ok else '   <-- unexpected'}")
rss = [l.split("\t") for l in open(samples).read().splitlines() if l]
step = max(1, len(rss) // 10)
print("sampled (s: outcomes, RSS MiB, open fds):")
for t, d, r, f in rss[::step] + ([rss[-1]] if rss and (len(rss) - 1) % step else []):
    print(f"  {t:>5} s: {int(d):>9,} {int(r or 0) / 1024:7.1f} {f:>5}")
print(f"peak RSS (VmHWM): {int(peak or 0) / 1024:.1f} MiB; "
      f"RSS with every outcome in: {int(idle_rss or 0) / 1024:.1f} MiB")
print(f"fanout's open fds with every outcome in (input still open): {idle_fds} ({fd_list.strip()})")
print(f"most fds sampled during the run: {max((int(f) for *_, f in rss), default=0)}")
print(f"fault server's open fds after fanout exited: {server_open}")
m = re.search(r"(\d+) connections, (\d+) requests", open(server_log).read())
if m:
    print(f"fault server saw: {int(m.group(1)):,} connections, {int(m.group(2)):,} requests")
ok = n == keys == rows == urls and not bad and code in ("0", "1")
print("soak:", "ok" if ok else f"FAILED ({', '.join(bad) or 'outcome count'})")
sys.exit(0 if ok else 1)
PY
