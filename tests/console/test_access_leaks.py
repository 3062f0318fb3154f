"""The leak test: a secret planted in a restricted collection never reaches an outsider, on any surface tested here.

Surfaces probed: the web chat (WebsocketCommunicator), `manage.py ask --as USER`, the source viewer,
the download URL, the history frame of another's conversation, the Slack bot (signed events: mentions,
DMs, /ask) and the Discord bot (the real client on the fake gateway: mentions, DMs, /ask). The same
questions asked by a member of the granted group (on the bots: from a DM linked with a one-time code
from the web chat, or a channel scoped to the collection) get the secret with its citation.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client, override_settings

from console.ingest import storage
from console.models import Collection, Conversation, Document
from tests.console.test_ws_chat import _engine, _session_cookie, frames_until, open_socket

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "zebrafalcon-7731"
VAULT = (f"# Merger plans\n\nThe acquisition codename is {SECRET}. The merger closes in March; "
         f"the codename {SECRET} must never be shared outside the board.\n")
SUBJECTS = ["the acquisition codename", "the merger codename", "the merger plans", "when the merger closes",
            "the board's secret codename", "the acquisition", "codename zebrafalcon", "merger March"]
FORMS = ["What is {}?", "Tell me about {}.", "{}", "Explain {} please", "Where can I read about {}?",
         "Who knows {}?", "Summarize {}", "Is there anything on {}?", "quote {}", "{} details",
         "I need {} now", "what does the document say about {}", "search {}", "{}?", "find {}",
         "give me {}", "any notes on {}", "remind me of {}", "what was {} again", "list {}"]
QUESTIONS = [form.format(subject) for subject in SUBJECTS for form in FORMS]  # 160


def _plant(tmp_path: Path) -> tuple[Any, Any, Document]:
    engine = _engine(tmp_path)
    vault = Collection.create("Board vault", visibility=Collection.Visibility.GROUPS)
    board = Group.objects.create(name="Board")
    vault.groups.add(board)
    checksum = hashlib.sha256(VAULT.encode()).hexdigest()
    kept = tmp_path / "kept.md"
    kept.write_text(VAULT)
    storage.raw_dir().mkdir(parents=True, exist_ok=True)
    storage.keep_original(kept, checksum)
    doc = Document.objects.create(checksum=checksum, original_filename="merger.md", kind="markdown",
                                  status=Document.Status.INDEXED, collection=vault, chunk_count=1)
    path = tmp_path / "merger.md"
    path.write_text(VAULT)
    engine.ingest_file(path, document_id=doc.engine_id, title="Merger plans", collection=vault.key)
    insider, insider_cookie = _session_cookie("insider")
    insider.groups.add(board)
    outsider, outsider_cookie = _session_cookie("outsider")
    return (insider, insider_cookie), (outsider, outsider_cookie), doc


async def ask(comm: Any, text: str) -> list[dict[str, Any]]:
    await comm.send_json_to({"type": "ask", "text": text})
    frames = await frames_until(comm, "done", "error", "cancelled", timeout=60)
    assert frames[-1]["type"] == "done", frames[-1]  # a real answer (or decline), not a refusal
    return frames


def _leaks(frames: list[dict[str, Any]]) -> bool:
    return SECRET in str(frames)


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0", CHAT_FRAME_RATE="0")
async def test_a_restricted_secret_reaches_no_outsider_and_every_insider(tmp_path: Path) -> None:
    with override_settings(RAG_DATA_DIR=tmp_path / "data"):
        await _probe_every_surface(tmp_path)


async def _probe_every_surface(tmp_path: Path) -> None:
    (insider, insider_cookie), (outsider, outsider_cookie), doc = await sync_to_async(_plant)(tmp_path)
    probes = leaks = 0

    # The web chat: each question a new conversation, asked by an outsider.
    thief = await open_socket(outsider_cookie)
    for question in QUESTIONS:
        frames = await ask(thief, question)
        probes, leaks = probes + 1, leaks + _leaks(frames)
    await thief.disconnect()

    # The insider asks the same questions: the secret comes back, cited.
    member = await open_socket(insider_cookie)
    found = 0
    conversation_id = None
    for question in QUESTIONS[:20]:
        frames = await ask(member, question)
        cited = [c for f in frames if f["type"] == "citations" for c in f["items"]]
        if SECRET in str(frames) and any(c["document_id"] == doc.engine_id for c in cited):
            found += 1
            conversation_id = frames[0]["conversation_id"]
    await member.disconnect()
    assert found >= 15, found

    # The history frame of the insider's conversation, asked for by the outsider.
    thief = await open_socket(outsider_cookie)
    await thief.send_json_to({"type": "history", "conversation_id": conversation_id})
    frame = await thief.receive_json_from(timeout=5)
    probes, leaks = probes + 1, leaks + _leaks([frame])
    await thief.disconnect()

    # The source viewer and the download: the same answer as for a document that does not exist.
    def viewer_probes() -> tuple[int, int]:
        client = Client()
        client.force_login(outsider)
        n = bad = 0
        missing = client.get("/sources/999999/")
        for url in (f"/sources/{doc.pk}/", f"/sources/{doc.pk}/?passage=0", f"/sources/{doc.pk}/original"):
            response = client.get(url)
            n += 1
            bad += SECRET in response.content.decode(errors="replace") or response.status_code != missing.status_code
        client.force_login(insider)
        assert SECRET in client.get(f"/sources/{doc.pk}/").content.decode()
        assert client.get(f"/sources/{doc.pk}/original").content == VAULT.encode()
        return n, bad

    n, bad = await sync_to_async(viewer_probes)()
    probes, leaks = probes + n, leaks + bad

    # manage.py ask --as USER.
    def cli_probes() -> tuple[int, int]:
        n = bad = 0
        for question in QUESTIONS[:40]:
            out = io.StringIO()
            call_command("ask", question, "--json", "--as", "outsider", stdout=out)
            n, bad = n + 1, bad + (SECRET in out.getvalue())
        out = io.StringIO()
        call_command("ask", QUESTIONS[0], "--json", "--as", "insider", stdout=out)
        assert SECRET in out.getvalue() and doc.engine_id in out.getvalue()
        return n, bad

    n, bad = await sync_to_async(cli_probes)()
    probes, leaks = probes + n, leaks + bad

    print(f"access leak test: {probes} probes, {leaks} leaks")
    assert probes >= 200
    assert leaks == 0


def test_a_slack_channel_and_dm_search_what_their_scope_and_link_allow(tmp_path: Path) -> None:
    from console import chat
    from console.models import AccountLink, ChannelScope
    from tests.support import ask_chat

    with override_settings(RAG_DATA_DIR=tmp_path / "data", CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0"):
        (insider, _), _, doc = _plant(tmp_path)
        Collection.default()  # its row, which an earlier test's flush may have taken (the page names it)
        scope = ChannelScope.objects.create(platform="slack", workspace="T1", channel="CBOARD")
        scope.collections.add(doc.collection)
        AccountLink.link(platform="slack", external_user="T1:UIN", user=insider, by=None)

        def asked(channel: str, user: str, n: int) -> str:
            asker = chat.Asker(platform="slack", workspace="T1", channel=channel, external_user=user,
                               direct=channel.startswith("D"))
            return str(ask_chat(surface="slack", conversation_key=f"T1:{channel}:{n}", user_key=user,
                                text=QUESTIONS[0], asker=asker))

        assert SECRET in asked("CBOARD", "UOUT", 1)  # the board's channel is scoped to the vault
        assert SECRET not in asked("CGENERAL", "UIN", 2)  # an unscoped channel: everyone's collections only
        assert SECRET in asked("DIN", "UIN", 3)  # a DM of the linked insider
        assert SECRET not in asked("DOUT", "UOUT", 4)  # an unlinked DM

        # The console's conversation page names what each answer searched.
        client = Client()
        client.force_login(get_user_model().objects.create_user("admin", password="pw", is_staff=True))
        pages = {key: client.get(f"/console/conversations/{pk}/").content.decode()
                 for key, pk in Conversation.objects.values_list("external_key", "pk")}
        assert "searched: Board vault</span>" in pages["T1:CBOARD:1"]
        assert "searched: Default</span>" in pages["T1:CGENERAL:2"] and "Board vault" not in pages["T1:CGENERAL:2"]
        assert "searched: Board vault, Default</span>" in pages["T1:DIN:3"]


# -- the bots: signed Slack events and the fake Discord gateway -------------------------------------------------------

BOT_QUESTIONS = QUESTIONS[::8]  # 20 of the 160, every subject in several forms


def _bot_leak(calls: Any) -> bool:
    return SECRET in str(calls)


async def _web_link_code(cookie: bytes) -> str:
    """A one-time code, asked for over the web chat socket as the "Link Slack/Discord" button does."""
    comm = await open_socket(cookie)
    await comm.send_json_to({"type": "link_code"})
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    assert frame["type"] == "link_code", frame
    return str(frame["code"])


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0", SLACK_RATE_LIMIT_USER="0",
                   LINK_CODE_ATTEMPTS="0", CHAT_FRAME_RATE="0", CHAT_ANSWER_STALE_SECONDS=0)
async def test_slack_signed_events_leak_nothing_to_outsiders_and_answer_the_board(tmp_path: Path) -> None:
    from django.core.cache import cache
    from django.test import AsyncClient

    from bots.pacing import BUDGETS
    from bots.slack import answering
    from bots.slack.app import get_app
    from console.models import ChannelScope
    from tests.bots.slack.conftest import Slack
    from tests.fakes.slack import SIGNING_SECRET, TEAM_ID, FakeSlackServer, mention, message

    with FakeSlackServer() as fake, override_settings(
        RAG_DATA_DIR=tmp_path / "data", SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.api_url, SLACK_UPDATE_INTERVAL=0.1, SLACK_CHANNEL_EDITS_PER_MINUTE=6000,
    ):
        get_app.cache_clear()
        cache.clear()
        BUDGETS.clear()
        (insider, insider_cookie), _, doc = await sync_to_async(_plant)(tmp_path)

        def scope_board() -> None:
            ChannelScope.objects.create(platform="slack", workspace=TEAM_ID, channel="C0BOARD").collections.add(
                doc.collection)

        await sync_to_async(scope_board)()
        slack = Slack(AsyncClient(), fake)
        probes = leaks = 0

        async def thread_of(event: dict[str, Any]) -> Any:
            await slack.send_event(event)
            assert await answering.drain(30) == 0
            return fake.thread(event["channel"], event["ts"])

        try:
            for i, question in enumerate(BOT_QUESTIONS):
                # A mention in an unscoped channel, by the insider even: its readers are not all on the board.
                replies = await thread_of(mention(question, channel="C0GENERAL", user="U0INSIDER" if i % 2 else "U0OUT"))
                probes, leaks = probes + 1, leaks + _bot_leak(replies)
                assert replies and replies[-1].text != "Looking that up…"
                # An unlinked DM.
                probes, leaks = probes + 1, leaks + _bot_leak(await thread_of(
                    message(question, channel="D0OUT", user="U0OUT", channel_type="im")))
                # /ask in the unscoped channel: the private answer arrives at its response_url.
                _, url = await slack.command(question, channel="C0GENERAL", user="U0OUT")
                name = url.rsplit("/", 1)[1]
                answered = await fake.wait_for("response_url", lambda c, name=name: c.args["name"] == name)
                probes, leaks = probes + 1, leaks + _bot_leak(answered)
            # A wrong code sent by the outsider links nothing; nothing the outsider was sent holds the secret.
            await thread_of(message("link ZZZZ9999", channel="D0OUT", user="U0OUT", channel_type="im"))
            probes, leaks = probes + 1, leaks + _bot_leak(fake.calls())

            # The insider links their Slack account with a code from the web chat, then asks in a DM.
            code = await _web_link_code(insider_cookie)
            linked = await thread_of(message(f"link {code}", channel="D0INSIDER", user="U0INSIDER", channel_type="im"))
            assert "Linked" in str(fake.thread("D0INSIDER", None)) and not linked
            found = 0
            for question in BOT_QUESTIONS[:5]:
                dm, board = (await thread_of(message(question, channel="D0INSIDER", user="U0INSIDER", channel_type="im")),
                             await thread_of(mention(question, channel="C0BOARD", user="U0OUT")))
                found += all(SECRET in r[-1].block_text and "Merger plans" in r[-1].block_text for r in (dm, board))
            assert found >= 4, found
        finally:
            get_app.cache_clear()
            cache.clear()

    print(f"access leak test (Slack signed events): {probes} probes, {leaks} leaks")
    assert probes >= 60
    assert leaks == 0


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0", DISCORD_RATE_LIMIT_USER="0",
                   LINK_CODE_ATTEMPTS="0", CHAT_FRAME_RATE="0", CHAT_ANSWER_STALE_SECONDS=0)
async def test_discord_gateway_messages_leak_nothing_to_outsiders_and_answer_the_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import discord
    from django.core.cache import cache

    from bots.pacing import BUDGETS
    from console.models import ChannelScope
    from tests.bots.discord.conftest import answer_to, is_final, mention, start_bot, stop_bot
    from tests.fakes.discord import DM_CHANNEL_ID, GUILD_ID, FakeDiscord, user_payload

    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    cache.clear()
    BUDGETS.clear()
    outsider, insider_user = user_payload(801, "outsider"), user_payload(802, "insider")
    insider_dm = DM_CHANNEL_ID + 802  # each user's DM with the bot is a channel of its own
    with FakeDiscord() as fake, override_settings(
        RAG_DATA_DIR=tmp_path / "data", DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url,
        DISCORD_EDIT_INTERVAL=0.05, DISCORD_CHANNEL_EDITS_PER_MINUTE=6000,
    ):
        (_, insider_cookie), _, doc = await sync_to_async(_plant)(tmp_path)
        general, boardroom = fake.channel_ids[0], fake.channel_ids[1]

        def scope_server() -> None:
            # The whole server answers from the vault, except #general, whose own row (everyone's) overrides it.
            ChannelScope.objects.create(platform="discord", workspace=str(GUILD_ID), channel="").collections.add(
                doc.collection)
            ChannelScope.objects.create(platform="discord", workspace=str(GUILD_ID), channel=str(general)
                                        ).collections.add(Collection.default())

        await sync_to_async(scope_server)()

        async def interaction_answer(interaction: dict[str, Any]) -> dict[str, Any]:
            def finished() -> dict[str, Any] | None:
                for m in list(fake.messages.values()):
                    if m.get("interaction_token") == interaction["token"] and is_final(m) and m["content"]:
                        return m
                return None
            return await fake.until(finished, 20)

        client, task = await start_bot(fake)
        probes = leaks = 0
        try:
            for question in BOT_QUESTIONS:
                answer = await answer_to(fake, fake.send_message(mention(question), channel_id=general, author=outsider))
                probes, leaks = probes + 1, leaks + _bot_leak(answer)
                answer = await answer_to(fake, fake.send_message(question, dm=True, mention_bot=False, author=outsider))
                probes, leaks = probes + 1, leaks + _bot_leak(answer)
                answer = await interaction_answer(fake.slash_command("ask", {"question": question}, channel_id=general,
                                                                     user=outsider))
                probes, leaks = probes + 1, leaks + _bot_leak(answer)
            probes, leaks = probes + 1, leaks + _bot_leak(fake.calls)

            # The insider links their Discord account with a code from the web chat, in their own DM channel.
            code = await _web_link_code(insider_cookie)
            sent = fake.send_message(f"link {code}", dm=True, mention_bot=False, author=insider_user,
                                     channel_id=insider_dm)
            linked = await fake.until(lambda: fake.replies_to(int(sent["id"])))
            assert "Linked" in linked[0]["content"], linked
            found = 0
            for question in BOT_QUESTIONS[:5]:
                answers = [
                    await answer_to(fake, fake.send_message(question, dm=True, mention_bot=False, author=insider_user,
                                                            channel_id=insider_dm)),
                    await answer_to(fake, fake.send_message(mention(question), channel_id=boardroom, author=outsider)),
                    await interaction_answer(fake.slash_command("ask", {"question": question}, channel_id=boardroom,
                                                                user=outsider)),
                ]
                found += all(SECRET in a["content"] and "Merger plans" in a["content"] for a in answers)
            assert found >= 4, (found, answers)
        finally:
            await stop_bot(client, task)
            cache.clear()

    print(f"access leak test (Discord gateway): {probes} probes, {leaks} leaks")
    assert probes >= 60
    assert leaks == 0
