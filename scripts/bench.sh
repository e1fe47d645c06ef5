#!/usr/bin/env bash
# Benchmark harness for issues 5 and 17: fanout against wrk, curl --parallel, an asyncio + aiohttp
# script, an asyncio + httpx script that records to SQLite, oha, wget2 and a hand-written reqwest
# program, all on 127.0.0.1. Run on demand (it is not part of the test suite or CI):
#
#   scripts/bench.sh                  # everything, median of 3 runs each
#   RUNS=5 BENCH_BIG=0 scripts/bench.sh
#   ONLY="e f g" RUNS=3 scripts/bench.sh
#
# It installs what is missing (Debian nginx, wrk, curl, wget2, openssl, time, sqlite3 with apt-get;
# aiohttp and httpx[http2] from PyPI into a venv under target/bench-venv; oha with cargo install
# into target/bench-tools),
# builds fanout (or uses FANOUT_BIN), starts nginx and `fanout serve` on free loopback ports, runs the
# workloads, prints one markdown table per shape and writes them to target/bench-results.md. Every
# server it starts is stopped on exit.
#
# Environment:
#   RUNS=3            runs per figure; each figure is the median of the runs
#   BENCH_BIG=1       0 skips the 10M-line memory run of workload (c) (1M always runs)
#   BIG_RUNS=$RUNS    runs for workload (c)
#   FANOUT_BIN=...    use this fanout binary instead of `cargo build --release`
#   FANOUT_BASE=...   a second fanout binary (e.g. a build of the previous commit) run in workload (a)
#                     right after FANOUT_BIN in every round, so before/after medians are interleaved
#   N_A=100000        distinct URLs in workload (a); N_CURL=$N_A for curl's share of it
#   N_HTTPX=5000      the httpx peer's share of every workload it runs in (the first N_HTTPX URLs of
#                     the list): it manages ~0.45k req/s at C=64 here, so the whole list of (a)
#                     would take minutes
#   WRK_SECS=5        wrk's fixed duration; WRK_THREADS=2
#   NGINX_WORKERS=1   nginx worker_processes ("auto" = one per core)
#   ONLY="a b c d e f g h i" workloads to run
#   B_SHAPES="2000:200 10000:1000"   workload (b): N:C pairs, N URLs at 100 ms latency (fanout serve) at
#                     concurrency C; e.g. add 100000:10000 for the issue's memory shape
#   N_E=50000 N_F=20000 N_G=10000 C_EFG=64   workloads (e) HTTPS keep-alive (h2 by ALPN, then
#                     --http1), (f) plain http with nginx keepalive_timeout 0 (a new connection per
#                     request), (g) HTTPS with keep-alive off (a TLS handshake per request, session
#                     resumption on); one host, a self-signed CA and certificate made with openssl
#   SKIP="oha ..."    peers to leave out (wrk curl aiohttp httpx oha wget2 reqwest), e.g. to avoid an install
#   H_ORIGINS=1000 H_PER=100 C_H=256     workload (h): URLs over many origins (nginx, one worker,
#                     listening on that many loopback ports), shuffled; H_BIG=1 also runs 10,000 × 10
#   I_NAMES=2000 I_PER=10 C_I=128        workload (i): URLs over many host names resolved by dnsmasq
#                     in a network namespace (needs root and `ip netns`); its log counts DNS queries
#   RUN_CAP=600       seconds any one run may take before it is killed (10M run: 4 × RUN_CAP)
#   KEEP_TMP=1        keep the temp dir (logs, configs) for inspection
set -uo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
BENCH_BIG=${BENCH_BIG:-1}
BIG_RUNS=${BIG_RUNS:-$RUNS}
N_A=${N_A:-100000}
N_CURL=${N_CURL:-$N_A}
N_HTTPX=${N_HTTPX:-5000}
C_A=64
WRK_SECS=${WRK_SECS:-5}
WRK_THREADS=${WRK_THREADS:-2}
NGINX_WORKERS=${NGINX_WORKERS:-1}
ONLY=${ONLY:-a b c d e f g h i}
B_SHAPES=${B_SHAPES:-2000:200 10000:1000}
N_E=${N_E:-50000}
N_F=${N_F:-20000}
N_G=${N_G:-10000}
C_EFG=${C_EFG:-64}
H_ORIGINS=${H_ORIGINS:-1000}
H_PER=${H_PER:-100}
C_H=${C_H:-256}
H_BIG=${H_BIG:-1}
I_NAMES=${I_NAMES:-2000}
I_PER=${I_PER:-10}
C_I=${C_I:-128}
SKIP=${SKIP:-}
RUN_CAP=${RUN_CAP:-600}
OUT_MD=$ROOT/target/bench-results.md
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
wants() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
skipped() { case " $SKIP " in *" $1 "*) log "SKIP: leaving out $1"; return 0 ;; *) return 1 ;; esac; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout-bench.XXXXXX") || die "mktemp failed"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------- installs
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >"$TMP/apt.log" 2>&1 || return 1
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$TMP/apt.log" 2>&1
}
# need CMD PACKAGE: true when CMD is (now) available.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    apt_install "$2" || true
    command -v "$1" >/dev/null 2>&1
}

[ -x /usr/bin/time ] || apt_install time || true
[ -x /usr/bin/time ] || die "/usr/bin/time (Debian package 'time') is required"
need timeout coreutils || die "timeout (coreutils) is required"
need nginx nginx || die "nginx could not be installed"
need sqlite3 sqlite3 || warn "no sqlite3 CLI: fanout's outcome counts will not be checked"
HAVE_WRK=0; HAVE_CURL=0; HAVE_AIOHTTP=0; HAVE_HTTPX=0; HAVE_OHA=0
if skipped wrk; then :; elif need wrk wrk; then HAVE_WRK=1; else warn "wrk could not be installed: skipping it"; fi
if skipped curl; then :; elif need curl curl; then HAVE_CURL=1; else warn "curl could not be installed: skipping it"; fi

# The Python peers: aiohttp and httpx (with its http2 extra, for (e) over h2), installed from PyPI
# into one venv as a user would (`pip install aiohttp 'httpx[http2]'`).
VENV=$ROOT/target/bench-venv
PY=$VENV/bin/python
PY_WANT=()
skipped aiohttp || "$PY" -c 'import aiohttp' 2>/dev/null || PY_WANT+=(aiohttp)
skipped httpx || "$PY" -c 'import httpx, h2' 2>/dev/null || PY_WANT+=('httpx[http2]')
if [ "${#PY_WANT[@]}" -gt 0 ]; then
    log "installing ${PY_WANT[*]} into $VENV"
    if [ ! -x "$VENV/bin/pip" ] && ! python3 -m venv "$VENV" 2>/dev/null; then
        apt_install python3 python3-venv || true
        /usr/bin/python3 -m venv "$VENV" || true
    fi
    [ -x "$VENV/bin/pip" ] && "$VENV/bin/pip" install -q "${PY_WANT[@]}" >"$TMP/pip.log" 2>&1
