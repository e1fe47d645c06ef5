#!/usr/bin/env bash
# Peak RSS of `fanout fetch --from-sql` over tables of growing size: each table is made with one
# INSERT ... SELECT over a recursive CTE (every row a request to a local `fanout serve`), fetched
# into a fresh SQLite store with --body discard; the same rows as an input file for comparison.
#
#   scripts/sql-rss.sh [ROWS...]        (default: 1000 1000000)
#
# Env: FANOUT_BIN (prebuilt binary; default: cargo build --release), RUNS (default 3; the median
# is printed), STORE=db (default: a fresh SQLite store, whose page cache, resume filter and batches
# fill up to their fixed sizes only past a few thousand outcomes) or STORE=jsonl (--jsonl
# /dev/null: the source and the engine alone). Needs sqlite3 (or python3) to make the tables. All
# traffic stays on 127.0.0.1.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
tmp_out=$tmp/out.db
sizes=${*:-1000 1000000}
runs=${RUNS:-3}
case ${STORE:-db} in
    db) store=(--db "$tmp_out") ;;
    jsonl) store=(--jsonl /dev/null) ;;
    *) echo "STORE is db or jsonl" >&2; rm -rf "$tmp"; exit 2 ;;
esac
if [ -z "${FANOUT_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -q)
    FANOUT_BIN=$ROOT/target/release/fanout
fi
port=$((20000 + RANDOM % 20000))
"$FANOUT_BIN" serve --port "$port" >"$tmp/serve.log" 2>&1 &
serve=$!
trap 'kill "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5

make_table() { # FILE ROWS
    local sql="CREATE TABLE targets (id INTEGER PRIMARY KEY, url TEXT);
      WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $2)
      INSERT INTO targets SELECT i, 'http://127.0.0.1:$port/item/' || i FROM seq;"
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$1" "$sql"
    else
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$1" "$sql"
    fi
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

printf '%10s  %16s  %16s\n' rows 'from-sql KB' 'file KB'
for n in $sizes; do
    make_table "$tmp/src.db" "$n"
    seq 1 "$n" | sed "s|^|http://127.0.0.1:$port/item/|" >"$tmp/urls.txt"
    for kind in sql file; do
        for _ in $(seq 1 "$runs"); do
            rm -f "$tmp"/out.db*
            if [ "$kind" = sql ]; then
                src=(--from-sql 'SELECT id, url FROM targets' --source-db "$tmp/src.db")
            else
                src=("$tmp/urls.txt")
            fi
            /usr/bin/time -f '%M' -o "$tmp/time" "$FANOUT_BIN" fetch "${src[@]}" \
                --body discard "${store[@]}" -q
            if [ -f "$tmp_out" ] && command -v sqlite3 >/dev/null; then
                got=$(sqlite3 "$tmp_out" 'SELECT count(*) FROM outcomes WHERE status = 200')
                [ "$got" = "$n" ] || echo "warning: $kind $n: $got of $n outcomes are 200" >&2
            fi
            tail -n 1 "$tmp/time" >>"$tmp/$kind.$n"
        done
    done
    printf '%10s  %16s  %16s\n' "$n" "$(median <"$tmp/sql.$n")" "$(median <"$tmp/file.$n")"
    rm -f "$tmp/src.db" "$tmp/urls.txt"
done
