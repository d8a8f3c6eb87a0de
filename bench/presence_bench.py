"""Benchmark: one presence heartbeat of a process with N open pages, one `touch` script call
per page (before issue 11) against the batched `touch_many` (one call per 1,000 pages), in the
same run on the same Redis.

    make bench-presence    (or: python -m sessions_app.devredis -- python bench/presence_bench.py)

Prints the wall time of one heartbeat and the Redis CPU it cost (INFO's used_cpu_sys+user), best
of --rounds; at 15 s per heartbeat, the share of a core is time / 15 s.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

setup_django()

from sessions_app.gate import services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402


def redis_cpu() -> float:
    info = get_manager().client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(body: Callable[[], None], rounds: int) -> tuple[float, float]:
    """Best-of-rounds (wall seconds, Redis CPU seconds) of one heartbeat."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        cpu, started = redis_cpu(), time.perf_counter()
        body()
        best = min(best, (time.perf_counter() - started, redis_cpu() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 20, "disconnect_grace_seconds": 3600})
    ids = [manager.open(f"b{i}", via="page").session_id for i in range(args.pages)]
    print(f"{args.pages} open pages; load {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")

    def one_each() -> None:
        for sid in ids:
            manager.touch(sid, kind="presence")

    def batched() -> None:
        services.sessions_touch_presence(ids)

    old_wall, old_cpu = measure(one_each, args.rounds)
    new_wall, new_cpu = measure(batched, args.rounds)
    for label, wall, cpu in (("one touch per page", old_wall, old_cpu),
                             ("touch_many batches", new_wall, new_cpu)):  # fmt: skip
        print(
            f"  {label:<20} {wall * 1000:8.1f} ms/heartbeat ({wall / 15:6.2%} of a core at 15 s)"
            f"   Redis CPU {cpu * 1000:7.1f} ms"
        )
    print(
        f"  batched / per page: wall {new_wall / old_wall:.2f}x,"
        f" Redis CPU {new_cpu / max(old_cpu, 1e-9):.2f}x"
    )
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)


if __name__ == "__main__":
    main()
