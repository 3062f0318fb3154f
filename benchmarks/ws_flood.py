"""One socket flooding /ws/chat/ with `history` frames, and what it costs everyone else.

A real daphne process answers one user's questions (the fake Groq, a short reply) while another
user's socket sends --rate frames a second for --seconds; the flooder reconnects whenever it is
closed (4429), as an attacker would. Reported, quiet and under the flood: the other user's time to
first token (p50/p95), and the daphne process's CPU seconds during the flood, with the frame limit
on (CHAT_FRAME_RATE's default) and off (0) for comparison.

    .venv/bin/python benchmarks/ws_flood.py                       # 1,000 frames/s for 5 s
    .venv/bin/python benchmarks/ws_flood.py --rate 200 --seconds 2 --questions 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply, percentile  # noqa: E402
from tests.daphne_server import Daphne, Site, make_site, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _first_tokens(server: Daphne, cookie: str, questions: int) -> list[float]:
    from websockets.asyncio.client import connect

    times = []
    async with connect(server.ws_url, origin=server.http_url, additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
                       open_timeout=60) as ws:
        for i in range(questions):
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "ask", "text": f"How do I roll back release {i}?"}))
            first = None
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "token" and first is None:
                    first = (time.perf_counter() - sent) * 1000
                if frame["type"] in ("done", "error"):
                    break
            if first is not None:
                times.append(first)
    return times


async def _flood(server: Daphne, cookie: str, rate: int, seconds: float, stop: asyncio.Event) -> dict[str, int]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    counts = {"sent": 0, "replies": 0, "connections": 0}
    frame = json.dumps({"type": "history", "conversation_id": 1})
    began = time.monotonic()
    deadline = began + seconds
    while time.monotonic() < deadline and not stop.is_set():
        try:
            async with connect(server.ws_url, origin=server.http_url, additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
                               open_timeout=60, max_queue=None) as ws:
                counts["connections"] += 1

                async def drain() -> None:
                    try:
                        async for _ in ws:
                            counts["replies"] += 1
                    except ConnectionClosed:  # 4429: the sender notices too, and reconnects
                        pass

                reader = asyncio.create_task(drain())
                while time.monotonic() < deadline:
                    await ws.send(frame)
                    counts["sent"] += 1
                    if counts["sent"] % 50 == 0:  # paced in bursts of 50: the flood's rate over its whole length
                        await asyncio.sleep(max(0.0, began + counts["sent"] / rate - time.monotonic()))
                reader.cancel()
        except (ConnectionClosed, OSError):
            continue
    return counts


async def _phase(server: Daphne, site: Site, args: argparse.Namespace, flood: bool) -> dict[str, Any]:
    cpu_before = _cpu_seconds(server.process.pid)
    stop = asyncio.Event()
    flooder = asyncio.create_task(_flood(server, site.cookie("bea"), args.rate, args.seconds, stop)) if flood else None
    if flood:
        await asyncio.sleep(0.5)  # the flood is under way before the first question
    times = await _first_tokens(server, site.cookie("ann"), args.questions)
    counts = await flooder if flooder else {}
    stop.set()
    return {"ttft_p50_ms": round(percentile(times, 50), 1), "ttft_p95_ms": round(percentile(times, 95), 1),
            "daphne_cpu_s": round(_cpu_seconds(server.process.pid) - cpu_before, 2), **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="flood frames per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the flood lasts")
    parser.add_argument("--questions", type=int, default=10, help="questions the other user asks in each phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with FakeGroqServer(token_delay=0.005, first_token_delay=0.1, reply=fake_llm_reply(20)) as fake, \
            tempfile.TemporaryDirectory() as tmp:
        site = make_site(Path(tmp) / "data", users=("ann", "bea"), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=fake.base_url,
                         GROQ_MAX_RETRIES="0", CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0")
        for label, frame_rate in (("limit on", "60/10"), ("limit off", "0")):
            server = start_daphne(site, name=label.replace(" ", "-"), CHAT_FRAME_RATE=frame_rate)
            try:
                asyncio.run(_first_tokens(server, site.cookie("ann"), 2))  # warm: model loaded, pools open
                results[label] = {"quiet": asyncio.run(_phase(server, site, args, flood=False)),
                                  "flood": asyncio.run(_phase(server, site, args, flood=True))}
            finally:
                server.stop()
    if args.json:
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, **results}, indent=1))
        return
    print(f"flood: {args.rate} history frames/s for {args.seconds:g} s; {args.questions} questions per phase")
    for label, phases in results.items():
        for phase, r in phases.items():
            extra = (f", flood sent {r['sent']} frames, {r['replies']} answered, {r['connections']} connection(s)"
                     if phase == "flood" else "")
            print(f"{label:<10} {phase:<6} TTFT p50 {r['ttft_p50_ms']} ms, p95 {r['ttft_p95_ms']} ms, "
                  f"daphne CPU {r['daphne_cpu_s']} s{extra}")


if __name__ == "__main__":
    main()
