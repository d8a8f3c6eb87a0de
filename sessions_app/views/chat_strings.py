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
        "expiring": _("Still there? Your session ends in %(seconds)s seconds unless you keep it."),
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
        "waiting_slot": _("Your message is number %(place)s in line for a free answer slot."),
        "slot_lost": _("The answer may have been cut short."),
        "assistant_writing": _("The assistant is writing…"),
        "you": _("You"),
        "assistant": _("Assistant"),
        "stopped": _("(stopped)"),
        "failed": _("(failed)"),
        "err_RATE_LIMIT": _("You are sending messages too fast; try again in %(seconds)s s."),
        "err_TOO_LARGE": _("That message is too large."),
        "err_NOT_ACTIVE": _("You can chat once it is your turn."),
        "err_CAPACITY_TIMEOUT": _("All answer slots stayed busy; please send your message again."),
        "err_BACKEND_ERROR": _("The answer failed: %(message)s"),
        "err_BAD_REQUEST": _("The page sent something the server did not understand."),
        "err_UNAVAILABLE": _("The service is briefly unavailable. Retrying…"),
    }
