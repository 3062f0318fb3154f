"""The process-wide engine, built once from Django settings."""

from __future__ import annotations

import threading

from django.conf import settings
from django.db import connections

from ragcore import Engine, RagSettings
from ragcore.settings import MB

_engine: Engine | None = None
_lock = threading.Lock()


def database_dsn() -> str:
    """The default database as a libpq DSN when it is PostgreSQL (the one Django uses, test databases
    included), else "": the keyword index shares it at scale."""
    db = connections["default"].settings_dict
    if "postgresql" not in db["ENGINE"]:
        return ""
    from psycopg.conninfo import make_conninfo

    parts = {"dbname": db.get("NAME"), "user": db.get("USER"), "password": db.get("PASSWORD"),
             "host": db.get("HOST"), "port": db.get("PORT")}
    return make_conninfo("", **{k: str(v) for k, v in parts.items() if v})


def rag_settings() -> RagSettings:
    """Django settings → the engine's one settings object."""
    return RagSettings(
        data_dir=settings.RAG_DATA_DIR,
        keyword_store=settings.RAG_KEYWORD_STORE,
        database_url=database_dsn(),
        chroma_url=settings.CHROMA_URL,
        chroma_collection=settings.CHROMA_COLLECTION,
        embedding_model=settings.RAG_EMBEDDING_MODEL,
        embedding_backend=settings.RAG_EMBEDDING_BACKEND,
        embedding_cache_dir=settings.RAG_EMBEDDING_CACHE_DIR,
        chunk_tokens=settings.RAG_CHUNK_TOKENS,
        chunk_overlap_tokens=settings.RAG_CHUNK_OVERLAP_TOKENS,
        max_file_bytes=settings.RAG_MAX_FILE_MB * MB,
        top_k=settings.RAG_TOP_K,
        fusion=settings.RAG_FUSION,
        hybrid_alpha=settings.RAG_HYBRID_ALPHA,
        history_turns=settings.RAG_HISTORY_TURNS,
        abstain_threshold=settings.RAG_ABSTAIN_THRESHOLD,
        groq_api_key=settings.GROQ_API_KEY,
        groq_model=settings.GROQ_MODEL,
        groq_base_url=settings.GROQ_BASE_URL,
        groq_timeout=settings.GROQ_TIMEOUT,
        groq_max_retries=settings.GROQ_MAX_RETRIES,
        llm_provider=settings.LLM_PROVIDER,
        llm_base_url=settings.LLM_BASE_URL,
        llm_api_key=settings.LLM_API_KEY,
        llm_model=settings.LLM_MODEL,
        llm_timeout=settings.LLM_TIMEOUT,
        llm_max_retries=settings.LLM_MAX_RETRIES,
    )


def get_engine() -> Engine:
    """The process's one engine (one model, one pair of indexes), built on first use."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = Engine(rag_settings())
    return _engine


def set_engine(engine: Engine | None) -> None:
    """Replaces the process's engine; None makes the next `get_engine()` build a new one from the settings."""
    global _engine
    with _lock:
        _engine = engine
