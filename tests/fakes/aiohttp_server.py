"""An aiohttp application on 127.0.0.1 (a free port), served by its own event loop in a daemon thread.

The fake Slack and the fake Discord are such servers: the code under test talks to them over real
sockets from its own loop, and tests drive them from theirs with `_run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from aiohttp import web


class ThreadedAiohttpServer:
    thread_name = "fake-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def close_connections(self) -> None:
        """Closes the open WebSockets before the server stops (aiohttp would wait for them)."""

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        if self._loop is None:
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None
        self._port = 0

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Runs `coro` on the server's loop and returns its result (from a test's thread)."""
        assert self._loop is not None, f"{type(self).__name__} is not running; call start() first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()