fi
if skipped aiohttp; then :; elif "$PY" -c 'import aiohttp' 2>/dev/null; then HAVE_AIOHTTP=1; else warn "aiohttp could not be installed: skipping that Python peer"; fi
if skipped httpx; then :; elif "$PY" -c 'import httpx, h2' 2>/dev/null; then HAVE_HTTPX=1; else warn "httpx could not be installed: skipping that Python peer"; fi

OHA=$ROOT/target/bench-tools/bin/oha
if skipped oha; then
    OHA=/nonexistent
elif [ ! -x "$OHA" ]; then
    if command -v oha >/dev/null; then
        OHA=$(command -v oha)
    else
        log "cargo install oha (several minutes on 2 cores)"
        cargo install --locked --root "$ROOT/target/bench-tools" oha >"$TMP/oha-install.log" 2>&1 ||
            warn "cargo install oha failed (see the log with KEEP_TMP=1): skipping oha"
    fi
fi
[ -x "$OHA" ] && HAVE_OHA=1

# Peers of workloads (a), (h) and (i), wget2 also of (e)-(g): wget2 (Debian) and the hand-written
# Rust program of bench/reqwest-peer (reqwest + buffer_unordered + SQLite inserts on a thread),
# built here.
HAVE_WGET2=0; HAVE_REQWEST=0
if wants a || wants e || wants f || wants g || wants h || wants i; then
    if skipped wget2; then :; elif need wget2 wget2; then HAVE_WGET2=1; else warn "wget2 could not be installed: skipping it"; fi
fi
if wants a || wants h || wants i; then
    PEER=$ROOT/target/bench-peer/release/reqwest-peer
    if skipped reqwest; then :; else
        log "cargo build --release bench/reqwest-peer"
        if cargo build --release --quiet --locked --manifest-path "$ROOT/bench/reqwest-peer/Cargo.toml" \
            --target-dir "$ROOT/target/bench-peer" >"$TMP/peer-build.log" 2>&1 && [ -x "$PEER" ]; then
            HAVE_REQWEST=1
        else
            warn "bench/reqwest-peer did not build (see the log with KEEP_TMP=1): skipping it"
        fi
    fi
fi

if [ -n "${FANOUT_BIN:-}" ]; then
    FANOUT=$FANOUT_BIN
else
    log "cargo build --release"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" || die "cargo build failed"
    FANOUT=${CARGO_TARGET_DIR:-$ROOT/target}/release/fanout
fi
[ -x "$FANOUT" ] || die "no fanout binary at $FANOUT"

# ----------------------------------------------------------------------------------------- servers
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: a port nothing listens on, below the kernel's ephemeral range (a port in that range may
# be the source port of some connection, which no listener shows, and then bind() fails).
free_port() {
    local p i lo
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [ "${lo:-0}" -gt 21000 ] || lo=32768
    for i in $(seq 1 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM + i) % (lo - 20000)))
        port_open "$p" || { echo "$p"; return 0; }
    done
    return 1
}
wait_port() {
    local i
    for i in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
    return 1
}

NG=$TMP/nginx
mkdir -p "$NG"
NGINX_PORT=$(free_port) || die "no free port"
# Workloads (e)-(g): three more servers in the same nginx (one worker): HTTPS with keep-alive (h2 by
# ALPN), plain http with keep-alive off, HTTPS with keep-alive off (HTTP/1.1 only: nginx closes an h2
# connection only on its idle timeout, so a TLS handshake per request needs h1). The certificate is
# an ECDSA P-256 leaf for IP 127.0.0.1 signed by a CA made here (rustls refuses a CA certificate as the
# server's own); clients get the CA (--cacert; wget2 --ca-certificate). nginx
# logs $ssl_session_reused for (g), so each run's resumed handshakes are counted.
EFG_SERVERS=""
CA=$TMP/tls/ca.pem
if wants e || wants f || wants g; then
    need openssl openssl || die "openssl is required for workloads (e)-(g)"
    mkdir -p "$TMP/tls"
    (
        cd "$TMP/tls" || exit 1
        printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >leaf.ext
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
            -subj "/CN=fanout bench CA" -keyout ca.key -out ca.pem &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
                -keyout leaf.key -out leaf.csr &&
            openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
                -extfile leaf.ext -out leaf.pem
    ) >"$TMP/tls/openssl.log" 2>&1 || die "openssl could not make the test certificate: $(cat "$TMP/tls/openssl.log")"
    TLS_PORT=$(free_port) || die "no free port"
    CLOSE_PORT=$(free_port) || die "no free port"
    TLS_CLOSE_PORT=$(free_port) || die "no free port"
    TLS_CONF="ssl_certificate $TMP/tls/leaf.pem; ssl_certificate_key $TMP/tls/leaf.key; ssl_session_cache shared:SSL:10m;"
    ITEM="location / { default_type application/json; return 200 '{\"id\":1,\"name\":\"item\"}'; }"
    EFG_SERVERS="
    log_format reused '\$ssl_session_reused';
    server { listen 127.0.0.1:$TLS_PORT ssl http2; $TLS_CONF $ITEM }
    server { listen 127.0.0.1:$CLOSE_PORT; keepalive_timeout 0; $ITEM }
    server { listen 127.0.0.1:$TLS_CLOSE_PORT ssl; keepalive_timeout 0; $TLS_CONF
        access_log $NG/g-reused.log reused; $ITEM }"
fi
cat >"$NG/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 65s;
    client_body_temp_path $NG/client_body;
    proxy_temp_path $NG/proxy;
    fastcgi_temp_path $NG/fastcgi;
    uwsgi_temp_path $NG/uwsgi;
    scgi_temp_path $NG/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { default_type application/json; return 200 '{"id":1,"name":"item"}'; }
    }$EFG_SERVERS
}
EOF
nginx -p "$NG" -c "$NG/nginx.conf" -e "$NG/error.log" &
PIDS+=($!)
wait_port "$NGINX_PORT" || die "nginx did not start (see $NG/error.log)"
NGINX=http://127.0.0.1:$NGINX_PORT
log "nginx ($NGINX_WORKERS worker(s)) on $NGINX"

