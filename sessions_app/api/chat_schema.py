"""The OpenAPI 3.1 description of the conversations API, served at /api/chat/openapi.json.

Written by hand next to chat_views.py, like the v1 document (schema.py, whose error shape and
security schemes it shares); tests/test_chat_api_schema.py runs schemathesis against a live
server with it, so a drift between the two shows up there.
"""

from __future__ import annotations

from typing import Any

from sessions_app.api.chat_files_schema import FILES_SCHEMAS, files_paths
from sessions_app.api.schema import COMMON_ERRORS, _error, _json, _ref, openapi_document

_DT = {"type": "string", "format": "date-time"}
_DT_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "The conversation's id (a UUID); anything else is a 404.",
    "schema": {"type": "string"},
}
_NOT_FOUND = _error("No such conversation of yours (another person's ids look the same).")
_USER_ID = {
    "name": "user_id",
    "in": "query",
    "required": False,
    "description": "Act for this person (a token with the act-for-users right; anyone may "
    "name themself; empty means yourself). Unknown names are a 404.",
    "schema": {"type": "string", "maxLength": 150},
}
_SEND_ERRORS = {
    "400": _error("Bad body (no text, too long, a `message_type` other than text, bad metadata)."),
    "403": _error("CSRF (cookie callers), or naming a `user_id` you may not act for."),
    "404": _NOT_FOUND,
    "409": _error(
        "No active seat: `QUEUED` (with `position`, `eta_seconds`) or `NO_SEAT` (a browser "
        "without one). A token takes a seat by the rules of /api/v1/session/create."
    ),
    "429": _error("Too many questions this minute.", retry_after=True),
    **COMMON_ERRORS,
}
# One event of the stream (Open API 3.1: `schema` describes each event, not the whole stream).
_SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": [
                "message",
                "waiting_for_capacity",
                "stream_start",
                "stream_chunk",
                "stream_end",
                "error",
            ],
        },
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
_SEND_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendMessage"}}},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_REQUIRED = ["session_id", "trace_id", "user_id", "title", "status", "created_at"]
_PROPERTIES: dict[str, Any] = {
    "session_id": {"type": "string", "format": "uuid"},
    "trace_id": {"type": "string"},
    "user_id": {"type": "string"},
    "title": {"type": "string"},
    "status": {"type": "string", "enum": ["active", "archived", "deleted"]},
    "created_at": _DT,
    "updated_at": _DT,
    "last_message_at": _DT_OR_NULL,
    "metadata": {"type": "object"},
}
_SUMMARY = {"type": "object", "required": _REQUIRED, "properties": _PROPERTIES}

SCHEMAS: dict[str, Any] = {
    "Conversation": _SUMMARY,
    "ConversationDetail": {
        "type": "object",
        "required": [*_REQUIRED, "message_count", "last_activity"],
        "properties": {
            **_PROPERTIES,
            "message_count": {"type": "integer", "minimum": 0},
            "last_activity": _DT,
        },
    },
    "ConversationList": {
        "type": "object",
        "required": ["sessions", "total", "has_more"],
        "properties": {
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["session_id", "title", "status", "last_message"],
                    "properties": {
                        "session_id": {"type": "string", "format": "uuid"},
                        "title": {"type": "string"},
                        "status": {"type": "string", "enum": ["active", "archived"]},
                        "created_at": _DT,
                        "updated_at": _DT,
                        "last_message": {"type": "string"},
                        "last_message_at": _DT_OR_NULL,
                    },
                },
            },
            "total": {"type": "integer", "minimum": 0},
            "has_more": {"type": "boolean"},
        },
    },
    "CreateConversation": {
        "type": "object",
        "properties": {
            "title": {"type": ["string", "null"], "maxLength": 200},
            "metadata": {"type": ["object", "null"]},
        },
    },
    "ChangeConversation": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": ["string", "null"], "maxLength": 200},
            "status": {"type": ["string", "null"], "enum": ["active", "archived", None]},
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["session_id", "status"],
        "properties": {
            "session_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["deleted"]},
        },
    },
    "SendMessage": {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {"type": "string", "minLength": 1, "maxLength": 8000},
            "message_type": {"type": "string", "enum": ["text"]},
            "metadata": {"type": ["object", "null"], "description": "Kept with the question."},
        },
    },
    "Sent": {
        "type": "object",
        "required": ["message_id", "status", "created_at", "session_id", "answer_id"],
        "properties": {
            "message_id": {"type": "integer"},
            "status": {"type": "string", "enum": ["sent"]},
            "created_at": _DT,
            "session_id": {"type": "string", "format": "uuid"},
            "answer_id": {"type": "integer", "description": "The answer being prepared."},
        },
    },
    "Thread": {
        "type": "object",
        "required": ["messages", "has_more", "total", "leaf_id"],
        "properties": {
            "messages": {"type": "array", "items": {"type": "object"}},
            "has_more": {"type": "boolean"},
            "total": {"type": "integer", "minimum": 0},
            "leaf_id": {"type": ["integer", "null"]},
        },
    },
}


