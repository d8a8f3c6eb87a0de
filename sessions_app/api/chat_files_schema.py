"""The OpenAPI description of the file endpoints (chat_files.py), merged into the conversations
document (chat_schema.py) so that schemathesis exercises them with the rest."""

from __future__ import annotations

from typing import Any

from sessions_app.api.schema import COMMON_ERRORS, _error, _json, _ref

_FILE_ID = {
    "name": "file_id",
    "in": "path",
    "required": True,
    "description": "The file's id (a random UUID); anything else, or another person's, is a 404.",
    "schema": {"type": "string"},
}
_SERVED_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf", "text/plain")
_BINARY = {"type": "string", "format": "binary"}

FILES_SCHEMAS: dict[str, Any] = {
    "UploadedFile": {
        "type": "object",
        "required": ["file_id", "file_url", "thumbnail_url", "message_id", "file_info"],
        "properties": {
            "file_id": {"type": "string", "format": "uuid"},
            "file_url": {"type": "string"},
            "thumbnail_url": {"type": ["string", "null"]},
            "message_id": {"type": ["integer", "null"]},
            "session_id": {"type": "string", "format": "uuid"},
            "file_info": {
                "type": "object",
                "required": ["name", "type", "size"],
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": list(_SERVED_TYPES)},
                    "size": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}


def files_paths(*, session_id: dict[str, Any], user_id: dict[str, Any]) -> dict[str, Any]:
    """The file paths, with the conversations document's own `session_id` path parameter and
    `?user_id=` (a token with the act-for-users right names the person, as on every /api/chat/
    call)."""
    paths = _paths(session_id)
    return {
        path: {
            key: {**op, "parameters": [user_id]} if key in ("get", "post") else op
            for key, op in item.items()
        }
        for path, item in paths.items()
    }


def _paths(session_id: dict[str, Any]) -> dict[str, Any]:
    return {
        "/sessions/{session_id}/files": {
            "parameters": [session_id],
            "post": {
                "operationId": "uploadFile",
                "summary": "Attach a file (JPEG, PNG, WebP, PDF, plain text; 10 MB by default); "
                "with `message`, a new question carrying it is asked as from the page.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": _BINARY,
                                    "message": {"type": "string", "maxLength": 8000},
                                    "client_id": {"type": "string", "maxLength": 100},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("UploadedFile"), "Stored (and asked, with `message`)."),
                    # Without `content`: daphne's HTTP layer (Twisted) parses multipart bodies
                    # itself and answers one it cannot parse with an empty 400 before the app
                    # sees it; every 400 of ours is the JSON Error.
                    "400": {
                        "description": "Bad request, an empty or damaged file, or an image too "
                        "large (JSON Error); an unparseable multipart body gets an empty 400."
                    },
                    "403": _error(
                        "CSRF (cookie callers), or naming a `user_id` you may not act for."
                    ),
                    "404": _error("No such conversation of yours."),
                    "409": _error("A `message` needs an active seat (`state`, `position`)."),
                    "413": _error("The file is larger than the limit."),
                    "415": _error("Not an allowed type, or the name does not match the content."),
                    "429": _error("Too many uploads a minute.", retry_after=True),
                    **COMMON_ERRORS,
                },
            },
        },
        "/files/{file_id}": {
            "parameters": [_FILE_ID],
            "get": {
                "operationId": "getFile",
                "summary": "The file, to its owner (images inline, everything else as a download).",
                "responses": {
                    "200": {
                        "description": "The file's bytes, with its own type and nosniff.",
                        "content": {t: {"schema": _BINARY} for t in _SERVED_TYPES},
                    },
                    "403": _error("Naming a `user_id` you may not act for."),
                    "404": _error("No such file of yours."),
                    **COMMON_ERRORS,
                },
            },
        },
        "/files/{file_id}/thumbnail": {
            "parameters": [_FILE_ID],
            "get": {
                "operationId": "getFileThumbnail",
                "summary": "An image's thumbnail (WebP, at most 384 pixels a side).",
                "responses": {
                    "200": {
                        "description": "The thumbnail.",
                        "content": {"image/webp": {"schema": _BINARY}},
                    },
                    "403": _error("Naming a `user_id` you may not act for."),
                    "404": _error("No such image of yours."),
                    **COMMON_ERRORS,
                },
            },
        },
    }
