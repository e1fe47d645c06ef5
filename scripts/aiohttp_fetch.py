#!/usr/bin/env python3
"""The asyncio + aiohttp peer for scripts/bench.sh, written in the usual tutorial idiom:
one ClientSession, an asyncio.Semaphore around each request, asyncio.gather over every URL.

Usage: aiohttp_fetch.py URL_FILE [CONCURRENCY]   (prints the number of 200 responses)
"""
import asyncio
import sys

import aiohttp


async def fetch(session, sem, url):
    async with sem:
        try:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status
        except aiohttp.ClientError:
            return None


async def main(path, concurrency):
    with open(path) as f:
        urls = [line.strip() for line in f if line.strip()]
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*[fetch(session, sem, u) for u in urls])
    print(sum(1 for s in statuses if s == 200))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 64))
