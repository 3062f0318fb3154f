"""An answer as Discord messages: the text while it streams, then the final pieces with sources."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bots.answer import AnswerSnapshot
from bots.text import citation_label, citation_link, split_message
from console.chat import Citation

MESSAGE_LIMIT = 2000  # characters of content per Discord message
PLACEHOLDER = "🔎 Looking through the documents…"
STREAMING_MARK = " …"
APOLOGY = "⚠️ Sorry, something went wrong while answering. Please ask again."
SHUTDOWN_APOLOGY = "⚠️ Sorry, Lorebot was restarted before this answer was finished. Please ask again."
EMPTY_QUESTION = "I could not read a question there. Mention me with it, e.g. `@Lorebot how do I roll back a release?`"
NOT_HERE = "Lorebot does not answer in this channel."
LINK_USAGE = ("`/lorebot link CODE` links this Discord account to your Lorebot login: get the code in the web chat "
              "(“Link Slack/Discord”), then send it here or to me in a DM.")
NOT_COVERED_NOTE = "Not covered by your documents: an admin can add the document that answers it in the console."


def progress(text: str) -> str:
    """The answer so far, marked as unfinished, cut to one message (the rest shows when done)."""
    text = text.strip()
    if len(text) + len(STREAMING_MARK) > MESSAGE_LIMIT:
        text = split_message(text, MESSAGE_LIMIT - len(STREAMING_MARK))[0]
    return text + STREAMING_MARK


def final_pieces(snap: AnswerSnapshot) -> list[str]:
    """The finished answer as messages of at most 2,000 characters, the sources on the last one."""
    if snap.failed:
        body = f"{snap.text.strip()}\n\n⚠️ {snap.error_message}" if snap.text.strip() else f"⚠️ {snap.error_message}"
    else:
        body = snap.text.strip() or APOLOGY
        if snap.not_covered:
            body += f"\n\n*{NOT_COVERED_NOTE}*"
    pieces = split_message(body, MESSAGE_LIMIT)
    sources = sources_block(snap.citations)
    if sources:
        if len(pieces[-1]) + 2 + len(sources) <= MESSAGE_LIMIT:
            pieces[-1] = f"{pieces[-1]}\n\n{sources}"
        else:
            pieces.extend(split_message(sources, MESSAGE_LIMIT))
    return pieces


def sources_block(citations: Sequence[Citation]) -> str:
    """Numbered sources in Discord markdown; links in <> so Discord shows no preview for them."""
    lines = []
    for citation in citations:
        label = discord.utils.escape_markdown(citation_label(citation)).replace("[", "(").replace("]", ")")
        link = citation_link(citation)
        shown = f"[{label}](<{link}>)" if link else label
        lines.append(f"**[{citation.n}]** {shown}")
    return "**Sources**\n" + "\n".join(lines) if lines else ""
