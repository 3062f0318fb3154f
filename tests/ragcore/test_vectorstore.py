"""The dense index: its HNSW search finds what exact search finds, and its write path."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings

from ragcore.settings import RagSettings
from ragcore.types import Chunk, chunk_id_for
from ragcore.vectorstore import VectorStore
from tests.support import DEPLOY, make_engine

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


def test_a_store_that_kept_chunk_text_as_chroma_documents_still_answers_with_it(tmp_path: Path) -> None:
    # Stores written before the text moved into the metadata hold it in chroma's `documents`.
    engine = make_engine(tmp_path / "data")
    engine.ingest_file(_write(tmp_path, "deploy.md", DEPLOY))
    collection = engine.store._collection
    got = collection.get(include=["embeddings", "metadatas"])
    metas = [{k: v for k, v in m.items() if k != "text"} for m in got["metadatas"]]
    texts = [m["text"] for m in got["metadatas"]]
    collection.upsert(ids=got["ids"], embeddings=got["embeddings"], metadatas=metas, documents=texts)

    retrieval = engine.retrieve("How do I roll back a release?", mode="dense")

    assert "rollback pipeline" in retrieval.chunks[0].chunk.text


def test_deleting_a_document_also_removes_chunks_that_reached_only_the_vector_index(tmp_path: Path) -> None:
    # A crash between the two index writes of a longer version leaves its extra chunks in Chroma only.
    engine = make_engine(tmp_path / "data")
    result = engine.ingest_file(_write(tmp_path, "deploy.md", DEPLOY))
    orphan = Chunk(chunk_id_for(result.document_id, result.chunks), result.document_id, result.chunks,
                   "Rollback pipeline: an orphan chunk of a longer version.", "Deployment", checksum="x")
    engine.store.upsert([orphan], engine.embedder.embed([orphan.index_text]))

    assert engine.delete_document(result.document_id) == result.chunks + 1
    assert engine.store.count() == 0
    assert engine.retrieve("rollback pipeline", mode="dense").chunks == ()


def test_a_shorter_version_leaves_no_chunk_of_the_longer_one(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data", chunk_tokens=40, chunk_overlap_tokens=0)
    path = _write(tmp_path, "long.md", "# Long\n\n" + "\n\n".join(f"Paragraph {i} about rollback number {i}." * 3 for i in range(12)))
    longer = engine.ingest_file(path)
    path.write_text("# Long\n\nOne short paragraph about rollback.\n")
    shorter = engine.ingest_file(path)

    assert longer.chunks > shorter.chunks == 1
    assert engine.store.count() == 1
    assert engine.document_status(shorter.document_id).dense_chunks == 1


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path
