"""How many of Lorebot's files and file-to-file calls one web question crosses, measured by tracing it.

One question goes over /ws/chat/ (the real ASGI stack, WebsocketCommunicator) to an engine answering
through the real groq SDK and the fake Groq, and every Python call is recorded while it runs, in
every thread. Counted: the distinct files of ragcore/, console/ and bots/ whose code ran ("files"),
and the distinct (caller file, callee file) pairs among them ("hops"), the caller being the nearest
frame of ours above the call (library frames in between, such as channels or asgiref, are skipped).
Also printed: pairs of files that call each other both ways, and every call across files, repeats
included (a token's trip from the LLM to the socket crosses several). Tests' fakes and helpers are not
counted. Run it from a checkout: `python benchmarks/question_path.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OURS = tuple(str(ROOT / package) + os.sep for package in ("ragcore", "console", "bots"))


class Tracer:
    """Records the files of ours that run and the calls between them, from every thread."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.hops: set[tuple[str, str]] = set()
        self.crossings = 0  # every call from one of our files into another, repeats included
        self.on = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call":
            return
        callee = frame.f_code.co_filename
        if not callee.startswith(OURS):
            return
        self.files.add(callee)
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(OURS):
            caller = caller.f_back
        if caller is not None and caller.f_code.co_filename != callee:
            self.hops.add((caller.f_code.co_filename, callee))
            self.crossings += 1

    def install(self) -> None:
        sys.setprofile(self)
        threading.setprofile(self)


def _relative(path: str) -> str:
    return str(Path(path).relative_to(ROOT))


async def ask_once(tracer: Tracer) -> list[dict[str, Any]]:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from console.asgi import application

    def session_cookie() -> bytes:
        user = get_user_model().objects.create_user("ann", password="pw")
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        return f"sessionid={session.session_key}".encode()

    cookie = await sync_to_async(session_cookie)()
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)])
    assert (await comm.connect(timeout=10))[0]
    frames = []
    tracer.on = True
    await comm.send_json_to({"type": "ask", "text": "How do I roll back a release?"})
    while True:
        frame = await comm.receive_json_from(timeout=30)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            break
    tracer.on = False
    await comm.disconnect()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the files and hops as JSON")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="lorebot-path-"))
    os.environ.update(DJANGO_SETTINGS_MODULE="console.settings", RAG_DATA_DIR=str(data), WARMUP_ON_START="False",
                      LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from tests.fakes.groq import FakeGroqServer
    from tests.support import DEPLOY, make_engine

    call_command("migrate", verbosity=0)
    with FakeGroqServer() as fake:
        engine = make_engine(data, groq_api_key="gsk-test", groq_base_url=fake.base_url)
        (data / "deploy.md").write_text(DEPLOY)
        engine.ingest_file(data / "deploy.md")
        try:  # the engine the chat service uses: console.engine.set_engine, or the older module attribute
            from console.engine import set_engine

            set_engine(engine)
        except ImportError:
            import console.chat

            console.chat.get_engine = lambda: engine  # type: ignore[attr-defined]
        tracer = Tracer()
        tracer.install()
        frames = asyncio.run(ask_once(tracer))
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert frames[-1]["type"] == "done", frames[-1]
    files = sorted(_relative(f) for f in tracer.files)
    hops = sorted((_relative(a), _relative(b)) for a, b in tracer.hops)
    both_ways = sorted({tuple(sorted(h)) for h in hops if (h[1], h[0]) in hops})
    if args.json:
        print(json.dumps({"files": files, "hops": hops, "both_ways": both_ways, "crossings": tracer.crossings}, indent=1))
        return
    print(f"one web question (answered by {frames[-1]['provider']}): {len(files)} files, {len(hops)} hops "
          f"({len(both_ways)} pairs of files calling each other), {tracer.crossings} calls across files")
    for path in files:
        print(f"  {path}")
    for a, b in hops:
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
