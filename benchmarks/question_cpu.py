"""CPU per web question, without the LLM: what one daphne process spends on a question, and where.

    .venv/bin/python benchmarks/question_cpu.py                     # 300 questions, 3 sockets
    .venv/bin/python benchmarks/question_cpu.py --distinct          # every question new (the embedding counts)
    .venv/bin/python benchmarks/question_cpu.py --profile           # and a py-spy breakdown by our function

A real daphne process (tests/daphne_server.py's site: two documents, SQLite unless --env
DATABASE_URL=…) and the fake Groq server, which answers at once (first token after 0 ms, --tokens tokens
with no delay), so nothing waits on the LLM and its own work is in this process, not daphne's. Clients
(another process) ask --questions questions over --concurrency sockets, each socket asking its next
question when the last one is done. Reported: daphne's CPU time (utime + stime of all its threads, from
/proc) over the run, less its idle rate, per question. CPU time rather than wall time: other work on a
shared machine slows wall time but barely changes it.

With --profile, py-spy samples daphne's threads while they run (not while they wait) and each sample
is charged to the innermost frame of Lorebot's own code on its stack (ragcore/, console/, bots/), so a
Django query made by the chat service counts as the service's function; samples with none of our frames
are charged to the library at the leaf (daphne/twisted framing, asyncio, onnxruntime …).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import fake_llm_reply  # noqa: E402
from tests.daphne_server import make_site, start_daphne  # noqa: E402
from tests.fakes.groq import FakeGroqServer  # noqa: E402

QUESTIONS = ("How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?")
OURS = re.compile(r"\((?:.*/)?((?:ragcore|console|bots)/[\w/]+\.py):\d+\)")
# Leaves where a thread waits (py-spy counts some of these waits as running).
IDLE = ("EpollSelector.select (selectors.py", "_worker (concurrent/futures/thread.py:81)", "Condition.wait (threading.py",
        "Event.wait (threading.py", "QueryBatcher._work (ragcore/embeddings.py")
LIBRARY = re.compile(r"\((?:.*/site-packages/|.*/lib/python3\.\d+/)?([\w.]+)[/.]")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> Counter[str]:
    """utime and stime so far of `pid`'s threads (clock ticks), by kind: "python user", "python sys" (threads named after
    the process, i.e. Python's own: the interpreter does not name its threads), "<name> user/sys" (native
    threads that name themselves, e.g. Chroma's tokio workers)."""
    found: Counter[str] = Counter()
    process = Path(f"/proc/{pid}/comm").read_text().strip()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
        kind = "python" if name == process else re.sub(r"[-_]?\d+$", "", name)
        found[f"{kind} user"] += int(fields[11])  # clock ticks: a Counter counts in ints
        found[f"{kind} sys"] += int(fields[12])
    return found


async def _socket(url: str, origin: str, cookie: str, questions: list[str]) -> list[str]:
    """One socket asking its questions one after another; the errors it saw."""
    from websockets.asyncio.client import connect

    errors = []
    async with connect(url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=60,  # type: ignore[arg-type]
                       max_queue=None) as ws:
        for text in questions:
            await ws.send(json.dumps({"type": "ask", "text": text}))
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "error" and frame.get("fatal", True):
                    errors.append(frame.get("code", "error"))
                    break
                if frame["type"] == "done":
                    break
    return errors


def _clients(args: tuple[str, str, str, list[list[str]]]) -> list[str]:
    url, origin, cookie, per_socket = args

    async def run() -> list[str]:
        found = await asyncio.gather(*(_socket(url, origin, cookie, qs) for qs in per_socket))
        return [e for errors in found for e in errors]

    return asyncio.run(run())


def ask(url: str, origin: str, cookie: str, questions: list[str], sockets: int) -> list[str]:
    """Asks every question (in a client process of its own), `sockets` at a time; returns the errors."""
    per_socket = [questions[i::sockets] for i in range(sockets)]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_clients, ((url, origin, cookie, per_socket),))


def questions(n: int, distinct: bool, offset: int = 0) -> list[str]:
    return [f"{QUESTIONS[i % 3][:-1]} (ticket {offset + i})?" if distinct else QUESTIONS[i % 3] for i in range(n)]


