"""Linking a Slack or Discord account to a Lorebot user with a one-time code: the web chat issues it, a bot redeems it.

The flow: a signed-in web-chat user asks for a code (the socket's `link_code` frame); they send
`link CODE` to the bot in a direct message (or `/lorebot link CODE`); the bot hands the code and the
platform's user id here, and an AccountLink is made. Their DMs then search what that user may see
(console.chat.access). Codes are short-lived (LINK_CODE_MINUTES), single use, stored only as a keyed
hash, and never logged; tries are limited per platform user (LINK_CODE_ATTEMPTS). The bots parse
nothing but the message text (`link_code_in`) and post the reply they are given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction

from console.access.metrics import ACCESS_REFUSED, ACCOUNT_LINKS, LINK_CODES
from console.chat.events import ChatError
from console.chat.orm import in_thread_pool, in_writer
from console.chat.ratelimit import check_rate
from console.models import CODE_LENGTH, AccountLink, LinkCode, normalized_code

log = structlog.get_logger(__name__, component="chat")

PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord"}
# "link ABCD2345", "link: abcd-2345", "`link ABCD2345`": the whole message, so a question that merely
# starts with "link" is still a question.
_LINK_MESSAGE = re.compile(r"link\s*:?\s+([A-Za-z0-9]{4}[- ]?[A-Za-z0-9]{4})", re.IGNORECASE)


@dataclass(frozen=True)
class IssuedCode:
    """A code as the web chat shows it, once."""

    code: str
    expires_at: datetime
    minutes: int


@dataclass(frozen=True)
class LinkResult:
    """What became of a code sent to a bot, and the reply to post (to the sender only)."""

    outcome: str  # LinkCode.Outcome, "rate_limited" or "cancelled"
    text: str

    @property
    def linked(self) -> bool:
        return self.outcome == LinkCode.Outcome.LINKED


def link_code_in(text: str) -> str | None:
    """The code when a message is a link request ("link ABCD2345"), else None."""
    match = _LINK_MESSAGE.fullmatch(text.strip().strip("`*_ "))
    if match is None:
        return None
    code = normalized_code(match[1])
    return code if len(code) == CODE_LENGTH else None


def issue_code(user: Any) -> IssuedCode:
    """A fresh code for a signed-in, active user (their earlier unused ones stop working)."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        raise ChatError("login_required", "Log in to link a Slack or Discord account.")
    minutes = settings.LINK_CODE_MINUTES
    with transaction.atomic():
        row, code = LinkCode.issue(user, minutes=minutes)
    LINK_CODES.labels("web", "issued").inc()
    log.info("account.link_code_issued", user_id=getattr(user, "pk", None), expires_at=row.expires_at.isoformat())
    return IssuedCode(code=code, expires_at=row.expires_at, minutes=minutes)


def linked_platforms(user: Any) -> list[str]:
    """The platforms `user` has a linked account on ("slack", "discord")."""
    return sorted(set(AccountLink.objects.filter(user=user).values_list("platform", flat=True)))


def redeem_code(code: str, *, platform: str, external_user: str) -> LinkResult:
    """Links `external_user` (AccountLink.external_user: "TEAM:USER" on Slack, the user id on Discord) to the
    code's user if the code is good; the result's text says what happened, in words for the sender."""
    name = PLATFORM_NAMES.get(platform, platform)
    try:
        check_rate("link", f"{platform}:{external_user}", settings.LINK_CODE_ATTEMPTS)
    except ChatError:
        LINK_CODES.labels(platform, "rate_limited").inc()
        log.warning("account.link_refused", platform=platform, external_user=external_user, outcome="rate_limited")
        return LinkResult("rate_limited", "Too many link codes tried from this account; wait a few minutes, "
                                          "then get a new code in the web chat.")
    with transaction.atomic():
        outcome, link = LinkCode.redeem(code, platform=platform, external_user=external_user)
    LINK_CODES.labels(platform, outcome).inc()
    if link is None:
        ACCESS_REFUSED.labels(platform, "link_code").inc()
        log.info("account.link_refused", platform=platform, external_user=external_user, outcome=outcome)
        again = "Get a new one in the web chat (“Link Slack/Discord”) and send it to me here."
        reasons = {
            LinkCode.Outcome.WRONG: "That link code is not valid.",
            LinkCode.Outcome.EXPIRED: f"That link code has expired (codes last {settings.LINK_CODE_MINUTES} minutes).",
            LinkCode.Outcome.USED: "That link code has been used already (each code links once).",
        }
        return LinkResult(outcome, f"{reasons[LinkCode.Outcome(outcome)]} {again}")
    ACCOUNT_LINKS.labels(platform, "code").inc()
    log.info("account.linked", platform=platform, external_user=external_user, user_id=link.user_id, how="code")
    who = link.user.get_username()
    return LinkResult(outcome, f"Linked: this {name} account is now {who} on Lorebot. Your direct messages to me "
                               f"search the documents {who} may see.")


def cancel_code(code: str, *, platform: str) -> LinkResult:
    """A code posted where others could read it (a channel): it stops working, and the sender is told why."""
    cancelled = LinkCode.cancel(code)
    LINK_CODES.labels(platform, "cancelled").inc()
    log.warning("account.link_code_exposed", platform=platform, cancelled=cancelled)
    return LinkResult("cancelled", "Link codes go in a direct message to me, never in a channel: that code no longer "
                                   "works. Get a new one in the web chat and send `link CODE` to me in a DM.")


# Writes go through the chat's writer thread (console.chat.orm), with the answers' writes: on SQLite a
# pool thread writing beside it would wait on the database lock.
aissue_code = in_writer(issue_code)
alinked_platforms = in_thread_pool(linked_platforms)
aredeem_code = in_writer(redeem_code)
acancel_code = in_writer(cancel_code)
