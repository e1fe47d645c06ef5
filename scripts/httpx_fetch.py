#!/usr/bin/env python3
"""The asyncio + httpx peer for scripts/bench.sh (issue 17), written as a user would write it:
one httpx.AsyncClient whose pool is sized to the concurrency (httpx.Limits), an asyncio.Semaphore
around each request, asyncio.gather over every URL, and every outcome (url, status or error, body
length) written to SQLite by a thread of its own through the standard sqlite3 module, in
transactions of 1,000 rows, fed by a bounded queue.Queue. A benchmark peer only.

Usage: httpx_fetch.py URL_FILE CONCURRENCY DB [--cacert CA_FILE] [--http2]
(prints "N outcomes, M 200s"; --http2 needs the h2 package, `pip install 'httpx[http2]'`)
"""
import argparse
import asyncio
import ssl
import queue
import sqlite3
import threading

import httpx

DONE = None


def writer(db, rows, counts):
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS outcomes (url TEXT, status INTEGER, error TEXT, bytes INTEGER)")
    n = ok = 0
    batch = []
    while True:
        row = rows.get()
        if row is not DONE:
            n += 1
            ok += row[1] == 200
            batch.append(row)
        if len(batch) == 1000 or (row is DONE and batch):
            with conn:  # one transaction per batch
                conn.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?)", batch)
            batch.clear()
        if row is DONE:
            break
    conn.close()
    counts.extend([n, ok])


async def fetch(client, sem, rows, url):
    async with sem:
        try:
            resp = await client.get(url)
            row = (url, resp.status_code, None, len(resp.content))
        except httpx.HTTPError as e:
            row = (url, None, f"{type(e).__name__}: {e}", 0)
    # A full queue blocks the loop briefly: the store is the bottleneck then.
    rows.put(row)


async def main(path, concurrency, db, cacert, http2):
    with open(path) as f:
        urls = [line.strip() for line in f if line.strip()]
    rows = queue.Queue(maxsize=4096)
    counts = []
    t = threading.Thread(target=writer, args=(db, rows, counts))
    t.start()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    verify = ssl.create_default_context(cafile=cacert) if cacert else True
    try:
        async with httpx.AsyncClient(limits=limits, timeout=30, verify=verify, http2=http2) as client:
            sem = asyncio.Semaphore(concurrency)
            await asyncio.gather(*[fetch(client, sem, rows, u) for u in urls])
    finally:
        rows.put(DONE)
        t.join()
    print(f"{counts[0]} outcomes, {counts[1]} 200s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fetch every URL of a file with httpx, outcomes to SQLite")
    ap.add_argument("urls")
    ap.add_argument("concurrency", type=int)
    ap.add_argument("db")
    ap.add_argument("--cacert")
    ap.add_argument("--http2", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.urls, a.concurrency, a.db, a.cacert, a.http2))
