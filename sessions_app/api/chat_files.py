"""Files over the conversations API (README "Attachments"):

    POST /api/chat/sessions/<id>/files   multipart `file`, optional `message` (and `client_id`,
         echoed in the question's `message` frame, as the socket does)
         -> 201 {file_id, file_url, thumbnail_url, message_id, file_info: {name, type, size}}
    GET  /api/chat/files/<file_id>            the file, to its owner only
    GET  /api/chat/files/<file_id>/thumbnail  an image's thumbnail (WebP)

With `message`, the file comes with a new question, asked exactly as the page asks one (the
same use-case; every page of the person shows it, and this process answers it in the seat's
order, page open or not). Without
an active seat that question cannot be asked: 409 with the place in the queue, and nothing is
stored, as the page refuses a question with NOT_ACTIVE. Errors are the API's JSON errors: 400
(bad request or file), 413 (too large), 415 (type not allowed or not matching the name), and
another person's conversation or file is a 404.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadhandler import (
    FileUploadHandler,
    MemoryFileUploadHandler,
    StopUpload,
    TemporaryFileUploadHandler,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from sessions_app import conf, notifications
from sessions_app.api.chat_views import _caller, _conversation
from sessions_app.api.errors import ApiError, bad_request, not_found
from sessions_app.api.views import endpoint
from sessions_app.chat import attachments, runner
from sessions_app.chat.attachments_sniff import Refused
from sessions_app.gate import selectors as gate_selectors
from sessions_app.gate import services
from sessions_app.ratelimit import rate_check

# Room for the multipart framing and the `message` field around the file itself.
MULTIPART_SLACK_BYTES = 256 * 1024


class _SizeCap(FileUploadHandler):
    """First in the chain: stops reading a file part as soon as it passes the limit, so an
    oversized file is never completed on disk (Django deletes the partial temporary file)."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _refusal(exc: Refused) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def _not_seated(owner: Any) -> ApiError:
    status = gate_selectors.session_status_for_user(owner)
    extra: dict[str, Any] = {"state": status.state}
    if status.state == "queued":
        extra.update(position=status.position, eta_seconds=status.eta_seconds)
        message = _(
            "You are waiting for your turn (number %(position)s); a question can be asked "
            "once it is your turn. Upload without `message` to store the file only."
        ) % {"position": status.position}
    else:
        message = _(
            "You have no seat to chat with yet: open the chat page or POST "
            "/api/v1/session/create first, or upload without `message` to store the file only."
        )
    return ApiError(409, "NOT_ACTIVE", message, extra=extra)


def _question_text(request: HttpRequest) -> str | None:
    if "message" not in request.POST:
        return None
    text = request.POST["message"]
    limit = int(conf.get("MAX_MESSAGE_CHARS"))
    if not text.strip() or "\x00" in text:
        raise bad_request(_("`message` must hold some text (or be left out)."))
    if len(text) > limit:
        raise ApiError(
            400, "TOO_LARGE", _("At most %(limit)s characters a message.") % {"limit": limit}
        )
    return text


