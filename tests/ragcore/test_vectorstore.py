"""The dense index: its HNSW search finds what exact search finds, and its write path."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings

from ragcore.settings import RagSettings
from ragcore.vectorstore import VectorStore

DIMENSION = 32


def _random_unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _recall_at_10(store: VectorStore, vectors: np.ndarray, queries: np.ndarray) -> float:
    found = 0
    for q in queries:
        exact = {f"c{i}" for i in np.argsort(-(vectors @ q))[:10]}
        found += len(exact & {cid for cid, _ in store.query(q, 10)})
    return found / (10 * len(queries))


def test_a_store_built_with_a_low_search_ef_finds_the_exact_top_10_once_opened(tmp_path: Path) -> None:
    # A collection as an older Lorebot (or chroma's defaults) left it, with a deliberately low ef so
    # the difference shows on a small corpus: random vectors are the hardest case for HNSW.
    settings = RagSettings(data_dir=tmp_path)
    settings.chroma_path.mkdir(parents=True)
    client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.create_collection(
        settings.chroma_collection, embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "ef_search": 10}},
        metadata={"embedding_model": "m", "embedding_dimension": DIMENSION},
    )
    vectors = _random_unit_vectors(3000, seed=1)
    collection.add(ids=[f"c{i}" for i in range(len(vectors))], embeddings=vectors)
    queries = _random_unit_vectors(30, seed=2)

    store = VectorStore(settings, model_name="m", dimension=DIMENSION)

    assert _recall_at_10(store, vectors, queries) >= 0.98
