"""Reads of the chat record: the person's conversations (list, search, detail) and the thread
shown for one of them (a path root→leaf through the message tree, paged from the end)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from sessions_app.chat import history_cache
from sessions_app.chat.attachments import attachments_of
from sessions_app.chat.conversations import ConversationNotFound
from sessions_app.models import ChatMessage, Conversation

PAGE_DEFAULT = 30
PAGE_MAX = 100
LIST_DEFAULT = 50
LIST_MAX = 200
# The sidebar shows one line of the newest message: a few hundred characters are plenty.
PREVIEW_CHARS = 200


class MessageNotFound(LookupError):
    """No such message in this conversation (a `leaf` or `before` that is not there)."""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def conversation_summary(conversation: Any) -> dict[str, Any]:
    return {
        "session_id": str(conversation.pk),
        "trace_id": conversation.trace_id,
        "user_id": conversation.owner.get_username(),
        "title": conversation.title,
        "status": conversation.status,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "last_message_at": _iso(conversation.last_message_at),
        "metadata": conversation.metadata,
    }


def conversation_detail(conversation: Any) -> dict[str, Any]:
    count = ChatMessage.objects.filter(conversation=conversation).count()
    return {
        **conversation_summary(conversation),
        "message_count": count,
        "last_activity": _iso(conversation.last_message_at or conversation.updated_at),
    }


@dataclass(frozen=True)
class ConversationPage:
    sessions: list[dict[str, Any]]
    total: int
    has_more: bool


def conversation_list(
    *, owner: Any, status: str = "active", q: str = "", limit: int = LIST_DEFAULT, offset: int = 0
) -> ConversationPage:
    """The person's conversations of one status, newest activity first; `q` matches titles and
    message text, case-insensitively (Hangul has no case: a plain substring match)."""
    rows = Conversation.objects.filter(owner=owner, status=status)
    if q:
        rows = rows.filter(Q(title__icontains=q) | Q(pk__in=Subquery(_ids_matching(owner, q))))
    total = rows.count()
    newest = ChatMessage.objects.filter(conversation=OuterRef("pk")).order_by("-pk")
    page = list(
        rows.annotate(
            activity=Coalesce("last_message_at", "created_at"),
            last_message=Subquery(newest.values("content")[:1]),
        ).order_by("-activity", "-created_at")[offset : offset + limit]
    )
    sessions = [
        {
            "session_id": str(c.pk),
            "title": c.title,
            "status": c.status,
            "created_at": _iso(c.created_at),
            "updated_at": _iso(c.updated_at),
            "last_message": (c.last_message or "")[:PREVIEW_CHARS],
            "last_message_at": _iso(c.last_message_at),
        }
        for c in page
    ]
    return ConversationPage(sessions=sessions, total=total, has_more=offset + len(page) < total)


def _ids_matching(owner: Any, q: str) -> Any:
    return (
        ChatMessage.objects.filter(conversation__owner=owner, content__icontains=q)
        .values("conversation_id")
        .distinct()
    )


# --- threads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """The shape of one conversation's messages: ids only, cheap to load whole."""

    parent_of: dict[int, int | None]
    children: dict[int | None, list[int]]  # each list oldest first

    @classmethod
    def load(cls, conversation_id: Any) -> Tree:
        parent_of: dict[int, int | None] = {}
        children: dict[int | None, list[int]] = defaultdict(list)
        rows = ChatMessage.objects.filter(conversation_id=conversation_id).order_by("pk")
        for pk, parent in rows.values_list("pk", "parent_id"):
            parent_of[pk] = parent
            children[parent].append(pk)
        return cls(parent_of=parent_of, children=children)

    def newest_leaf_under(self, message_id: int) -> int:
        """Children always have larger pks, so the largest pk below a message is a leaf."""
        best, stack = message_id, [message_id]
        while stack:
            for child in self.children.get(stack.pop(), []):
                best = max(best, child)
                stack.append(child)
        return best

    def path_to(self, leaf: int) -> list[int]:
        path: list[int] = []
        node: int | None = leaf
        while node is not None:
            path.append(node)
            node = self.parent_of[node]
        path.reverse()
        return path

    def siblings(self, message_id: int) -> list[int]:
        return list(self.children.get(self.parent_of[message_id], [message_id]))


