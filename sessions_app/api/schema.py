"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json.

Written by hand next to the views (no schema generator dependency); tests/test_api_schema.py
runs schemathesis against a live server with it, so a drift between the two shows up there.
"""

from __future__ import annotations

from typing import Any

# Usernames follow Django's rule (Unicode letters and digits plus . @ + - _, at most 150).
# No `pattern` here: JSON Schema regexes are ECMA ones, whose \w is ASCII-only, and Korean
# usernames are valid; the server answers 400 (body) or 404 (path) for a malformed name.
USERNAME_RULE = "A username: letters, digits and . @ + - _ (at most 150)."


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


COMMON_ERRORS = {
    "401": _error("Not authenticated: no session cookie and no (valid) bearer token."),
    "503": _error("Redis (the admission store) is unreachable.", retry_after=True),
}

USER_ID_PARAM = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "description": "The person's username. Browsers may only name themselves; a token with "
    "the act-for-users permission may name anyone.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 150, "description": USERNAME_RULE},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "examples": ["BAD_REQUEST", "RATE_LIMIT", "UNAVAILABLE"],
                    },
                    "message": {"type": "string"},
                },
            }
        },
    },
    "CreateRequest": {
        "type": "object",
        "properties": {
            "user_id": {
                "type": ["string", "null"],
                "maxLength": 150,
                "description": "Whom to open a session for (tokens with act-for-users). "
                "Omitted, null or empty: the caller itself. Unknown names are provisioned.",
            },
            "session_id": {
                "type": ["string", "null"],
                "maxLength": 200,
                "description": "The caller's own reference, echoed back as client_session_id.",
            },
        },
    },
    "CreateResponse": {
        "type": "object",
        "required": ["status", "session_id", "client_session_id", "user_id", "created"],
        "properties": {
            "status": {"type": "string", "enum": ["active", "queued"]},
            "session_id": {"type": "string", "format": "uuid"},
            "client_session_id": {"type": "string"},
            "user_id": {"type": "string"},
            "created": {"type": "boolean"},
            "position": {"type": "integer", "minimum": 1},
            "eta_seconds": {"type": ["integer", "null"], "minimum": 1},
        },
    },
    "CloseResponse": {
        "type": "object",
        "required": ["status", "session_id", "promoted"],
        "properties": {
            "status": {"type": "string", "enum": ["closed"]},
            "session_id": {"type": "string", "format": "uuid"},
            "user_id": {"type": "string"},
            "previous_state": {"type": "string"},
            "promoted": {"type": "integer", "minimum": 0},
        },
    },
    "PositionResponse": {
        "type": "object",
        "required": ["status", "session_id"],
        "properties": {
            "status": {"type": "string", "enum": ["active", "queued"]},
            "session_id": {"type": "string", "format": "uuid"},
            "position": {"type": "integer", "minimum": 1},
            "ahead": {"type": "integer", "minimum": 0},
            "eta_seconds": {"type": ["integer", "null"], "minimum": 1},
        },
    },
    "StatusResponse": {
        "type": "object",
        "required": [
            "active_sessions",
            "max_active_sessions",
            "queue_length",
            "in_flight_queries",
            "max_concurrent_queries",
            "admissions_paused",
        ],
        "properties": {
            "active_sessions": {"type": "integer", "minimum": 0},
            "max_active_sessions": {"type": "integer", "minimum": 1},
            "queue_length": {"type": "integer", "minimum": 0},
            "in_flight_queries": {"type": "integer", "minimum": 0},
            "waiting_queries": {"type": "integer", "minimum": 0},
            "max_concurrent_queries": {"type": "integer", "minimum": 1},
            "admissions_paused": {"type": "boolean"},
            "active": {
                "type": "array",
                "description": "Staff and service tokens only.",
                "items": {"type": "object"},
            },
            "queue": {
                "type": "array",
                "description": "Staff and service tokens only; the first `limit` people.",
                "items": {"type": "object"},
            },
        },
    },
    "CleanupResponse": {
        "type": "object",
        "required": ["expired", "abandoned", "promoted"],
        "properties": {
            "expired": {"type": "integer", "minimum": 0},
            "abandoned": {"type": "integer", "minimum": 0},
            "promoted": {"type": "integer", "minimum": 0},
            "reclaimed_leases": {"type": "integer", "minimum": 0},
        },
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatgate",
            "version": "1",
            "description": "Admission gate in front of a GPU chat service: at most N active "
            "sessions, a FIFO queue with live positions. Errors are always "
            '`{"error": {"code", "message"}}`.',
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": {
            "/session/create": {
                "post": {
                    "operationId": "sessionCreate",
                    "summary": "Open the person's session, or return their live one.",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _ref("CreateRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("CreateResponse"), "The person's live session."),
                        "201": _json(_ref("CreateResponse"), "A new session."),
                        "400": _error("Malformed body or user_id."),
                        "403": _error("Naming another user without permission, or CSRF."),
                        "409": _error("A live session exists with another client session_id."),
                        "429": _error("Too many creates.", retry_after=True),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/session/close/{user_id}": {
                "delete": {
                    "operationId": "sessionClose",
                    "summary": "End the person's live session; the queue head is promoted.",
                    "parameters": [USER_ID_PARAM],
                    "responses": {
                        "200": _json(_ref("CloseResponse"), "Closed."),
                        "403": _error("Not yours to close, or CSRF."),
                        "404": _error("No such user, or no live session."),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/session/status": {
                "get": {
                    "operationId": "gateStatus",
                    "summary": "Counts and limits; staff and tokens also get the lists.",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "description": "Most rows per list (default 100).",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("StatusResponse"), "The gate now."),
                        "400": _error("Bad limit."),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/session/position/{user_id}": {
                "get": {
                    "operationId": "sessionPosition",
                    "summary": "Where the person stands; asking counts as presence.",
                    "parameters": [USER_ID_PARAM],
                    "responses": {
                        "200": _json(_ref("PositionResponse"), "Queued or active."),
                        "403": _error("Not yours to see."),
                        "404": _error("No such user, or no live session."),
                        **COMMON_ERRORS,
                    },
                }
            },
            "/session/cleanup": {
                "post": {
                    "operationId": "gateCleanup",
                    "summary": "Expire idle sessions, drop abandoned ones, promote.",
                    "responses": {
                        "200": _json(_ref("CleanupResponse"), "What the sweep did."),
                        "403": _error("Staff and service tokens only, or CSRF."),
                        **COMMON_ERRORS,
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `manage.py create_api_token`.",
                },
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
        },
    }
