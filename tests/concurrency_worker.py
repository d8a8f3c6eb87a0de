"""Worker processes for tests/test_concurrency.py: each is a separate OS process that talks to
the same Redis, as separate server processes would.

    python -m tests.concurrency_worker open FIRST COUNT
    python -m tests.concurrency_worker open_same USER THREADS
    python -m tests.concurrency_worker query BACKEND_URL QUERIES_PER_SESSION SID [SID ...]
    python -m tests.concurrency_worker hold SID [SID ...]

The key prefix comes from CHATGATE_REDIS_PREFIX. Results are printed as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("CHATGATE_TESTING", "1")

import django

django.setup()

import httpx  # noqa: E402

from sessions_app.chat import generation  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


def open_many(first: int, count: int) -> dict[str, object]:
    manager = get_manager()
    states: dict[str, int] = {"active": 0, "queued": 0}
    for i in range(first, first + count):
        states[manager.open(f"person{i}", via="api").state] += 1
    return states


def open_same(user: str, threads: int) -> dict[str, object]:
    manager = get_manager()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = list(pool.map(lambda _: manager.open(user, via="api").session_id, range(threads)))
    return {"ids": sorted(set(ids)), "calls": len(ids)}


async def query_all(backend: str, per_session: int, session_ids: list[str]) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(session_id: str, n: int) -> int:
            async with generation.generation_slot(session_id=session_id, timeout=120):
                response = await client.get(backend, headers={"X-Session": session_id})
                return response.status_code

        codes = await asyncio.gather(
            *(one(sid, n) for sid in session_ids for n in range(per_session))
        )
    return {"served": sum(1 for c in codes if c == 200)}


async def hold(session_ids: list[str]) -> None:
    async def one(session_id: str) -> None:
        async with generation.generation_slot(session_id=session_id, timeout=10):
            print(json.dumps({"held": session_id}), flush=True)
            await asyncio.sleep(3600)

    await asyncio.gather(*(one(sid) for sid in session_ids))


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    started = time.monotonic()
    if command == "open":
        result = open_many(int(args[0]), int(args[1]))
    elif command == "open_same":
        result = open_same(args[0], int(args[1]))
    elif command == "query":
        result = asyncio.run(query_all(args[0], int(args[1]), args[2:]))
    elif command == "hold":
        asyncio.run(hold(args))
        return
    else:
        raise SystemExit(f"unknown command {command}")
    result["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
