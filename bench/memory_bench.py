"""Benchmark P8: Redis memory per queued session (goal <= 1 KB), measured as the growth of
INFO's used_memory while N people join the queue through the real open script, on a Redis
holding nothing else of ours. A fixed baseline does not apply: the figure is absolute. Printed
twice: with each open's journal entry still waiting (no writer runs here: an upper bound the
writer keeps to milliseconds' worth), and once the entries are trimmed as the writer does.

    make bench-memory      (or: python -m sessions_app.devredis -- python bench/memory_bench.py)
"""

from __future__ import annotations

import argparse

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

setup_django()

from sessions_app.gate.admission import get_manager  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args()
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 20})
    # Warm up: the active sessions, the scripts, the keys every session shares.
    for i in range(25):
        manager.open(f"warm{i}", via="page")
    manager.touch(manager.open("warm-last", via="page").session_id, kind="presence")
    before = int(manager.client.info("memory")["used_memory"])
    for i in range(args.queued):
        sid = manager.open(f"user-{i:06d}", via="page").session_id
        manager.touch(sid, kind="presence")  # as an open page does: the `seen` entry too
    after = int(manager.client.info("memory")["used_memory"])
    per = (after - before) / args.queued
    print(
        f"{args.queued} queued sessions, their journal entries not yet written to the record: "
        f"{per:,.0f} bytes each"
    )
    # What the journal's writer does once the record has them (gate/journal.py): trim them.
    manager.client.xtrim(manager.keys.journal, maxlen=0)
    trimmed = int(manager.client.info("memory")["used_memory"])
    per = (trimmed - before) / args.queued
    print(f"{args.queued} queued sessions, journal written: {per:,.0f} bytes each (goal <= 1,024)")
    for key in manager.client.scan_iter(manager.keys.all_pattern()):
        manager.client.delete(key)


if __name__ == "__main__":
    main()
