"""Slack events against a real daphne process, with the fake Slack Web API and the fake LLM.

Each event is a signed `app_mention` POSTed to /slack/events. Measured, from just before the POST:
the HTTP acknowledgement (Slack's limit is 3 s; target p95 ≤ 100 ms), the 👀 reaction and the
placeholder message in the thread (target ≤ 500 ms), as the fake Slack recorded them; and per answer,
how many chat.update calls streamed it and the fastest edit rate seen (Slack allows about one update
per second per message; SLACK_UPDATE_INTERVAL, 1 s). Events go out in waves of --concurrency, all
in one channel, so each wave is that many long answers streaming there at once: the channel's
`chat.update` calls per minute (Slack's guidance: about 50; SLACK_CHANNEL_EDITS_PER_MINUTE, 45, plus a
burst of 5) are reported, with the answers lost (events without a finished
answer) and the daphne process's restarts. Before the waves, the platform-shaped payloads the bot must
survive go in: a mention written by another bot (not answered), a mention whose listener raises (an
apology), a body that is not UTF-8 behind a forged fresh signature (400), an unknown slash command (a
polite ephemeral answer) and a replayed /ask (answered once).

    .venv/bin/python benchmarks/slack_events.py                      # 100 events, 5 at a time
    .venv/bin/python benchmarks/slack_events.py --events 10 --concurrency 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from tests.daphne_server import make_site, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402
from tests.fakes.slack import (  # noqa: E402
    APP_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlackServer,
    bot_profile,
    event_body,
    mention,
    sign,
)

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")


async def _one_event(http: Any, fake: FakeSlackServer, question: str, user: str) -> dict[str, Any]:
    import httpx

    event = mention(question, user=user)
    body = json.dumps(event_body(event))
    headers = {**sign(body), "Content-Type": "application/json"}
    sent = time.perf_counter()
    result: dict[str, Any] = {"error": None, "ts": event["ts"]}
    try:
        response = await http.post("/slack/events", content=body, headers=headers)
        result["ack_ms"] = (time.perf_counter() - sent) * 1000
        if response.status_code != 200:
            result["error"] = f"HTTP {response.status_code}"
            return result
        eyes, = await fake.wait_for("reactions.add", lambda c: c.args.get("timestamp") == event["ts"], timeout=60)
        placeholder, = await fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == event["ts"],
                                           timeout=60)
        result["eyes_ms"] = (eyes.at - sent) * 1000
        result["placeholder_ms"] = (placeholder.at - sent) * 1000
        deadline = time.monotonic() + 120
        while not any(b["type"] == "actions" for m in fake.thread("C0GENERAL", event["ts"]) for b in m.blocks):
            if time.monotonic() > deadline:
                raise TimeoutError("the answer did not finish within 120 s")
            await asyncio.sleep(0.05)
        result["done_ms"] = (time.perf_counter() - sent) * 1000
    except (httpx.HTTPError, AssertionError, TimeoutError) as exc:  # counted, not fatal
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return result


def _edits(fake: FakeSlackServer, results: list[dict[str, Any]]) -> None:
    """chat.update calls per answer, and the shortest gap between two of them."""
    for r in results:
        if r["error"] is not None:
            continue
        reply, = fake.thread("C0GENERAL", r["ts"])
        times = sorted(c.at for c in fake.calls("chat.update") if c.args.get("ts") == reply.ts)
        r["updates"] = len(times)
        r["min_gap_s"] = min((b - a for a, b in zip(times, times[1:])), default=None)


async def _post(http: Any, body: str | bytes, content_type: str, *, signed: bool = True) -> Any:
    headers = {**(sign(body) if signed and isinstance(body, str) else {}), "Content-Type": content_type}
    if not signed:
        headers |= {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
    return await http.post("/slack/events", content=body, headers=headers)


async def _hostile(http: Any, fake: FakeSlackServer) -> dict[str, Any]:
    """The payloads the bot must survive; each is 'handled' when the bot did what the README says."""
    from urllib.parse import urlencode

    handled: dict[str, bool] = {}
    statuses: list[int] = []
    from_bot = mention("How do I roll back a release?", user="U0OTHERBOT", bot_id="B0OTHER", bot_profile=bot_profile())
    statuses.append((await _post(http, json.dumps(event_body(from_bot)), "application/json")).status_code)
    broken = {**mention("How do I roll back a release?"), "text": {"not": "a string"}}
    statuses.append((await _post(http, json.dumps(event_body(broken)), "application/json")).status_code)
    apology = await fake.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == broken["ts"], timeout=30)
    handled["malformed_event_apologised"] = "Sorry" in apology[0].args.get("text", "")
    not_utf8 = await _post(http, b'{"type": "event_callback", "x": "\xff\xfe"}', "application/json", signed=False)
    statuses.append(not_utf8.status_code)
    handled["not_utf8_refused_400"] = not_utf8.status_code == 400

    def command(name: str, trigger_id: str) -> str:
        return urlencode({"team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": "U0ALICE", "command": name,
                          "text": "When do releases go out?", "api_app_id": APP_ID,
                          "response_url": fake.response_url(trigger_id), "trigger_id": trigger_id})

    unknown = await _post(http, command("/weather", "1.unknown"), "application/x-www-form-urlencoded")
    statuses.append(unknown.status_code)
    handled["unknown_command_answered"] = unknown.status_code == 200 and "do not know" in unknown.text
    replay = command("/ask", "1.replayed")
    for _ in range(2):
        statuses.append((await _post(http, replay, "application/x-www-form-urlencoded")).status_code)
    await fake.wait_for("response_url", lambda c: c.args.get("name") == "1.replayed", timeout=60)
    await asyncio.sleep(2)  # room for a second answer, which must not come
    handled["replayed_ask_answered_once"] = len([c for c in fake.calls("response_url")
                                                 if c.args.get("name") == "1.replayed"]) == 1
    handled["bot_mention_not_answered"] = not fake.thread("C0GENERAL", from_bot["ts"])
    return {"payloads": len(statuses), "server_errors": sum(s >= 500 for s in statuses), "handled": handled}


def channel_writes(fake: FakeSlackServer, channel: str) -> dict[str, Any]:
    """chat.update calls in `channel`: the most in any 60 s, and the rate while answers streamed."""
    times = sorted(c.at for c in fake.calls("chat.update") if c.args.get("channel") == channel)
    most = max((sum(1 for t in times if start <= t < start + 60) for start in times), default=0)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {"chat_update_calls": len(times), "max_in_any_60_s": most,
            "per_minute_while_streaming": round((len(times) - 1) / span * 60, 1) if span else None}


async def run(base_url: str, fake: FakeSlackServer, events: int, concurrency: int) -> tuple[list[dict[str, Any]],
                                                                                           dict[str, Any]]:
    import httpx

    results: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _one_event(http, fake, QUESTIONS[0], "U0WARMUP")  # model, indexes, first auth.test
        hostile = await _hostile(http, fake)
        fake.reset()  # the waves' channel figures start here
        for start in range(0, events, concurrency):
            wave = range(start, min(events, start + concurrency))
            results += await asyncio.gather(*(
                _one_event(http, fake, QUESTIONS[i % len(QUESTIONS)], f"U{i:08d}") for i in wave))
    _edits(fake, results)
    return results, hostile


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "max": round(max(values), 1)}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"] is not None:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    gaps = [r["min_gap_s"] for r in ok if r.get("min_gap_s") is not None]
    return {
        "events": len(results), "answered": len(ok), "errors": errors,
        "ack_ms": _stats([r["ack_ms"] for r in ok]),
        "eyes_ms": _stats([r["eyes_ms"] for r in ok]),
        "placeholder_ms": _stats([r["placeholder_ms"] for r in ok]),
        "answer_ms": _stats([r["done_ms"] for r in ok]),
        "updates_per_answer": {"mean": round(statistics.mean(r["updates"] for r in ok), 1) if ok else None,
                               "max": max((r["updates"] for r in ok), default=None)},
        "min_seconds_between_updates": round(min(gaps), 3) if gaps else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=5, help="events sent at the same moment")
    parser.add_argument("--tokens", type=int, default=150, help="tokens in each fake LLM answer")
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--slack-latency-ms", type=float, default=0.0, help="time each fake Web API call takes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    groq = FakeGroqServer(token_delay=args.token_ms / 1000, first_token_delay=args.first_token_ms / 1000,
                          reply=fake_llm_reply(args.tokens))
    slack = FakeSlackServer(latency=args.slack_latency_ms / 1000)
    groq.start()
    slack.start()
    try:
        with tempfile.TemporaryDirectory(prefix="lorebot-slack-bench-") as tmp:
            site = make_site(Path(tmp) / "data", users=(), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=groq.base_url,
                             GROQ_TIMEOUT="120", GROQ_MAX_RETRIES="0", CHAT_RATE_LIMIT_CONVERSATION="0")
            daphne = start_daphne(site, name="slack-bench", SLACK_BOT_TOKEN="xoxb-bench",
                                  SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=slack.api_url,
                                  SLACK_RATE_LIMIT_USER="0")
            pid = daphne.process.pid
            try:
                results, hostile = asyncio.run(run(daphne.http_url, slack, args.events, args.concurrency))
                channel = channel_writes(slack, "C0GENERAL")
                # One process from the first payload to the last: it never exited, so it was never restarted.
                restarts = 0 if daphne.process.poll() is None and daphne.process.pid == pid else 1
            finally:
                daphne.stop()
    finally:
        slack.stop()
        groq.stop()
    summary = summarize(results)
    report = {"llm": {"tokens": args.tokens, "token_ms": args.token_ms, "first_token_ms": args.first_token_ms},
              "concurrency": args.concurrency, **summary, "answers_lost": summary["events"] - summary["answered"],
              "process_restarts": restarts, "channel": channel, "hostile": hostile,
              "events_handled": summary["events"] + 1 + hostile["payloads"]}  # + the warm-up event
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"events={report['events']} answered={report['answered']} errors={report['errors'] or 0} "
              f"concurrency={args.concurrency}")
        for name in ("ack_ms", "eyes_ms", "placeholder_ms", "answer_ms"):
            s = report[name]
            print(f"  event → {name[:-3]:12} p50={s['p50']} ms  p95={s['p95']} ms  max={s['max']} ms")
        u = report["updates_per_answer"]
        print(f"  chat.update per answer: mean={u['mean']} max={u['max']}; "
              f"shortest gap between two updates of one message: {report['min_seconds_between_updates']} s")
        c = report["channel"]
        print(f"  one channel, {args.concurrency} answers at once: {c['chat_update_calls']} chat.update, "
              f"at most {c['max_in_any_60_s']} in any 60 s, {c['per_minute_while_streaming']}/min while streaming")
        h = report["hostile"]
        print(f"  events handled={report['events_handled']} (hostile payloads={h['payloads']}, "
              f"5xx={h['server_errors']}, {h['handled']}) answers lost={report['answers_lost']} "
              f"process restarts={report['process_restarts']}")
    ok = all(report["hostile"]["handled"].values()) and not report["hostile"]["server_errors"]
    return 0 if not report["errors"] and ok and not report["process_restarts"] else 1


if __name__ == "__main__":
    sys.exit(main())
