"""The history cache (issue 12; the earlier service's read-through cache of a conversation's
messages): the newest page of a conversation's thread, served from Redis while nothing in that
conversation changes. The database stays the truth; the cache only saves the tree walk and the
row reads of the page everyone opens first.

Invalidation without races: each conversation has a *stamp* (a random token) in the cache, and
a page is stored under (conversation, stamp, limit). Every write to a message of the
conversation sets a new stamp once its transaction has committed (models/messages.py routes
`save`, `delete` and queryset `update` here), so a page read before the write — even one stored
after it — is never read again: readers look it up under the new stamp and miss. Pages and
stamps carry a TTL (`HISTORY_CACHE_SECONDS`; 0 turns the cache off), so a conversation nobody
opens costs nothing after a while. A Redis that cannot be asked is no error: the page is read
from the database, and a stamp that could not be renewed expires by its TTL at the latest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction

from sessions_app import conf

logger = logging.getLogger(__name__)

# Stamps outlive pages, so a page can never outlive the stamp it was stored under by much.
STAMP_TTL_FACTOR = 4


def _ttl() -> int:
    return max(0, int(conf.get("HISTORY_CACHE_SECONDS")))


def _stamp_key(conversation_id: Any) -> str:
    return f"hist:stamp:{conversation_id}"


def _page_key(conversation_id: Any, stamp: str, limit: int) -> str:
    return f"hist:page:{conversation_id}:{stamp}:{limit}"


def _stamp(conversation_id: Any, ttl: int) -> str:
    key = _stamp_key(conversation_id)
    stamp = cache.get(key)
    if stamp is None:
        # add, not set: two first readers must agree on one stamp (else one stores a page
        # under a stamp nobody reads).
        cache.add(key, uuid.uuid4().hex, ttl * STAMP_TTL_FACTOR)
        stamp = cache.get(key)
    return str(stamp)


def recent_page(conversation_id: Any, limit: int, read: Callable[[], dict[str, Any]]) -> Any:
    """The newest `limit` messages of the conversation's thread: from the cache, else `read()`
    (the database) stored for the next reader."""
    ttl = _ttl()
    if ttl <= 0:
        return read()
    try:
        stamp = _stamp(conversation_id, ttl)
        key = _page_key(conversation_id, stamp, limit)
        page = cache.get(key)
    except Exception:  # Redis down or slow: the database answers alone
        logger.warning("history cache unreadable; reading the database", exc_info=True)
        return read()
    if page is not None:
        return page
    page = read()
    try:
        cache.set(key, page, ttl)
    except Exception:
        logger.warning("history cache unwritable", exc_info=True)
    return page


def invalidate(conversation_ids: Iterable[Any]) -> None:
    """Every cached page of these conversations stops being read: at once (so the writer's own
    transaction reads its writes), and again once the transaction commits (between the two, a
    reader on another connection could store the old rows under the first new stamp)."""
    ids = sorted({str(cid) for cid in conversation_ids if cid is not None})
    if not ids:
        return
    _renew_stamps(ids)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _renew_stamps(ids))


def _renew_stamps(ids: list[str]) -> None:
    ttl = _ttl()
    if ttl <= 0:
        return
    try:
        cache.set_many({_stamp_key(cid): uuid.uuid4().hex for cid in ids}, ttl * STAMP_TTL_FACTOR)
    except Exception:
        # Unreachable Redis: its pages cannot be read either; a stale page could only be read
        # if Redis returned before the page's TTL ran out, so say so loudly.
        logger.error("history cache: could not invalidate %s", ids, exc_info=True)
