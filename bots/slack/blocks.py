"""Slack messages for an answer: mrkdwn section blocks, numbered sources, feedback buttons.

Slack's limits (https://docs.slack.dev/reference/block-kit/blocks): at most 50 blocks per message and
3,000 characters in a section's text. A longer answer continues in further messages in the thread.
Every piece of document or model text is escaped, so none of it can mention or ping anyone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bots.answer import AnswerSnapshot
from bots.text import citation_label, citation_link, split_message
from console.chat import Citation

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
FALLBACK_LIMIT = 3000  # the plain `text` Slack shows in notifications
THINKING = "Looking that up…"
SORRY = "Sorry, something went wrong while answering. Please try again."
NOT_COVERED_NOTE = "Not covered by your documents: an admin can add the document that answers it in the console."

FEEDBACK_UP = "lorebot_feedback_up"
FEEDBACK_DOWN = "lorebot_feedback_down"
SHARE = "lorebot_share"
THANKS_BLOCK = "lorebot_thanks"
ACTIONS_BLOCK = "lorebot_actions"

Block = dict[str, Any]

_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
# Fenced blocks (an unclosed one runs to the end), then inline code spans.
_CODE = re.compile(r"^[ \t]*```.*?(?:^[ \t]*```[ \t]*$|\Z)|`[^`\n]+`", re.MULTILINE | re.DOTALL)
_FENCE_LANGUAGE = re.compile(r"^(\s*```)[\w+#.-]+$", re.MULTILINE)
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True)
class SlackMessage:
    """One message to post or update: notification text and its blocks."""

    text: str
    blocks: list[Block]


def escape(text: str) -> str:
    """Text that cannot ping or link: Slack's control characters as entities (no <!channel>, <@U…>,
    <url>), and a word joiner in "@here"/"@channel"/"@everyone", which stay readable.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", text)


def mrkdwn(markdown: str) -> str:
    """The model's Markdown as Slack mrkdwn, escaped first; http(s) links become Slack links. Code is left
    as it is (`f(**kwargs)`, `a**2` in a block): only the text around it is converted."""
    text = escape(markdown)
    out, last = [], 0
    for code in _CODE.finditer(text):
        out.append(_prose_mrkdwn(text[last:code.start()]))
        out.append(_FENCE_LANGUAGE.sub(r"\1", code.group()))  # Slack would show "```python" as a first line "python"
        last = code.end()
    out.append(_prose_mrkdwn(text[last:]))
    return "".join(out)


def _prose_mrkdwn(text: str) -> str:
    text = _LINK.sub(lambda m: f"<{m[2]}|{m[1].replace('|', '/')}>", text)
    text = _BOLD.sub(lambda m: f"*{m[1] or m[2]}*", text)
    return _HEADING.sub(r"*\1*", text)


def mention(user_id: str) -> str:
    """<@U…> for a well-formed Slack user id, else nothing (the id comes from a request)."""
    return f"<@{user_id}>" if _SLACK_ID.match(user_id) else "you"


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
    if block_id:
        block["block_id"] = block_id
    return block


def unknown_command(name: str) -> str:
    """The private answer to a slash command other than /ask (`name` already escaped)."""
    return (f"Sorry, I do not know the command `{name}`. Ask me with `/ask` and your question, "
            "e.g. `/ask how do I roll back a release?`")


def thinking_message() -> SlackMessage:
    return SlackMessage(THINKING, [context(f"_{THINKING}_")])


def progress_message(text: str) -> SlackMessage:
    """An answer still being written: its text so far (as much as one message holds)."""
    sections = [section(p) for p in split_message(mrkdwn(text), SECTION_LIMIT)][: MAX_BLOCKS - 1]
    return SlackMessage(_fallback(text), [*sections, context("_Writing…_")])


def answer_messages(snap: AnswerSnapshot, *, shareable: bool = False) -> list[SlackMessage]:
    """The finished answer: its text in sections, then notes, sources and buttons on the last message."""
    body = [section(p) for p in split_message(mrkdwn(snap.text), SECTION_LIMIT)] if snap.text.strip() else []
    tail = [*_notes(snap), *sources_blocks(snap.citations)]
    if snap.message_id is not None and not snap.failed:
        tail.append(actions_block(snap.message_id, shareable=shareable))
    room = MAX_BLOCKS - 1  # one block stays free for the thank-you line feedback adds
    messages: list[list[Block]] = [[]]
    for block in body:
        if len(messages[-1]) == room:
            messages.append([])
        messages[-1].append(block)
    if len(messages[-1]) + len(tail) > room:
        messages.append([])
    messages[-1].extend(tail)
    fallback = _fallback(snap.text) or _fallback(snap.error_message) or "Lorebot"
    return [SlackMessage(fallback, blocks) for blocks in messages]


def sources_blocks(citations: Sequence[Citation]) -> list[Block]:
    """"Sources" with one numbered line per citation, linked where the document has an address."""
    if not citations:
        return []
    lines = []
    for citation in citations:
        label = escape(citation_label(citation))
        link = citation_link(citation)
        name = f"<{escape(link)}|{label.replace('|', '/')}>" if link else label
        lines.append(f"[{citation.n}] {name}")
    pieces = split_message("*Sources*\n" + "\n".join(lines), SECTION_LIMIT)
    return [context(p) for p in pieces[:3]]  # hundreds of sources would say nothing more


def actions_block(message_id: int, *, shareable: bool = False) -> Block:
    """👍 / 👎 (and "Share in channel" for a private answer); the value is the stored message's id."""
    def button(action_id: str, label: str, **extra: Any) -> Block:
        return {"type": "button", "action_id": action_id, "value": str(message_id),
                "text": {"type": "plain_text", "text": label, "emoji": True}, **extra}

    elements = [button(FEEDBACK_UP, "👍"), button(FEEDBACK_DOWN, "👎")]
    if shareable:
        elements.append(button(SHARE, "Share in channel", style="primary"))
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": elements}


def with_thanks(blocks: list[Block], user_id: str) -> list[Block]:
    """The message's blocks with a thank-you line for `user_id` (replacing an earlier one)."""
    kept = [b for b in blocks if b.get("block_id") != THANKS_BLOCK][: MAX_BLOCKS - 1]
    return [*kept, context(f"Thanks for the feedback, {mention(user_id)}!", THANKS_BLOCK)]


def apology(snap: AnswerSnapshot) -> str:
    """What the user reads when there is no answer: the refusal as it was given, or a short apology."""
    if snap.error_code in ("rate_limited", "too_long", "empty_question", "warming_up"):
        return escape(snap.error_message)
    return "Sorry, I could not answer that just now. Please try again in a moment."


def _notes(snap: AnswerSnapshot) -> list[Block]:
    if snap.failed:
        return [context(f":warning: {apology(snap)}")]
    if snap.not_covered:
        return [context(f"_{NOT_COVERED_NOTE}_")]
    if snap.fallback_reason:
        return [context(f"_The language model was unavailable ({escape(snap.fallback_reason)}); this answer "
                        "is built from the documents' own sentences._")]
    if snap.extractive:
        return [context("_Extractive answer: the most relevant sentences of the documents._")]
    return []


def _fallback(text: str) -> str:
    flat = " ".join(text.split())
    return escape(flat[: FALLBACK_LIMIT - 1] + "…" if len(flat) > FALLBACK_LIMIT else flat)