SERVE_PORT=$(free_port) || die "no free port"
"$FANOUT" serve --port "$SERVE_PORT" --latency 100ms 2>"$TMP/serve.log" &
PIDS+=($!)
wait_port "$SERVE_PORT" || die "fanout serve did not start: $(cat "$TMP/serve.log")"
SERVE=http://127.0.0.1:$SERVE_PORT
log "fanout serve --latency 100ms on $SERVE"

# --------------------------------------------------------------------------------------- measuring
# The load average before and after tells a noisy run (another build on the 2 cores) from a quiet one.
LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
RES=$TMP/results
mkdir -p "$RES"
# measure ID CAP CMD...: one run under /usr/bin/time, killed after CAP seconds. Sets RC, WALL, CPU,
# RSS_KB; the command's stdout and stderr are in $TMP/ID.out and $TMP/ID.err.
measure() {
    local id=$1 cap=$2 user sys
    shift 2
    rm -f "$TMP/$id.time"
    timeout -k 5 "$cap" /usr/bin/time -f '%e %U %S %M' -o "$TMP/$id.time" "$@" \
        >"$TMP/$id.out" 2>"$TMP/$id.err"
    RC=$?
    WALL=nan; CPU=nan; RSS_KB=nan
    if [ -s "$TMP/$id.time" ] && read -r WALL user sys RSS_KB < <(tail -n 1 "$TMP/$id.time"); then
        CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')
    fi
    [ "$RC" = 124 ] || [ "$RC" = 137 ] && warn "$id: killed after ${cap}s"
}
# record ID REQUESTS OK [EXTRA]: appends one run's figures.
record() {
    echo "$WALL $CPU $RSS_KB $2 $3 $RC ${4:-nan}" >>"$RES/$1"
    log "$(printf '%-22s wall %6ss  cpu %6ss  rss %6s KB  requests %s  200s %s  rc %s %s' \
        "$1" "$WALL" "$CPU" "$RSS_KB" "$2" "$3" "$RC" "${4:-}")"
}
# med ID COLUMN: the median of one column over the runs (numbers only).
med() {
    [ -s "$RES/$1" ] || { echo nan; return; }
    awk -v c="$2" '$c != "nan" { print $c }' "$RES/$1" | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# fanout_counts DB: "outcomes 200s" from the store.
fanout_counts() {
    if command -v sqlite3 >/dev/null && [ -f "$1" ]; then
        sqlite3 -separator ' ' "$1" 'SELECT count(*), coalesce(sum(status = 200), 0) FROM outcomes' 2>/dev/null || echo "nan nan"
    else
        echo "nan nan"
    fi
}
# fanout_other DB: outcomes that are not 200, grouped (empty when all are 200).
fanout_other() {
    command -v sqlite3 >/dev/null && [ -f "$1" ] || return 0
    sqlite3 -separator ' ' "$1" "SELECT coalesce(error, status), count(*) FROM outcomes WHERE status IS NOT 200 GROUP BY 1" 2>/dev/null |
        tr '\n' ',' | sed 's/,$//'
}
fanout_elapsed() { sed -n 's/^[0-9]* outcomes in \([0-9.]*\)s .*/\1/p' "$1" | tail -n 1; }

urls() { seq 1 "$1" | awk -v b="$2" '{ print b $0 }'; }
# httpx_run ID LIST C [ARGS...]: one run of the httpx peer over the first N_HTTPX URLs of LIST at
# concurrency C (ARGS: --cacert CA, --http2), recorded as ID.httpx; run behind the words of
# HTTPX_PREFIX when set (e.g. `ip netns exec NS`).
httpx_run() {
    local id=$1 list=$2 c=$3 got ok other
    shift 3
    [ "$HAVE_HTTPX" = 1 ] || return 0
    head -n "$N_HTTPX" "$list" >"$TMP/$id-httpx.txt"
    rm -f "$TMP"/hx.db*
    measure "$id-httpx" "$RUN_CAP" ${HTTPX_PREFIX:-} "$PY" "$ROOT/scripts/httpx_fetch.py" \
        "$TMP/$id-httpx.txt" "$c" "$TMP/hx.db" "$@"
    read -r got ok < <(sed -n 's/^\([0-9]*\) outcomes, \([0-9]*\) 200s$/\1 \2/p' "$TMP/$id-httpx.out")
    other=$(fanout_other "$TMP/hx.db") # the same columns as fanout's outcomes
    [ -n "$other" ] && warn "httpx ($id) outcomes other than 200: $other"
    record "$id.httpx" "${got:-nan}" "${ok:-nan}"
    rm -f "$TMP"/hx.db*
}

# ----------------------------------------------------------------------------------- workload (a)
if wants a; then
    log "workload (a): $N_A distinct URLs at C=$C_A against nginx, $RUNS rounds"
    urls "$N_A" "$NGINX/item/" >"$TMP/a.txt"
    head -n "$N_CURL" "$TMP/a.txt" | awk '{ print "url = \"" $0 "\"\noutput = \"/dev/null\"" }' >"$TMP/curl.cfg"
    for _ in $(seq 1 "$RUNS"); do
        if [ "$HAVE_WRK" = 1 ]; then
            measure wrk $((WRK_SECS + 30)) wrk -t "$WRK_THREADS" -c "$C_A" -d "${WRK_SECS}s" "$NGINX/item/1"
            n=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$TMP/wrk.out")
            bad=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$TMP/wrk.out")
            record a.wrk "${n:-nan}" "$(( ${n:-0} - ${bad:-0} ))"
        fi
        if [ "$HAVE_CURL" = 1 ]; then
            measure curl "$RUN_CAP" curl -s --no-progress-meter --parallel --parallel-max "$C_A" \
                -m 30 -w '%{http_code}\n' -K "$TMP/curl.cfg"
            record a.curl "$(wc -l <"$TMP/curl.out")" "$(grep -c '^200$' "$TMP/curl.out")"
        fi
        if [ "$HAVE_AIOHTTP" = 1 ]; then
            measure aiohttp "$RUN_CAP" "$PY" "$ROOT/scripts/aiohttp_fetch.py" "$TMP/a.txt" "$C_A"
            record a.aiohttp "$N_A" "$(tail -n 1 "$TMP/aiohttp.out")"
        fi
        httpx_run a "$TMP/a.txt" "$C_A"
        if [ "$HAVE_WGET2" = 1 ]; then
            rm -f "$TMP/wget2.csv"
            measure a-wget2 "$RUN_CAP" wget2 -q --no-robots --max-threads="$C_A" -i "$TMP/a.txt" \
                -O /dev/null --stats-site="csv:$TMP/wget2.csv"
            got=$(awk 'NR > 1' "$TMP/wget2.csv" 2>/dev/null | wc -l)
            ok=$(awk -F, 'NR > 1 && $4 == 200' "$TMP/wget2.csv" 2>/dev/null | wc -l)
            record a.wget2 "$got" "$ok"
        fi
        if [ "$HAVE_REQWEST" = 1 ]; then
            rm -f "$TMP"/m.db*
            measure a-reqwest "$RUN_CAP" "$PEER" "$TMP/a.txt" "$C_A" "$TMP/m.db"
            read -r got ok < <(sed -n 's/^\([0-9]*\) outcomes, \([0-9]*\) 200s$/\1 \2/p' "$TMP/a-reqwest.out")
            record a.reqwest "${got:-nan}" "${ok:-nan}"
            rm -f "$TMP"/m.db*
        fi
        if [ "$HAVE_OHA" = 1 ]; then
            measure oha "$RUN_CAP" "$OHA" -n "$N_A" -c "$C_A" --no-tui "$NGINX/item/1"
            ok=$(sed -n 's/^ *\[200\] *\([0-9]*\) responses.*/\1/p' "$TMP/oha.out")
            record a.oha "$N_A" "${ok:-nan}"
        fi
        rm -f "$TMP"/a.db*
        measure fanout "$RUN_CAP" "$FANOUT" fetch "$TMP/a.txt" -c "$C_A" --db "$TMP/a.db" -q
        read -r n ok < <(fanout_counts "$TMP/a.db")
        other=$(fanout_other "$TMP/a.db")
        [ -n "$other" ] && warn "fanout (a) outcomes other than 200: $other"
        record a.fanout "$n" "$ok"
        rm -f "$TMP"/a.db*
        if [ -n "${FANOUT_BASE:-}" ]; then
            measure fanout-base "$RUN_CAP" "$FANOUT_BASE" fetch "$TMP/a.txt" -c "$C_A" --db "$TMP/a.db" -q
            read -r n ok < <(fanout_counts "$TMP/a.db")
            record a.fanout-base "$n" "$ok"
            rm -f "$TMP"/a.db*
        fi
    done
fi

# ----------------------------------------------------------------------------------- workload (b)
if wants b; then
    for nc in $B_SHAPES; do
        n=${nc%%:*}; c=${nc##*:}
        log "workload (b): $n URLs at 100 ms latency, C=$c (ideal 1.0 s), $RUNS runs"
        urls "$n" "$SERVE/item/" >"$TMP/b$n.txt"
        for _ in $(seq 1 "$RUNS"); do
            rm -f "$TMP"/b.db*
            measure "b$n" 120 "$FANOUT" fetch "$TMP/b$n.txt" -c "$c" --db "$TMP/b.db"
            read -r got ok < <(fanout_counts "$TMP/b.db")
            other=$(fanout_other "$TMP/b.db")
            [ -n "$other" ] && warn "fanout (b) outcomes other than 200: $other"
            record "b.$n.$c" "$got" "$ok" "$(fanout_elapsed "$TMP/b$n.err")"
            # The same load from a load generator that records nothing: what the machine allows.
            if [ "$HAVE_OHA" = 1 ]; then
                measure "ohab$n" 120 "$OHA" -n "$n" -c "$c" --no-tui "$SERVE/item/1"
                ok=$(sed -n 's/^ *\[200\] *\([0-9]*\) responses.*/\1/p' "$TMP/ohab$n.out")
                record "b.$n.$c.oha" "$n" "${ok:-nan}"
            fi
        done
        rm -f "$TMP"/b.db*
    done
fi

# ----------------------------------------------------------------------------------- workload (c)
if wants c; then
    BIG="1000000"
    if [ "$BENCH_BIG" = 0 ]; then log "BENCH_BIG=0: skipping the 10M-line run"; else BIG="$BIG 10000000"; fi
    for n in $BIG; do
        log "workload (c): $n lines against nginx, --body discard, $BIG_RUNS runs"
        urls "$n" "$NGINX/item/" >"$TMP/c.txt"
        cap=$RUN_CAP
        [ "$n" -gt 1000000 ] && cap=$((RUN_CAP * 4))
        for _ in $(seq 1 "$BIG_RUNS"); do
            rm -f "$TMP"/c.db*
            measure "c$n" "$cap" "$FANOUT" fetch "$TMP/c.txt" --body discard --db "$TMP/c.db" -q
            read -r got ok < <(fanout_counts "$TMP/c.db")
            other=$(fanout_other "$TMP/c.db")
            [ -n "$other" ] && warn "fanout (c) outcomes other than 200: $other"
            record "c.$n" "$got" "$ok"
            rm -f "$TMP"/c.db*
        done
        rm -f "$TMP/c.txt"
    done
fi

# ----------------------------------------------------------------------------------- workload (d)
if wants d; then
    log "workload (d): fanout bench (10 × 1 s), $RUNS runs"
    for _ in $(seq 1 "$RUNS"); do
        measure bench 120 "$FANOUT" bench
        sp=$(sed -n 's/^speed-up \([0-9.]*\)x.*/\1/p' "$TMP/bench.out")
        ok=$(awk '$1 == "sequential" || $1 == "concurrent" { s += $NF } END { print s + 0 }' "$TMP/bench.out")
        record d.bench 20 "${ok:-nan}" "${sp:-nan}"
    done
fi

# ----------------------------------------------------------------------------- workloads (e)-(g)
# one_host SHAPE BASE PROTO N C: one round of every tool against one nginx server. fanout, wget2 and
# curl get N distinct URLs under BASE; oha gets BASE + 1 N times (it takes one URL); all verify the
# certificate against the CA. PROTO is h2 (HTTP/2, by ALPN where the tool negotiates, forced where it
# does not: oha, as -c C connections of one stream each) or h1. For (g) the record's extra column is
# the run's resumed TLS handshakes, from nginx's log.
one_host() {
    local shape=$1 base=$2 proto=$3 n=$4 c=$5 got ok tls=0 r0=0
    local list=$TMP/$shape.txt f_args=() o_args=() w_args=() c_args=()
    [ -s "$list" ] || urls "$n" "$base" >"$list"
    case $base in https:*) tls=1 ;; esac
    if [ "$tls" = 1 ]; then
        f_args+=(--cacert "$CA"); o_args+=(--cacert "$CA"); w_args+=(--ca-certificate="$CA"); c_args+=(--cacert "$CA")
    fi
    if [ "$proto" = h1 ]; then
        [ "$tls" = 1 ] && f_args+=(--http1)
        w_args+=(--no-http2); c_args+=(--http1.1)
    else
        o_args+=(--http2)
    fi
    reused() { if [ "$shape" = g ]; then echo $(( $(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null) - r0 )); else echo nan; fi; }
    r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null)
    rm -f "$TMP"/o.db*
    measure "$shape-fanout" "$RUN_CAP" "$FANOUT" fetch "$list" -c "$c" "${f_args[@]}" --db "$TMP/o.db" -q
    read -r got ok < <(fanout_counts "$TMP/o.db")
    other=$(fanout_other "$TMP/o.db")
    [ -n "$other" ] && warn "fanout ($shape) outcomes other than 200: $other"
    record "$shape.fanout" "$got" "$ok" "$(reused)"
    # One runtime worker (--threads 1): on 2 cores shared with nginx it is faster for some shapes.
    r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null); rm -f "$TMP"/o.db*
    measure "$shape-t1" "$RUN_CAP" "$FANOUT" fetch "$list" -c "$c" --threads 1 "${f_args[@]}" --db "$TMP/o.db" -q
    read -r got ok < <(fanout_counts "$TMP/o.db")
    record "$shape.fanout-t1" "$got" "$ok" "$(reused)"
    if [ -n "${FANOUT_BASE:-}" ]; then
        r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null); rm -f "$TMP"/o.db*
        measure "$shape-base" "$RUN_CAP" "$FANOUT_BASE" fetch "$list" -c "$c" "${f_args[@]}" --db "$TMP/o.db" -q
        read -r got ok < <(fanout_counts "$TMP/o.db")
        record "$shape.fanout-base" "$got" "$ok" "$(reused)"
    fi
    rm -f "$TMP"/o.db*
    if [ "$HAVE_OHA" = 1 ]; then
        r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null)
        measure "$shape-oha" "$RUN_CAP" "$OHA" -n "$n" -c "$c" --no-tui "${o_args[@]}" "${base}1"
        ok=$(sed -n 's/^ *\[200\] *\([0-9]*\) responses.*/\1/p' "$TMP/$shape-oha.out")
        record "$shape.oha" "$n" "${ok:-nan}" "$(reused)"
        # fanout (hyper's pool) multiplexes an origin's h2 requests on one connection: oha that way too.
        if [ "$proto" = h2 ]; then
            measure "$shape-oha-mux" "$RUN_CAP" "$OHA" -n "$n" -c 1 -p "$c" --no-tui "${o_args[@]}" "${base}1"
            ok=$(sed -n 's/^ *\[200\] *\([0-9]*\) responses.*/\1/p' "$TMP/$shape-oha-mux.out")
            record "$shape.oha-mux" "$n" "${ok:-nan}"
        fi
    fi
    if [ "$HAVE_WGET2" = 1 ]; then
        r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null); rm -f "$TMP/wget2.csv"
        measure "$shape-wget2" "$RUN_CAP" wget2 -q --no-robots --max-threads="$c" "${w_args[@]}" -i "$list" \
            -O /dev/null --stats-site="csv:$TMP/wget2.csv"
        got=$(awk 'NR > 1' "$TMP/wget2.csv" 2>/dev/null | wc -l)
        ok=$(awk -F, 'NR > 1 && $4 == 200' "$TMP/wget2.csv" 2>/dev/null | wc -l)
        record "$shape.wget2" "$got" "$ok" "$(reused)"
    fi
    if [ "$HAVE_CURL" = 1 ]; then
        [ -s "$TMP/$shape-curl.cfg" ] ||
            awk '{ print "url = \"" $0 "\"\noutput = \"/dev/null\"" }' "$list" >"$TMP/$shape-curl.cfg"
        r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null)
        measure "$shape-curl" "$RUN_CAP" curl -s --no-progress-meter --parallel --parallel-max "$c" \
            "${c_args[@]}" -m 30 -w '%{http_code}\n' -K "$TMP/$shape-curl.cfg"
        record "$shape.curl" "$(wc -l <"$TMP/$shape-curl.out")" "$(grep -c '^200$' "$TMP/$shape-curl.out")" "$(reused)"
    fi
    local h_args=()
    [ "$tls" = 1 ] && h_args+=(--cacert "$CA")
    [ "$proto" = h2 ] && h_args+=(--http2)
    r0=$(grep -c '^r$' "$NG/g-reused.log" 2>/dev/null)
    httpx_run "$shape" "$list" "$c" "${h_args[@]}"
    # (g): the run's resumed handshakes in the record's extra column, as for the others.
    if [ "$shape" = g ] && [ -s "$RES/$shape.httpx" ]; then
        sed -i "\$s/nan\$/$(reused)/" "$RES/$shape.httpx"
    fi
}

