"""Every sentence the chat page's scripts show, translated on the server.

The page reads them from a json_script block, so it needs no JavaScript catalogue. Placeholders
are %(name)s; the page fills them in.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import ngettext


def page_strings() -> dict[str, str]:
    """Every sentence chat.js shows, translated here so the page needs no JS catalogue.

    Placeholders are %(name)s; the page fills them in.
    """
    return {
        "connecting": _("Connecting…"),
        "queued_title": _("You are number %(position)s"),
        "eta_one": _("about 1 minute"),
        "eta_other": _("about %(minutes)s minutes"),
        "eta_unknown": _("waiting time unknown"),
        "ahead_zero": _("You are next in line."),
        # ngettext with a placeholder: the page picks _one or _other.
        "ahead_one": ngettext("%(ahead)s person ahead of you", "%(ahead)s people ahead of you", 1),
        "ahead_other": ngettext(
            "%(ahead)s person ahead of you", "%(ahead)s people ahead of you", 2
        ),
        "title_queue": _("#%(position)s in line · chatgate"),
        "your_turn": _("It's your turn"),
        "your_turn_detail": _("You can chat now."),
        "title_turn": _("Your turn! · chatgate"),
        "notification_body": _("It's your turn to chat."),
        "notify_me": _("Notify me when it's my turn"),
        "active_title": _("Chat · chatgate"),
        # The composer's hint on a phone: no Enter/Shift+Enter keys to explain, and two lines.
        "composer_short": _("Type a message"),
        "expiring_one": ngettext(
            "Still there? Your session ends in %(seconds)s second unless you keep it.",
            "Still there? Your session ends in %(seconds)s seconds unless you keep it.",
            1,
        ),
        "expiring_other": ngettext(
            "Still there? Your session ends in %(seconds)s second unless you keep it.",
            "Still there? Your session ends in %(seconds)s seconds unless you keep it.",
            2,
        ),
        "ended": _("Your session has ended: %(reason)s"),
        "ended_title": _("Session ended · chatgate"),
        "reason_user": _("you left."),
        "reason_expired": _("it was idle for too long."),
        "reason_abandoned": _("no page was open for a while."),
        "reason_admin": _("staff closed it."),
        "reason_lost": _("it was lost after a service restart."),
        "reconnecting": _("Connection lost. Reconnecting in %(seconds)s s…"),
        "live": _("Live"),
        "polling": _(
            "Live updates are blocked on this network: your place is checked every 5 seconds. "
            "Chat needs a live connection."
        ),
        "unavailable": _("The service is briefly unavailable. Retrying…"),
        "waiting_answer": _("Your question is number %(place)s in line for an answer."),
        "cancel_question": _("Cancel this question"),
        "slot_lost": _("The answer may have been cut short."),
        "assistant_writing": _("The assistant is writing…"),
        "typing_elsewhere": _("Typing in another window…"),
        "you": _("You"),
        "assistant": _("Assistant"),
        "stopped": _("(stopped)"),
        "failed": _("(failed)"),
        "err_RATE_LIMIT": _("You are sending messages too fast; try again in %(seconds)s s."),
        # The composer keeps the text and counts down with these.
        "rate_limited_one": ngettext(
            "Too many messages: your text is kept, and you can send it in %(seconds)s second.",
            "Too many messages: your text is kept, and you can send it in %(seconds)s seconds.",
            1,
        ),
        "rate_limited_other": ngettext(
            "Too many messages: your text is kept, and you can send it in %(seconds)s second.",
            "Too many messages: your text is kept, and you can send it in %(seconds)s seconds.",
            2,
        ),
        "err_TOO_LARGE": _("That message is too large."),
        "err_NOT_ACTIVE": _("You can chat once it is your turn."),
        "err_CAPACITY_TIMEOUT": _("The assistant stayed busy; please send your message again."),
        "err_BACKEND_ERROR": _("The answer failed: %(message)s"),
        "err_BAD_REQUEST": _("The page sent something the server did not understand."),
        "err_UNAVAILABLE": _("The service is briefly unavailable. Retrying…"),
        "err_NOT_FOUND": _("That conversation or message no longer exists."),
        "not_connected": _("Not connected, so nothing was sent. Reconnecting…"),
        # The seat.
        "paused_title": _("Admissions are paused; your place is kept."),
        "paused_detail": _(
            "You are number %(position)s. The wait resumes when staff open admissions again."
        ),
        "staff_note": _("Staff's reason: %(note)s"),
        "leave": _("Leave"),
        "leave_confirm": _(
            "Leave now? You give up your place or seat; your conversations are kept."
        ),
        "ok": _("OK"),
        "cancel": _("Cancel"),
        # The thread.
        "new_conversation_title": _("New conversation"),
        "copy_code": _("Copy code"),
        "copy_answer": _("Copy"),
        "copied": _("Copied"),
        "copy_failed": _("Could not copy"),
        "regenerate": _("Regenerate"),
        "retry": _("Retry"),
        "edit": _("Edit"),
        "edited": _("(edited)"),
        "save_and_send": _("Save and send"),
        "previous_version": _("Previous version"),
        "next_version": _("Next version"),
        "load_failed": _("Could not load the messages; try again shortly."),
        # The conversations list.
        "conversations": _("Conversations"),
        "archived_heading": _("Archived"),
        "show_archived": _("Archived conversations"),
        "show_active": _("Back to conversations"),
        "untitled": _("Untitled"),
        "rename": _("Rename"),
        "archive": _("Archive"),
        "restore": _("Restore"),
        "delete": _("Delete"),
        "delete_confirm": _("Delete “%(title)s”? It disappears from your list for good."),
        "group_today": _("Today"),
        "group_yesterday": _("Yesterday"),
        "group_week": _("Previous 7 days"),
        "group_older": _("Older"),
        "no_conversations": _("No conversations yet: your first message starts one."),
        "no_archived": _("No archived conversations."),
        "no_results": _("No conversation matches."),
        "list_failed": _("Could not load your conversations."),
        # Attachments (static/js/chat/attach.js, files.js).
        "attach": _("Attach a file"),
        "attach_remove": _("Remove the file"),
        "attach_drop": _("Drop the file here to attach it"),
        "attach_uploading": _("Uploading… %(percent)s"),
        "attach_processing": _("Checking the file…"),
        "attach_too_large": _("This file is too large: at most %(size)s."),
        "attach_type": _(
            "This file cannot be attached. You can attach JPEG, PNG or WebP images, PDF "
            "documents and plain-text files (.txt, .md)."
        ),
        "attach_failed": _("The file could not be sent; try again."),
        "attach_one": _("One file at a time: send this one first."),
        "attachment": _("Attachment"),
    }