def chat_openapi_document(server_url: str) -> dict[str, Any]:
    base = openapi_document(server_url)
    return {
        "openapi": base["openapi"],
        "info": {
            "title": "chatgate conversations API",
            "version": "1",
            "description": "A person's conversations and their messages (cookie + CSRF, or "
            "a bearer token acting for its owner).",
        },
        "servers": [{"url": server_url}],
        "security": base.get("security", [{"bearerAuth": []}, {"cookieAuth": []}]),
        "paths": {
            "/sessions": {
                "get": {
                    "operationId": "listConversations",
                    "summary": "Your conversations, newest activity first; `q` searches.",
                    "parameters": [
                        _query(
                            "status",
                            {"type": "string", "enum": ["active", "archived"]},
                            "Which list.",
                        ),
                        _query(
                            "q", {"type": "string", "maxLength": 200}, "Titles and message text."
                        ),
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 200},
                            "Page size (50).",
                        ),
                        _query("offset", {"type": "integer", "minimum": 0}, "Rows to skip."),
                    ],
                    "responses": {
                        "200": _json(_ref("ConversationList"), "One page."),
                        "400": _error("Bad parameter."),
                        **COMMON_ERRORS,
                    },
                },
                "post": {
                    "operationId": "createConversation",
                    "summary": "A new, empty conversation (its first question names it).",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("CreateConversation")}},
                    },
                    "responses": {
                        "201": _json(_ref("Conversation"), "Created."),
                        "400": _error("Bad body."),
                        "403": _error("CSRF (cookie callers)."),
                        **COMMON_ERRORS,
                    },
                },
            },
            "/sessions/{session_id}": {
                "parameters": [_ID],
                "get": {
                    "operationId": "getConversation",
                    "summary": "One conversation with its message count.",
                    "responses": {
                        "200": _json(_ref("ConversationDetail"), "The conversation."),
                        "404": _NOT_FOUND,
                        **COMMON_ERRORS,
                    },
                },
                "patch": {
                    "operationId": "changeConversation",
                    "summary": "Rename, archive or restore.",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("ChangeConversation")}},
                    },
                    "responses": {
                        "200": _json(_ref("ConversationDetail"), "Changed."),
                        "400": _error("Bad body."),
                        "403": _error("CSRF (cookie callers)."),
                        "404": _NOT_FOUND,
                        **COMMON_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "deleteConversation",
                    "summary": "Delete (soft: kept for accounting, gone for you).",
                    "responses": {
                        "200": _json(_ref("Deleted"), "Deleted."),
                        "403": _error("CSRF (cookie callers)."),
                        "404": _NOT_FOUND,
                        **COMMON_ERRORS,
                    },
                },
            },
            "/sessions/{session_id}/messages": {
                "parameters": [_ID],
                "get": {
                    "operationId": "conversationMessages",
                    "summary": "The thread shown: the path to `leaf`, a page before `before`.",
                    "parameters": [
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 100},
                            "Page size (30).",
                        ),
                        _query(
                            "before", {"type": "integer", "minimum": 1}, "Messages before this id."
                        ),
                        _query(
                            "after", {"type": "integer", "minimum": 1}, "Messages after this id."
                        ),
                        _query(
                            "leaf", {"type": "integer", "minimum": 1}, "The branch ending here."
                        ),
                        _USER_ID,
                    ],
                    "responses": {
                        "200": _json(_ref("Thread"), "One page of the thread."),
                        "400": _error("Bad parameter."),
                        "403": _error("Naming a `user_id` you may not act for."),
                        "404": _error(
                            "No such conversation, or `before`/`after`/`leaf` not in it."
                        ),
                        **COMMON_ERRORS,
                    },
                },
                "post": {
                    "operationId": "sendMessage",
                    "summary": "Ask a question; the answer is written through the gate and "
                    "shows up in the history and on every open page of the person.",
                    "parameters": [_USER_ID],
                    "requestBody": _SEND_BODY,
                    "responses": {"201": _json(_ref("Sent"), "Recorded."), **_SEND_ERRORS},
                },
            },
            "/sessions/{session_id}/messages/stream": {
                "parameters": [_ID],
                "post": {
                    "operationId": "sendMessageStream",
                    "summary": "Ask, and receive the answer as Server-Sent Events: message, "
                    "waiting_for_capacity {position}, stream_start, stream_chunk, stream_end, "
                    "error. Closing the connection stops the answer and frees its slot.",
                    "parameters": [_USER_ID],
                    "requestBody": _SEND_BODY,
                    "responses": {
                        "200": {
                            "description": "The event stream (`event:` and `data:` lines; "
                            "each data is JSON with its `type`).",
                            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                        },
                        **_SEND_ERRORS,
                    },
                },
            },
            **files_paths(session_id=_ID, user_id=_USER_ID),
        },
        "components": {
            "schemas": {
                **SCHEMAS,
                **FILES_SCHEMAS,
                "Error": base["components"]["schemas"]["Error"],
            },
            "securitySchemes": base["components"]["securitySchemes"],
        },
    }
