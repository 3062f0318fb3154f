"""A server's warm-up: the model loaded and the indexes opened in a background thread, started by console.asgi.

A server accepts connections at once; until the warm-up is done, /health/ready says "warming" and
questions wait for it (console.chat) instead of each paying the ~10 s model load, or failing.
Processes that never warm up (workers, `manage.py ask`, the bots) load the model on first use.
"""

from __future__ import annotations

import asyncio
import threading
import time

import structlog

from console.engine import get_engine

log = structlog.get_logger(__name__, component="warmup")


class Warmup:
    """One process's warm-up: which steps failed, and an event set when every step has been tried."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.seconds: float | None = None
        self.errors: dict[str, str] = {}
        self.done = threading.Event()
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """idle (never started: a CLI, a worker), warming, or done (whatever the steps' outcome)."""
        if self.done.is_set():
            return "done"
        return "warming" if self.started_at is not None else "idle"

    def start(self) -> bool:
        """Starts the background thread once; returns False when it already ran or runs."""
        with self._lock:
            if self.started_at is not None:
                return False
            self.started_at = time.monotonic()
        threading.Thread(target=self._run, name="lorebot-warmup", daemon=True).start()
        return True

    def _run(self) -> None:
        log.info("warmup.started")
        try:
            # The engine's own check list, loading as it goes; a dependency that is down is
            # readiness's news, not a crash.
            checks = get_engine().check_health(warm=True, fresh=True)
            self.errors.update({name: str(c.detail) for name, c in checks.items() if c.status == "error"})
        except Exception as exc:  # the engine itself could not be built (bad settings)
            self.errors["engine"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.monotonic() - (self.started_at or time.monotonic())
            self.done.set()
            log.info("warmup.finished", seconds=round(self.seconds, 2), errors=self.errors or None)

    async def wait(self, timeout: float) -> bool:
        """True at once unless a warm-up is running; then whether it finished within `timeout`.

        Polls rather than holding a worker thread per waiting question.
        """
        deadline = time.monotonic() + timeout
        while self.state == "warming":
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


warmup = Warmup()


def current() -> Warmup:
    """This process's warm-up."""
    return warmup


def start_warmup() -> bool:
    """Warms this process's engine in the background (servers call it once at start)."""
    return warmup.start()


async def await_warmup(timeout: float) -> bool:
    """Waits until a running warm-up is done (True at once when none runs); False on timeout."""
    return await warmup.wait(timeout)
