"""The process-wide engine, built once from Django settings, and its background warm-up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache

import structlog
from django.conf import settings

from ragcore import Engine, RagSettings
from ragcore.settings import MB

log = structlog.get_logger(__name__, component="warmup")


def rag_settings() -> RagSettings:
    """Django settings → the engine's one settings object."""
    return RagSettings(
        data_dir=settings.RAG_DATA_DIR,
        chroma_url=settings.CHROMA_URL,
        chroma_collection=settings.CHROMA_COLLECTION,
        embedding_model=settings.RAG_EMBEDDING_MODEL,
        chunk_tokens=settings.RAG_CHUNK_TOKENS,
        chunk_overlap_tokens=settings.RAG_CHUNK_OVERLAP_TOKENS,
        max_file_bytes=settings.RAG_MAX_FILE_MB * MB,
        top_k=settings.RAG_TOP_K,
        fusion=settings.RAG_FUSION,
        hybrid_alpha=settings.RAG_HYBRID_ALPHA,
        history_turns=settings.RAG_HISTORY_TURNS,
        groq_api_key=settings.GROQ_API_KEY,
        groq_model=settings.GROQ_MODEL,
        groq_base_url=settings.GROQ_BASE_URL,
        groq_timeout=settings.GROQ_TIMEOUT,
        groq_max_retries=settings.GROQ_MAX_RETRIES,
    )


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return Engine(rag_settings())


# -- warm-up ----------------------------------------------------------------------------------
# A server accepts connections at once and loads the model and opens the indexes in a background
# thread (started by console.asgi); until that is done, /health/ready says "warming" and questions
# wait for it (console.chat) instead of each paying the ~10 s model load, or failing.


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
        from console.ops.health import check_llm

        log.info("warmup.started")
        try:
            engine = get_engine()
            steps: dict[str, Callable[[], object]] = {
                "embedding_model": lambda: engine.embedder.embed_query("warm up"),
                "vector_store": lambda: engine.store.count(),
                "bm25_index": lambda: len(engine.bm25),
                "llm": lambda: check_llm(engine, fresh=True),
            }
            for name, step in steps.items():
                try:
                    step()
                except Exception as exc:  # a dependency that is down is readiness's news, not a crash
                    self.errors[name] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the engine itself could not be built (bad settings)
            self.errors["engine"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.monotonic() - (self.started_at or time.monotonic())
            self.done.set()
            log.info("warmup.finished", seconds=round(self.seconds, 2), errors=self.errors or None)

    def wait(self, timeout: float) -> bool:
        """True at once unless a warm-up is running; then whether it finished within `timeout`."""
        return self.state != "warming" or self.done.wait(timeout)

    async def await_done(self, timeout: float) -> bool:
        """`wait` for the event loop: polls rather than holding a worker thread per waiting question."""
        import asyncio

        deadline = time.monotonic() + timeout
        while self.state == "warming":
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


warmup = Warmup()


def start_warmup() -> bool:
    """Warms this process's engine in the background (servers call it once at start)."""
    return warmup.start()


def wait_for_warmup(timeout: float) -> bool:
    """Blocks until a running warm-up is done (True at once when none runs); False on timeout."""
    return warmup.wait(timeout)


async def await_warmup(timeout: float) -> bool:
    """`wait_for_warmup` for async callers."""
    return await warmup.await_done(timeout)