if wants e || wants f || wants g; then
    wait_port "$TLS_PORT" || die "nginx's TLS server did not start (see $NG/error.log)"
    for _ in $(seq 1 "$RUNS"); do
        if wants e; then
            log "workload (e): $N_E HTTPS URLs, one host, keep-alive, C=$C_EFG: h2 by ALPN, then h1"
            one_host e2 "https://127.0.0.1:$TLS_PORT/item/" h2 "$N_E" "$C_EFG"
            one_host e1 "https://127.0.0.1:$TLS_PORT/item/" h1 "$N_E" "$C_EFG"
        fi
        if wants f; then
            log "workload (f): $N_F http URLs, nginx keepalive_timeout 0 (a connection per request), C=$C_EFG"
            one_host f "http://127.0.0.1:$CLOSE_PORT/item/" h1 "$N_F" "$C_EFG"
        fi
        if wants g; then
            log "workload (g): $N_G HTTPS URLs, keep-alive off (a TLS handshake per request), C=$C_EFG"
            one_host g "https://127.0.0.1:$TLS_CLOSE_PORT/item/" h1 "$N_G" "$C_EFG"
        fi
    done
fi

# ------------------------------------------------------------------------- workloads (h) and (i)
# free_ports_from N START: N ports from START up that nothing listens on or connects from.
free_ports_from() {
    local used p=$2 n=0
    used=$(ss -tanH 2>/dev/null | awk '{ print $4; print $5 }' | grep -oE '[0-9]+$' | sort -u)
    while [ "$n" -lt "$1" ] && [ "$p" -lt 32768 ]; do
        if ! grep -qx "$p" <<<"$used"; then echo "$p"; n=$((n + 1)); fi
        p=$((p + 1))
    done
}
# nginx_on DIR PORTS_FILE [PREFIX...]: an nginx (worker_processes as elsewhere) listening on every
# port of the file on 127.0.0.1, started with PREFIX (e.g. `ip netns exec NS`); waits for it.
nginx_on() {
    local dir=$1 ports=$2 last
    shift 2
    mkdir -p "$dir"
    {
        echo "worker_processes $NGINX_WORKERS; daemon off; pid $dir/nginx.pid; error_log $dir/error.log warn;"
        echo "worker_rlimit_nofile 65536; events { worker_connections 30000; }"
        echo "http { access_log off; keepalive_requests 100000; keepalive_timeout 65s;"
        echo "  client_body_temp_path $dir/cb; proxy_temp_path $dir/px; fastcgi_temp_path $dir/fc;"
        echo "  uwsgi_temp_path $dir/uw; scgi_temp_path $dir/sc;"
        echo "  server {"
        sed 's/.*/    listen 127.0.0.1:&;/' "$ports"
        echo "    location / { default_type application/json; return 200 '{\"id\":1,\"name\":\"item\"}'; } } }"
    } >"$dir/nginx.conf"
    "$@" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/error.log" &
    PIDS+=($!)
    last=$(tail -n 1 "$ports")
    local i
    for i in $(seq 1 100); do
        "$@" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$last) 2>/dev/null" && return 0
        sleep 0.1
    done
    return 1
}
# many_hosts SHAPE LIST C QUERIES_LOG [PREFIX...]: one round of every tool over LIST at concurrency C.
# With a dnsmasq log, the DNS queries each run made go into the record's extra column.
many_hosts() {
    local shape=$1 list=$2 c=$3 qlog=$4 n q0 ok
    shift 4
    n=$(wc -l <"$list")
    queries() { if [ -f "$qlog" ]; then grep -c 'query\[' "$qlog"; else echo 0; fi; }
    extra() { if [ -f "$qlog" ]; then echo $(( $(queries) - q0 )); else echo nan; fi; }
    q0=$(queries)
    rm -f "$TMP"/m.db*
    measure "$shape-fanout" "$RUN_CAP" "$@" "$FANOUT" fetch "$list" -c "$c" --db "$TMP/m.db" -q
    read -r got ok < <(fanout_counts "$TMP/m.db")
    other=$(fanout_other "$TMP/m.db")
    [ -n "$other" ] && warn "fanout ($shape) outcomes other than 200: $other"
    record "$shape.fanout" "$got" "$ok" "$(extra)"
    if [ -n "${FANOUT_BASE:-}" ]; then
        q0=$(queries); rm -f "$TMP"/m.db*
        measure "$shape-base" "$RUN_CAP" "$@" "$FANOUT_BASE" fetch "$list" -c "$c" --db "$TMP/m.db" -q
        read -r got ok < <(fanout_counts "$TMP/m.db")
        record "$shape.fanout-base" "$got" "$ok" "$(extra)"
    fi
    if [ "$HAVE_REQWEST" = 1 ]; then
        q0=$(queries); rm -f "$TMP"/m.db*
        measure "$shape-reqwest" "$RUN_CAP" "$@" "$PEER" "$list" "$c" "$TMP/m.db"
        read -r got ok < <(sed -n 's/^\([0-9]*\) outcomes, \([0-9]*\) 200s$/\1 \2/p' "$TMP/$shape-reqwest.out")
        record "$shape.reqwest" "${got:-nan}" "${ok:-nan}" "$(extra)"
    fi
    if [ "$HAVE_WGET2" = 1 ]; then
        q0=$(queries); rm -f "$TMP/wget2.csv"
        measure "$shape-wget2" "$RUN_CAP" "$@" wget2 -q --no-robots --max-threads="$c" -i "$list" \
            -O /dev/null --stats-site="csv:$TMP/wget2.csv"
        got=$(awk 'NR > 1' "$TMP/wget2.csv" 2>/dev/null | wc -l)
        ok=$(awk -F, 'NR > 1 && $4 == 200' "$TMP/wget2.csv" 2>/dev/null | wc -l)
        record "$shape.wget2" "$got" "$ok" "$(extra)"
    fi
    if [ "$HAVE_CURL" = 1 ]; then
        awk '{ print "url = \"" $0 "\"\noutput = \"/dev/null\"" }' "$list" >"$TMP/m-curl.cfg"
        q0=$(queries)
        measure "$shape-curl" "$RUN_CAP" "$@" curl -s --no-progress-meter --parallel --parallel-max "$c" \
            -m 30 -w '%{http_code}\n' -K "$TMP/m-curl.cfg"
        record "$shape.curl" "$(wc -l <"$TMP/$shape-curl.out")" "$(grep -c '^200$' "$TMP/$shape-curl.out")" "$(extra)"
    fi
    if [ "$HAVE_HTTPX" = 1 ]; then
        q0=$(queries)
        HTTPX_PREFIX="$*" httpx_run "$shape" "$list" "$c"
        # With a DNS log: the run's queries in the record's extra column, as for the others.
        if [ -f "$qlog" ] && [ -s "$RES/$shape.httpx" ]; then
            sed -i "\$s/nan\$/$(extra)/" "$RES/$shape.httpx"
        fi
    fi
    rm -f "$TMP"/m.db*
}