def upload(request: HttpRequest, session_id: str) -> HttpResponse:
    max_bytes = int(conf.get("MAX_UPLOAD_BYTES"))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > max_bytes + MULTIPART_SLACK_BYTES:
        raise _refusal(attachments.too_large(max_bytes))  # refused before a byte is parsed
    # Before anything reads request.POST (the CSRF check does, for cookie callers).
    cap = _SizeCap(request, max_bytes)
    request.upload_handlers = [
        cap,
        MemoryFileUploadHandler(request),
        TemporaryFileUploadHandler(request),
    ]
    try:
        # Parsed here, before the CSRF check reads it, so that every way a body can be
        # unreadable (broken framing, too many fields or files) is a JSON 400, never a 500.
        request.POST  # noqa: B018
        files = request.FILES
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise bad_request(_("The multipart body could not be read.")) from exc
    except RequestDataTooBig as exc:
        raise ApiError(400, "TOO_LARGE", _("The form fields are too large.")) from exc
    owner = _caller(request, write=True)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            _("Send the file as multipart/form-data, in a field named `file`."),
        )
    limit = int(conf.get("CHAT_RATE_PER_MINUTE"))
    decision = rate_check(scope="upload", ident=str(owner.pk), limit=limit)
    if not decision.allowed:
        raise ApiError(
            429,
            "RATE_LIMIT",
            _("At most %(limit)s uploads a minute; try again shortly.") % {"limit": limit},
            retry_after=decision.retry_after,
        )
    conversation = _conversation(owner, session_id)
    text = _question_text(request)
    if cap.exceeded:
        raise _refusal(attachments.too_large(max_bytes))
    upload = files.get("file")
    if upload is None:
        raise bad_request(_("Send the file in a multipart field named `file`."))
    seat_id = None
    if text is not None:
        seat_id = services.session_live_for_user(owner)
        if seat_id is None or gate_selectors.session_status(seat_id).state != "active":
            raise _not_seated(owner)
    try:
        checked = attachments.attachment_check(name=upload.name or "", data=upload.read())
    except Refused as exc:
        raise _refusal(exc) from None
    finally:
        upload.close()
    message_id = None
    if text is not None and seat_id is not None:
        try:
            attachment, asked = attachments.attachment_ask(
                owner=owner,
                seat_id=seat_id,
                conversation=conversation,
                checked=checked,
                content=text,
            )
        except services.NotActive:
            raise _not_seated(owner) from None
        message_id = asked.question.pk
        client_id = request.POST.get("client_id", "")[:100] or None
        frame = attachments.question_frame(asked, attachment, client_id, owner.get_username())
        notifications.chat_frame(owner.pk, frame)
    else:
        attachment = attachments.attachment_store(
            owner=owner, conversation=conversation, checked=checked
        )
    info = attachments.attachment_dict(attachment)
    body = {
        "file_id": info["file_id"],
        "file_url": info["file_url"],
        "thumbnail_url": info["thumbnail_url"],
        "message_id": message_id,
        "session_id": str(conversation.pk),
        "file_info": {"name": info["name"], "type": info["type"], "size": info["size"]},
    }
    response = JsonResponse(body, status=201)
    if message_id is not None:
        response.answer_seat = (seat_id, owner.pk)  # type: ignore[attr-defined]
    return response


def _serve(request: HttpRequest, file_id: str, *, thumbnail: bool) -> HttpResponse:
    owner = _caller(request, write=False)
    try:
        attachment = attachments.attachment_get(owner=owner, file_id=file_id)
        data = attachments.attachment_bytes(attachment, thumbnail=thumbnail)
    except attachments.AttachmentNotFound:
        raise not_found(_("There is no such file.")) from None
    if thumbnail:
        content_type, inline = "image/webp", True
    else:
        content_type, inline = attachment.content_type, attachment.is_image
    if content_type == "text/plain":
        content_type = "text/plain; charset=utf-8"
    response = HttpResponse(data, content_type=content_type)
    # Never rendered as anything but its own type, never run as a page, never embedded by
    # another site; everything that is not an image downloads instead of opening.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    disposition = content_disposition_header(not inline, attachment.name)
    if disposition:
        response["Content-Disposition"] = disposition
    return response


def file_get(request: HttpRequest, file_id: str) -> HttpResponse:
    return _serve(request, file_id, thumbnail=False)


def thumbnail_get(request: HttpRequest, file_id: str) -> HttpResponse:
    return _serve(request, file_id, thumbnail=True)


_upload_view = endpoint(POST=upload)


@csrf_exempt  # cookie callers are CSRF-checked by api.auth, tokens need none
async def files_view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """The upload runs in a thread (file checks, thumbnails, SQL); a question that came with it
    is then answered by this process's runner, exactly like `POST .../messages` (chat/runner.py):
    the person may have no page open, and the answer still comes, in the seat's order."""
    response: HttpResponse = await sync_to_async(_upload_view)(request, **kwargs)
    answer_seat = getattr(response, "answer_seat", None)
    if answer_seat is not None:
        runner.answer_soon(seat_id=answer_seat[0], user_pk=answer_seat[1])
    return response


file_view = endpoint(GET=file_get)
thumbnail_view = endpoint(GET=thumbnail_get)
