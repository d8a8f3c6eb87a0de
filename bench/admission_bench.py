"""Benchmark: session open+close per second through services, against the same Lua scripts
called bare through redis-py, measured in one run so machine noise hits both alike.

    make bench        (starts a throwaway Redis; or: REDIS_URL=... python bench/admission_bench.py)

It prints rates for: raw Redis round trips (PING), bare scripts (EVALSHA open + close),
the AdmissionManager, and services (Redis transition journalled in the same script; the SQL
record and the notices written from the journal by a writer in another process, as the
sweeper does in production: JOURNAL_FLUSH=background). Goal: services >= 0.5x bare scripts.
It also prints how long the record took to catch up after the last round, and the rate
counting that wait (`services, record written`), so that work moved off the request path is
not hidden.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import journal_writer  # bench/ is on sys.path when a benchmark runs
from _setup import setup_django

# As a server runs; the test settings (CHATGATE_TESTING) would write the record inline.
os.environ.setdefault("JOURNAL_FLUSH", "background")
BENCH_DB = Path(os.environ.get("BENCH_DB", "/tmp/chatgate-bench.sqlite3"))
setup_django(database=BENCH_DB)

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from sessions_app.gate import journal, services  # noqa: E402
from sessions_app.gate.admission import get_manager  # noqa: E402
from sessions_app.models import ChatSession  # noqa: E402

N = int(os.environ.get("BENCH_N", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def rate(label: str, body: Callable[[int], None], n: int = N) -> float:
    """Best-of-ROUNDS operations per second (the least disturbed round)."""
    rates = []
    for round_no in range(ROUNDS):
        started = time.perf_counter()
        for i in range(n):
            body(round_no * n + i)
        rates.append(n / (time.perf_counter() - started))
    best = max(rates)
    print(f"  {label:<44} {best:>9,.0f} /s   (median {statistics.median(rates):,.0f})")
    return best


def main() -> None:
    for leftover in BENCH_DB.parent.glob(BENCH_DB.name + "*"):
        leftover.unlink()
    call_command("migrate", verbosity=0)
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 10**4 - 1})
    client = manager.client
    people = [User(username=f"bench{i}") for i in range(N * ROUNDS)]
    User.objects.bulk_create(people)
    people = list(User.objects.order_by("pk"))

    open_script, close_script = manager._scripts["open"], manager._scripts["close"]
    keys, tagged = manager._script_keys, manager.keys.tagged

    def bare(i: int) -> None:
        sid = str(uuid.uuid4())
        open_script(keys=keys, args=[tagged, "", f"bare{i}", "normal", sid, "api", ""])
        # All of close.lua's arguments: without ARGV[5] ("" = any state) the script refused
        # every close (nil is not ""), so the baseline measured a cheaper close than ours.
        close_script(keys=keys, args=[tagged, "", sid, "user", "", ""])

    def through_manager(i: int) -> None:
        opened = manager.open(f"mgr{i}", via="api")
        manager.close(opened.session_id, reason="user")

    def through_services(i: int) -> None:
        opened = services.session_open(user=people[i], via="api")
        services.session_close(session_id=opened.session_id, reason="user")

    print(f"chatgate admission benchmark: {N} open+close pairs per round, best of {ROUNDS}")
    ping = rate(
        "raw Redis round trip (PING), per pair of 2", lambda i: (client.ping(), client.ping())
    )
    bare_rate = rate("bare scripts via redis-py (EVALSHA x2)", bare)
    manager_rate = rate("AdmissionManager.open + close", through_manager)
    # The bare and manager rounds journalled made-up people: not ours to time below.
    client.delete(manager.keys.journal)
    child = journal_writer.start()
    rounds_started = time.perf_counter()
    services_rate = rate("services.session_open + session_close", through_services)
    started = time.perf_counter()
    while journal.pending():
        time.sleep(0.001)
    catch_up = time.perf_counter() - started
    written = N * ROUNDS / (time.perf_counter() - rounds_started)
    child.send_signal(signal.SIGTERM)
    child.wait()
    journal.flush()
    closed = ChatSession.objects.filter(state=ChatSession.State.CLOSED).count()
    print(
        f"  record caught up {catch_up * 1000:,.0f} ms after the last round; "
        f"{closed} of {N * ROUNDS} rows closed"
    )
    print(f"  services, record written (all rounds + catch-up) {written:,.0f} /s")
    print(f"  bare scripts / raw round trips          {bare_rate / ping:6.2f}x")
    print(f"  manager / bare scripts                  {manager_rate / bare_rate:6.2f}x")
    ratio = services_rate / bare_rate
    print(f"  services / bare scripts                 {ratio:6.2f}x  (goal >= 0.5x)")
    for key in client.scan_iter(match=manager.keys.all_pattern(), count=1000):
        client.delete(key)


if __name__ == "__main__":
    main()
