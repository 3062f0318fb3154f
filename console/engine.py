"""The process-wide engine, built once from Django settings."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from ragcore import Engine, RagSettings
from ragcore.settings import MB


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