if wants h; then
    H_SHAPES="h"
    [ "$H_BIG" = 1 ] && H_SHAPES="h h2"
    for shape in $H_SHAPES; do
        if [ "$shape" = h ]; then origins=$H_ORIGINS; per=$H_PER; else origins=10000; per=10; fi
        free_ports_from "$origins" 11000 >"$TMP/$shape.ports"
        if [ "$(wc -l <"$TMP/$shape.ports")" -lt "$origins" ]; then
            warn "workload ($shape): fewer than $origins free ports below 32768: skipped"; continue
        fi
        nginx_on "$TMP/nginx-$shape" "$TMP/$shape.ports" ||
            { warn "workload ($shape): nginx on $origins ports did not start (see $TMP/nginx-$shape/error.log)"; continue; }
        for j in $(seq 1 "$per"); do sed "s|.*|http://127.0.0.1:&/item/$j|" "$TMP/$shape.ports"; done |
            shuf --random-source=<(yes) >"$TMP/$shape.txt"
        log "workload ($shape): $((origins * per)) URLs over $origins origins, shuffled, C=$C_H, $RUNS rounds"
        for _ in $(seq 1 "$RUNS"); do many_hosts "$shape" "$TMP/$shape.txt" "$C_H" /nonexistent; done
        kill "$(cat "$TMP/nginx-$shape/nginx.pid" 2>/dev/null)" 2>/dev/null
        sleep 1
    done