def message_dict(message: Any, *, owner_name: str, sibling_ids: list[int]) -> dict[str, Any]:
    is_user = message.sender_type == ChatMessage.Role.USER
    return {
        "message_id": message.pk,
        "conversation_id": str(message.conversation_id),
        "parent_id": message.parent_id,
        "sender_type": message.sender_type,
        "sender_id": owner_name if is_user else message.sender_type,
        "message_type": message.message_type,
        "content": message.content,
        "status": message.status,
        "metadata": {
            **(message.client_metadata or {}),
            "tokens_used": message.tokens_used,
            "latency_ms": message.latency_ms,
        },
        "created_at": _iso(message.created_at),
        "edited": message.edited,
        "edited_at": _iso(message.edited_at),
        "sibling_ids": sibling_ids,
    }


def thread_page(
    *,
    conversation: Any,
    limit: int = PAGE_DEFAULT,
    before: int | None = None,
    leaf: int | None = None,
    after: int | None = None,
) -> dict[str, Any]:
    """The path ending at `leaf` (default: the newest leaf; a message that is not a leaf stands
    for its newest descendant leaf), oldest→newest, the `limit` messages just before `before`.
    With `after`, paging runs forward: the `limit` messages just after `after` (and before
    `before` when both are given); `has_more` then says whether more follow the page.

    Raises MessageNotFound for a `leaf`, `before` or `after` not on this conversation's path.
    The newest page (no `before`, `leaf` or `after`), which every opening of the conversation
    reads, comes through the history cache (chat/history_cache.py)."""
    if before is None and leaf is None and after is None:
        return history_cache.recent_page(
            conversation.pk, limit, lambda: _thread_page(conversation, limit, None, None, None)
        )
    return _thread_page(conversation, limit, before, leaf, after)


def _thread_page(
    conversation: Any, limit: int, before: int | None, leaf: int | None, after: int | None
) -> dict[str, Any]:
    tree = Tree.load(conversation.pk)
    if not tree.parent_of:
        for given in (leaf, before, after):
            if given is not None:
                raise MessageNotFound(str(given))
        return {"messages": [], "has_more": False, "total": 0, "leaf_id": None}
    if leaf is None:
        leaf_id = max(tree.parent_of)
    elif leaf in tree.parent_of:
        leaf_id = tree.newest_leaf_under(leaf)
    else:
        raise MessageNotFound(str(leaf))
    path = tree.path_to(leaf_id)
    if before is None:
        end = len(path)
    elif before in path:
        end = path.index(before)
    else:
        raise MessageNotFound(str(before))
    if after is None:
        start = max(0, end - limit)
        has_more = start > 0
    elif after in path:
        start = path.index(after) + 1
        has_more = start + limit < end
        end = min(end, start + limit)
    else:
        raise MessageNotFound(str(after))
    ids = path[start:end]
    by_pk = ChatMessage.objects.in_bulk(ids)
    owner_name = conversation.owner.get_username()
    messages = [
        message_dict(by_pk[pk], owner_name=owner_name, sibling_ids=tree.siblings(pk)) for pk in ids
    ]
    files = attachments_of(ids)
    for message in messages:
        message["attachments"] = files.get(message["message_id"], [])
    return {"messages": messages, "has_more": has_more, "total": len(path), "leaf_id": leaf_id}


def path_contents(*, conversation_id: Any, up_to: int, limit: int) -> list[tuple[str, str]]:
    """(sender_type, content) of the last `limit` answered turns on the path ending at `up_to`
    (the question being answered, which is always included): the model's context."""
    rows = path_turns(conversation_id=conversation_id, up_to=up_to, limit=limit)
    return [(role, content) for _pk, role, content in rows]


def path_turns(*, conversation_id: Any, up_to: int, limit: int) -> list[tuple[int, str, str]]:
    """path_contents with each turn's message id (its attachments follow it to the model)."""
    tree = Tree.load(conversation_id)
    path = tree.path_to(up_to)
    by_pk = ChatMessage.objects.in_bulk(path)
    turns = [
        (pk, by_pk[pk].sender_type, by_pk[pk].content)
        for pk in path[:-1]
        if by_pk[pk].status == ChatMessage.Status.DONE
        and by_pk[pk].sender_type != ChatMessage.Role.SYSTEM
    ]
    turns = turns[-max(limit - 1, 0) :] if limit > 1 else []
    last = by_pk[path[-1]]
    return [*turns, (last.pk, last.sender_type, last.content)]


def conversation_for_page(*, owner: Any, conversation_id: Any) -> Any:
    """The conversation a `/c/<uuid>/` page opens; ConversationNotFound if not the person's."""
    from sessions_app.chat.conversations import conversation_get

    return conversation_get(owner=owner, conversation_id=conversation_id)


__all__ = [
    "ConversationNotFound",
    "MessageNotFound",
    "conversation_detail",
    "conversation_list",
    "thread_page",
]
