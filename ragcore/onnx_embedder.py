"""The embedding model run by onnxruntime, tokenized by `tokenizers`: no torch in the process."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ragcore.onnx_export import ModelFiles


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxEmbedder:
    """Embeds with an exported ONNX model; the vectors match sentence-transformers' (pooled, normalized).

    Token counts come from the model's own tokenizer.json, untruncated and without special
    tokens, exactly as `SentenceTransformerEmbedder.count_tokens` counts them, so chunks
    are cut in the same places whichever backend is configured.
    """

    loaded = True  # the session is built in __init__

    def __init__(self, files: ModelFiles, onnx_file: Path, *, name: str, threads: int = 0) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self.onnx_file = onnx_file
        self._max_seq_length = files.max_seq_length
        self._threads = threads or _cores()
        # A query: every core for the one text. No spin-waiting between operators: in a web process the
        # event loop needs the cores the moment a query is done (torch's spinning OpenMP threads
        # made queries 5-15x slower on a busy machine).
        self._session = self._new_session(self._threads)
        self._parallel: tuple[Any, ThreadPoolExecutor] | None = None  # see `embed`
        self._parallel_lock = threading.Lock()
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._dimension = int(self._session.get_outputs()[0].shape[-1])
        # Two tokenizers: truncation is a setting of the object, and counting must not truncate.
        self._counter = Tokenizer.from_file(str(files.tokenizer_file))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._encoder = Tokenizer.from_file(str(files.tokenizer_file))
        self._encoder.enable_truncation(files.max_seq_length)
        self._encoder.no_padding()

    def _new_session(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])

    def _runs_at_once(self) -> tuple[Any, ThreadPoolExecutor]:
        """A one-thread session and a thread per core to run it, made when several texts first come."""
        with self._parallel_lock:
            if self._parallel is None:
                self._parallel = (self._new_session(1),
                                  ThreadPoolExecutor(self._threads, thread_name_prefix="onnx-embed"))
            return self._parallel

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads before truncating, less its two special tokens."""
        return self._max_seq_length - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One model run per text; several texts run side by side, one per core, each on one thread.

        Measured on 2 cores, for the int8 model: a text alone is ~3x faster than in a padded batch
        of 4-32 (passages and short queries alike), and only alone is its vector independent of
        its neighbours, since dynamic quantization scales each activation tensor by its whole range.
        Two one-thread runs at once encode chunk-sized texts ~28 % faster than one run at a time on
        both cores (41 against 32 texts/s: no waiting between the threads of each operator), and
        give the same vectors.
        """
        encodings = self._encoder.encode_batch(list(texts))
        out = np.empty((len(encodings), self._dimension), dtype=np.float32)
        if len(encodings) > 1 and self._threads > 1:
            session, pool = self._runs_at_once()
            for row, vector in enumerate(pool.map(partial(self._run, session), encodings)):
                out[row] = vector
        else:
            for row, encoding in enumerate(encodings):
                out[row] = self._run(self._session, encoding)
        return out

    def _run(self, session: Any, encoding: Any) -> np.ndarray:
        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64)}
        vector: np.ndarray = session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0][0]
        return vector

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several queries in one call (the QueryBatcher's); a query is embedded like a passage."""
        return self.embed(texts)