fi

if wants i; then
    NS=fanout-bench-$$
    if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
        warn "workload (i) needs root and ip (iproute2) for a network namespace: skipped"
    elif ! need dnsmasq dnsmasq-base; then
        warn "workload (i): dnsmasq could not be installed: skipped"
    elif ! ip netns add "$NS" 2>"$TMP/netns.log"; then
        warn "workload (i): ip netns add failed: $(cat "$TMP/netns.log"): skipped"
    else
        # The namespace has only its own loopback; its resolv.conf names dnsmasq there, which
        # answers every name under bench.test with 127.0.0.1 and a TTL of an hour, and logs each query.
        ip netns exec "$NS" ip link set lo up
        mkdir -p "/etc/netns/$NS"
        echo "nameserver 127.0.0.1" >"/etc/netns/$NS/resolv.conf"
        ip netns exec "$NS" dnsmasq --no-resolv --no-hosts --port=53 --listen-address=127.0.0.1 \
            --bind-interfaces --log-queries --log-facility="$TMP/dnsmasq.log" \
            --address=/bench.test/127.0.0.1 --local-ttl=3600 --cache-size=10000 \
            --pid-file="$TMP/dnsmasq.pid" --user=root 2>"$TMP/dnsmasq.err"
        echo 8080 >"$TMP/i.ports"
        if ! nginx_on "$TMP/nginx-i" "$TMP/i.ports" ip netns exec "$NS"; then
            warn "workload (i): nginx in the namespace did not start"
        else
            for j in $(seq 1 "$I_PER"); do
                seq 0 $((I_NAMES - 1)) | sed "s|.*|http://h&.bench.test:8080/item/$j|"
            done | shuf --random-source=<(yes) >"$TMP/i.txt"
            log "workload (i): $((I_NAMES * I_PER)) URLs over $I_NAMES host names through dnsmasq, C=$C_I, $RUNS rounds"
            for _ in $(seq 1 "$RUNS"); do
                many_hosts i "$TMP/i.txt" "$C_I" "$TMP/dnsmasq.log" ip netns exec "$NS"
            done
        fi
        kill "$(cat "$TMP/nginx-i/nginx.pid" 2>/dev/null)" 2>/dev/null
        kill "$(cat "$TMP/dnsmasq.pid" 2>/dev/null)" 2>/dev/null
        sleep 0.5
        ip netns delete "$NS" 2>/dev/null
        rm -rf "/etc/netns/$NS"
    fi
