"""Benchmark: opening a conversation (its newest page of messages) through the history cache
against the database alone, in one run so machine noise hits both alike.

    make bench-history     (starts a throwaway Redis; or: REDIS_URL=... python bench/...)

A conversation of MESSAGES messages (questions and answers of ~CHARS characters each) is read
N times per round: the database-only path (HISTORY_CACHE_SECONDS=0: the tree walk and the row
reads), then the cached path (every read after the first a Redis hit), then the cached path
with a write before every read (the worst case: every read misses). Best of ROUNDS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from _setup import setup_django  # bench/ is on sys.path when a benchmark runs

BENCH_DB = Path(os.environ.get("BENCH_DB", "/tmp/chatgate-bench-history.sqlite3"))
setup_django(database=BENCH_DB)

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from sessions_app.chat import selectors  # noqa: E402
from sessions_app.models import ChatMessage, Conversation  # noqa: E402

N = int(os.environ.get("BENCH_N", "500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "200"))
CHARS = int(os.environ.get("BENCH_CHARS", "400"))


def set_ttl(seconds: int) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "HISTORY_CACHE_SECONDS": seconds}


def timed(body: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(N):
        body()
    return N / (time.perf_counter() - started)


def main() -> None:
    for leftover in BENCH_DB.parent.glob(BENCH_DB.name + "*"):
        leftover.unlink()
    call_command("migrate", verbosity=0)
    owner = User.objects.create_user("bench", password="x")
    conversation = Conversation.objects.create(owner=owner, title="bench")
    parent = None
    for i in range(MESSAGES):
        parent = ChatMessage.objects.create(
            conversation=conversation,
            parent=parent,
            sender_type="user" if i % 2 == 0 else "assistant",
            content=("가나다 abc " * CHARS)[:CHARS],
        )
    conversation = Conversation.objects.select_related("owner").get(pk=conversation.pk)
    last = ChatMessage.objects.latest("pk")

    def read() -> None:
        selectors.thread_page(conversation=conversation)

    def write_then_read() -> None:
        ChatMessage.objects.filter(pk=last.pk).update(tokens_used=last.tokens_used)
        read()

    print(f"{MESSAGES} messages of {CHARS} characters; newest page of {selectors.PAGE_DEFAULT}")
    print(f"N={N} reads per round, best of {ROUNDS}")
    # The four are interleaved round by round, so a burst of load elsewhere hits all alike.
    cases: dict[str, tuple[int, Callable[[], None]]] = {
        "database only (cache off)": (0, read),
        "database only, a write before each read": (0, write_then_read),
        "history cache, hits": (300, read),
        "history cache, a write before each read": (300, write_then_read),
    }
    best = dict.fromkeys(cases, 0.0)
    for _ in range(ROUNDS):
        for label, (ttl, body) in cases.items():
            set_ttl(ttl)
            best[label] = max(best[label], timed(body))
    for label, value in best.items():
        print(f"{label:<44} {value:>9,.0f} reads/s  ({1000 / value:.2f} ms each)")
    labels = list(cases)
    print(f"hits vs database only:                 {best[labels[2]] / best[labels[0]]:.1f}x")
    print(f"misses vs database only (with writes): {best[labels[3]] / best[labels[1]]:.2f}x")


if __name__ == "__main__":
    main()