def breakdown(raw: Path) -> tuple[Counter[str], int]:
    """py-spy's collapsed stacks → samples per bucket (see the module docstring), and the total."""
    buckets: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(IDLE):
            continue
        bucket = ""
        for frame in reversed(frames):
            match = OURS.search(frame)
            if match:
                bucket = f"{match.group(1)}:{frame.split(' (')[0].strip()}"
                break
        if not bucket:
            leaf = LIBRARY.search(frames[-1])
            bucket = f"[{leaf.group(1) if leaf else frames[-1][:40]}]"
        buckets[bucket] += int(count)
        total += int(count)
    return buckets, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=3, help="sockets asking at the same time")
    parser.add_argument("--tokens", type=int, default=20, help="tokens in each answer of the fake LLM")
    parser.add_argument("--distinct", action="store_true", help="no question asked twice (no embedding cache hits)")
    parser.add_argument("--profile", metavar="FILE", type=Path,
                        help="a py-spy breakdown, its collapsed stacks kept in FILE (needs `pip install py-spy`)")
    parser.add_argument("--top", type=int, default=25, help="buckets shown in the breakdown")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for daphne")
    args = parser.parse_args()

    fake = FakeGroqServer(token_delay=0.0, first_token_delay=0.0, reply=fake_llm_reply(args.tokens))
    fake.start()
    with tempfile.TemporaryDirectory(prefix="lorebot-cpu-bench-") as tmp:
        site = make_site(Path(tmp) / "data", users=("bench",), GROQ_API_KEY="gsk-bench", GROQ_BASE_URL=fake.base_url,
                         GROQ_TIMEOUT="60", GROQ_MAX_RETRIES="0", CHAT_RATE_LIMIT_USER="0",
                         CHAT_RATE_LIMIT_CONVERSATION="0",
                         # One session asks for all the sockets, faster than a person: the frame budget
                         # would drop its asks unread (after one too_many_frames) and the run would hang.
                         CHAT_FRAME_RATE="0", **dict(item.split("=", 1) for item in args.env))
        daphne = start_daphne(site, name="bench")
        pid, cookie, origin = daphne.process.pid, site.cookie("bench"), daphne.http_url
        profiler = None
        try:
            warm = ask(daphne.ws_url, origin, cookie, questions(20, args.distinct, offset=10**6), args.concurrency)
            idle_started, idle_cpu = time.perf_counter(), cpu_seconds(pid)
            time.sleep(2.0)
            idle_rate = (cpu_seconds(pid) - idle_cpu) / (time.perf_counter() - idle_started)
            raw = args.profile
            if raw:
                py_spy = str(Path(sys.executable).with_name("py-spy"))
                profiler = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads", "--gil",
                                             "--nonblocking", "--rate", "250", "--output", str(raw)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            started, cpu, threads = time.perf_counter(), cpu_seconds(pid), thread_cpu(pid)
            errors = ask(daphne.ws_url, origin, cookie, questions(args.questions, args.distinct), args.concurrency)
            wall = time.perf_counter() - started
            used = cpu_seconds(pid) - cpu - idle_rate * wall
            threads = thread_cpu(pid) - threads  # threads that ended during the run are missing here
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its report on Ctrl-C
                profiler.wait(timeout=120)
        finally:
            if profiler is not None and profiler.poll() is None:
                profiler.kill()
            daphne.stop()
            fake.stop()
        per_question = used * 1000 / args.questions
        tick = os.sysconf("SC_CLK_TCK")
        print(f"{args.questions} questions ({'distinct' if args.distinct else 'three shared'}), {args.concurrency} "
              f"sockets, {args.tokens}-token answers; errors: {len(warm) + len(errors)}")
        print(f"daphne CPU: {used:.2f} s over {wall:.1f} s (idle rate {idle_rate * 1000:.1f} ms/s subtracted): "
              f"**{per_question:.2f} ms per question**")
        print("by thread kind (ms per question, idle rate not subtracted): " + ", ".join(
            f"{kind} {ticks / tick * 1000 / args.questions:.2f}" for kind, ticks in threads.most_common()))
        if raw and raw.exists():
            buckets, total = breakdown(raw)
            print(f"\nbreakdown ({total} samples; ms per question = share × {per_question:.2f} ms)")
            for bucket, n in buckets.most_common(args.top):
                print(f"  {100 * n / total:5.1f} %  {per_question * n / total:6.2f} ms  {bucket}")
    return 1 if errors or warm else 0


if __name__ == "__main__":
    sys.exit(main())