fi

# ------------------------------------------------------------------------------------------- table
LOAD_AFTER=$(cut -d ' ' -f 1-3 /proc/loadavg)
fmt() { awk -v x="$1" -v f="$2" 'BEGIN { if (x == "nan" || x == "") print "–"; else printf f, x }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0 || a == "" || b == "") print "nan"; else printf "%.6f", a / b }'; }
# failures ID: a note when some runs exited non-zero or did not get all 200s.
failures() {
    awk '{ if ($6 != 0 || $4 != $5) bad++ } END { if (bad) printf " (%d of %d runs: non-zero exit or non-200 outcomes)", bad, NR }' "$RES/$1"
}
# row ID WORKLOAD TOOL NOTE [norate]: one table row from the medians of ID's runs; with norate, req/s
# and CPU per request are left out (fanout bench is 20 requests that mostly wait).
row() {
    local id=$1 wall cpu rss n ok rps
    [ -s "$RES/$id" ] || return 0
    wall=$(med "$id" 1); cpu=$(med "$id" 2); rss=$(med "$id" 3); n=$(med "$id" 4); ok=$(med "$id" 5)
    rps=$(div "$n" "$wall")
    [ "${5:-}" = norate ] && { rps=nan; cpu=nan; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s%s |\n' "$2" "$3" "$(fmt "$n" '%d')" \
        "$(fmt "$ok" '%d')" "$(fmt "$wall" '%.2f')" "$(fmt "$rps" '%.0f')" \
        "$(fmt "$(div "$cpu" "$(div "$n" 1000000)")" '%.1f')" "$(fmt "$(div "$rss" 1024)" '%.1f')" "$4" "$(failures "$id")"
}
rps_of() { div "$(med "$1" 4)" "$(med "$1" 1)"; }
# header: one table per shape, each with its own header (a blank line before all but the first).
HEADERS=0
header() {
    [ "$HEADERS" = 0 ] || echo
    HEADERS=$((HEADERS + 1))
    echo "| workload | tool | requests | 200s | wall s | req/s | CPU µs / req | peak RSS MB | fanout ratio / target |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
}

{
    if wants a && [ -s "$RES/a.fanout" ]; then
        header
        F=$(rps_of a.fanout)
        for t in wrk curl aiohttp httpx wget2 reqwest oha; do
            [ -s "$RES/a.$t" ] || continue
            case $t in
                wget2) label="wget2 --max-threads $C_A -i" ;;
                reqwest) label="reqwest + buffer_unordered + SQLite (bench/reqwest-peer)" ;;
                wrk) label="wrk -t$WRK_THREADS -c$C_A -d${WRK_SECS}s (one URL)" ;;
                curl) label="curl --parallel --parallel-max $C_A ($N_CURL URLs)" ;;
                aiohttp) label="Python aiohttp, Semaphore($C_A) + gather" ;;
                httpx) label="Python httpx, Semaphore($C_A) + gather, SQLite thread (first $N_HTTPX URLs)" ;;
                oha) label="oha -n $N_A -c $C_A (one URL)" ;;
            esac
            note="fanout $(fmt "$(div "$F" "$(rps_of "a.$t")")" '%.2f')× this"
            [ "$t" = wrk ] && note="$note (target ≥ 0.80×)"
            [ "$t" = wget2 ] && note="$note (target ≥ 1.3×)"
            [ "$t" = oha ] && note="$note (target ≥ 1.0×, CPU within 2 µs)"
            row "a.$t" "(a) $N_A URLs, C=$C_A, nginx" "$label" "$note"
        done
        row a.fanout "(a) $N_A URLs, C=$C_A, nginx" "fanout fetch -c $C_A --db (SQLite)" "—"
        if [ -s "$RES/a.fanout-base" ]; then
            row a.fanout-base "(a) $N_A URLs, C=$C_A, nginx" "FANOUT_BASE fetch -c $C_A --db (SQLite)" \
                "fanout $(fmt "$(div "$F" "$(rps_of a.fanout-base)")" '%.3f')× this (interleaved)"
        fi
    fi
    if wants b; then
        for nc in $B_SHAPES; do
            n=${nc%%:*}; c=${nc##*:}
            [ -s "$RES/b.$n.$c" ] || continue
            header
            w=$(med "b.$n.$c" 1); e=$(med "b.$n.$c" 7)
            row "b.$n.$c" "(b) $n URLs, 100 ms, C=$c" "fanout fetch -c $c" \
                "wall $(fmt "$w" '%.3f') s = $(fmt "$w" '%.3f')× ideal 1.0 s; run-reported $(fmt "$e" '%.3f') s (target ≤ 1.03×)"
            if [ -s "$RES/b.$n.$c.oha" ]; then
                o=$(med "b.$n.$c.oha" 1)
                row "b.$n.$c.oha" "(b) $n URLs, 100 ms, C=$c" "oha -n $n -c $c (one URL)" \
                    "wall $(fmt "$o" '%.3f') s = $(fmt "$o" '%.3f')× ideal; fanout's wall $(fmt "$(div "$w" "$o")" '%.2f')× oha's"
            fi
        done
    fi
    if wants c; then
        for n in 1000000 10000000; do
            [ -s "$RES/c.$n" ] || continue
            header
            rss=$(med "c.$n" 3)
            verdict=$(awk -v r="$rss" 'BEGIN { if (r == "nan") print "?"; else print (r / 1024 <= 50 ? "met" : "missed") }')
            row "c.$n" "(c) $n lines, nginx" "fanout fetch --body discard" "peak RSS target ≤ 50 MB: $verdict"
        done
    fi
    for shape in e2 e1 f g; do
        [ -s "$RES/$shape.fanout" ] || continue
        header
        case $shape in
            e2) what="(e) $N_E HTTPS URLs, keep-alive, h2, C=$C_EFG" ;;
            e1) what="(e) $N_E HTTPS URLs, keep-alive, h1, C=$C_EFG" ;;
            f) what="(f) $N_F http URLs, a connection per request, C=$C_EFG" ;;
            g) what="(g) $N_G HTTPS URLs, a TLS handshake per request, C=$C_EFG" ;;
        esac
        F=$(rps_of "$shape.fanout")
        for t in fanout fanout-t1 fanout-base oha oha-mux wget2 curl httpx; do
            [ -s "$RES/$shape.$t" ] || continue
            case $t in
                fanout) label="fanout fetch -c N --db (SQLite)"; note="—" ;;
                fanout-t1) label="fanout fetch --threads 1 -c N --db (SQLite)" ;;
                fanout-base) label="FANOUT_BASE fetch -c N --db (SQLite)" ;;
                oha) label="oha -n N -c N (one URL)" ;;
                oha-mux) label="oha --http2 -n N -c 1 -p N (one connection, as fanout)" ;;
                wget2) label="wget2 --max-threads N -i" ;;
                curl) label="curl --parallel --parallel-max N" ;;
                httpx) label="Python httpx + SQLite thread (first $N_HTTPX URLs)" ;;
            esac
            case $shape in e1) p=h1 ;; e2) p=h2 ;; *) p=h1 ;; esac
            [ "$t" = oha ] && [ "$p" = h2 ] && label="oha --http2 -n N -c N (one URL)"
            [ "$t" = fanout ] && [ "$shape" != f ] && [ "$p" = h1 ] && label="fanout fetch --http1 -c N --db (SQLite)"
            [ "$t" = fanout-t1 ] && [ "$shape" != f ] && [ "$p" = h1 ] && label="fanout fetch --threads 1 --http1 -c N --db (SQLite)"
            [ "$t" = fanout ] || note="fanout $(fmt "$(div "$F" "$(rps_of "$shape.$t")")" '%.2f')× this"
            case $t in oha | oha-mux) note="$note (target ≥ 1.0×)" ;; esac
            [ "$shape" = g ] && note="$note; $(fmt "$(med "$shape.$t" 7)" '%d') resumed handshakes"
            row "$shape.$t" "$what" "$label" "$note"
        done
    done
    for shape in h h2 i; do
        [ -s "$RES/$shape.fanout" ] || continue
        header
        case $shape in
            h) what="($shape) $((H_ORIGINS * H_PER)) URLs over $H_ORIGINS origins, C=$C_H" ;;
            h2) what="(h) 100000 URLs over 10000 origins, C=$C_H" ;;
            i) what="(i) $((I_NAMES * I_PER)) URLs over $I_NAMES names via DNS, C=$C_I" ;;
        esac
        F=$(rps_of "$shape.fanout")
        for t in fanout fanout-base reqwest wget2 curl httpx; do
            [ -s "$RES/$shape.$t" ] || continue
            case $t in
                fanout) label="fanout fetch -c N --db (SQLite)"; note="—" ;;
                fanout-base) label="FANOUT_BASE fetch -c N --db (SQLite)" ;;
                reqwest) label="reqwest + buffer_unordered + SQLite (bench/reqwest-peer)" ;;
                wget2) label="wget2 --max-threads N -i" ;;
                curl) label="curl --parallel --parallel-max N" ;;
                httpx) label="Python httpx + SQLite thread (first $N_HTTPX URLs)" ;;
            esac
            [ "$t" = fanout ] || note="fanout $(fmt "$(div "$F" "$(rps_of "$shape.$t")")" '%.2f')× this"
            [ "$shape" = i ] && note="$note; $(fmt "$(med "$shape.$t" 7)" '%d') DNS queries"
            row "$shape.$t" "$what" "$label" "$note"
        done
    done
    if wants d && [ -s "$RES/d.bench" ]; then
        header
        sp=$(med d.bench 7)
        row d.bench "(d) fanout bench (10 × 1 s)" "fanout bench (sequential + concurrent)" \
            "speed-up $(fmt "$sp" '%.2f')× of ideal 10× (target ≥ 9.9×)" norate
    fi
} >"$TMP/table.md"

{
    echo "# fanout benchmark results"
    echo
    big_note=""
    wants c && big_note=" (workload (c): $BIG_RUNS)"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); medians of $RUNS runs$big_note; nginx worker_processes $NGINX_WORKERS;"
    echo "$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r);"
    echo "fanout $("$FANOUT" --version 2>/dev/null | awk '{ print $2 }') at $FANOUT;"
    echo "load average (1, 5, 15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER."
    echo
    cat "$TMP/table.md"
    echo
    echo "req/s = requests completed / process wall time (wrk: for its fixed ${WRK_SECS}s). CPU = user + sys"
    echo "of the client process; peak RSS = its max RSS (GNU time). Each column is the median over the runs."
} >"$TMP/results.md"
mkdir -p "$(dirname "$OUT_MD")"
cp "$TMP/results.md" "$OUT_MD"
echo
cat "$OUT_MD"
log "written to $OUT_MD"
