"""The model factory: the architecture spec a bundle stores, and the models built from it."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .fusion import FusedModel
from .heads import SingleModel, TextPooler


def model_spec(cfg, genres, image_dim: int | None, text_route: str | None, lstm_vocab=None) -> dict:
    """Everything needed to rebuild the models from a training ``Config`` (stored in the bundle's config.json)."""
    tc = cfg.train
    spec = {"genres": list(genres), "image_encoder": cfg.image.encoder, "image_dim": image_dim,
            "text_route": text_route, "hidden": list(tc.hidden), "dropout": tc.dropout,
            "input_dropout": tc.input_dropout, "fusion": tc.fusion, "fusion_join": tc.fusion_join,
            "finetune": tc.finetune, "members": tc.members}
    if text_route == "minilm":
        spec["text_dim"] = 384
    elif text_route == "lstm":
        lc = cfg.text.lstm
        spec["lstm"] = {"vocab_size": len(lstm_vocab), "emb_dim": lc.emb_dim, "hidden": lc.hidden,
                        "layers": lc.layers, "max_len": lc.max_len, "bptt": lc.bptt}
    return spec


def build_lstm(lstm: dict, init_vectors: torch.Tensor | None = None) -> nn.Module:
    from ..encoders.lstm import AWDLSTMEncoder

    return AWDLSTMEncoder(lstm["vocab_size"], emb_size=lstm["emb_dim"], hidden_size=lstm["hidden"],
                          n_layers=lstm["layers"], init_vectors=init_vectors)


# what the poster model reads per train.finetune: pooled features (cached), the activations before the
# backbone's last block (cached), or the preprocessed poster itself
IMAGE_LEVELS = {"none": "features", "last_block": "stem", "all": "pixels"}


def image_level(spec: dict) -> str:
    return IMAGE_LEVELS[spec.get("finetune", "none")]  # bundles from before fine-tuning read features


def build_poster_encoder(spec: dict, image_encoder=None) -> nn.Module | None:
    """The trainable backbone part a fine-tuned poster model holds (the last block, or the whole backbone), from
    ``image_encoder``'s pretrained weights or, to load a bundle into, the bare architecture; None without."""
    level = image_level(spec)
    if level == "features":
        return None
    from ..encoders.image import FullBackbone, build_image_encoder

    enc = image_encoder if image_encoder is not None else build_image_encoder(spec["image_encoder"], arch_only=True)
    return enc.top() if level == "stem" else FullBackbone(enc)


def build_single(spec: dict, modality: str, lstm_encoder: nn.Module | None = None,
                 image_encoder=None) -> SingleModel:
    G = len(spec["genres"])
    kw = dict(hidden=tuple(spec["hidden"]), dropout=spec["dropout"], input_dropout=spec["input_dropout"],
              members=spec.get("members", 1))  # bundles from before ensembles: one member
    if modality == "poster":
        enc = build_poster_encoder(spec, image_encoder)
        return SingleModel("poster", spec["image_dim"], G, encoder=enc, **kw)
    if spec["text_route"] == "lstm":
        # bundles from before whole-plot reading have no bptt: one pass over their first max_len tokens
        enc = TextPooler(lstm_encoder if lstm_encoder is not None else build_lstm(spec["lstm"]),
                         spec["lstm"].get("bptt"))
        return SingleModel("plot", enc.out_dim, G, encoder=enc, **{**kw, "input_dropout": 0.0})
    return SingleModel("plot", spec["text_dim"], G, **kw)


def build_fused(spec: dict, poster: SingleModel, plot: SingleModel) -> FusedModel:
    return FusedModel(poster, plot, len(spec["genres"]), tuple(spec["hidden"]), spec["dropout"], spec["fusion"],
                      spec.get("fusion_join", "heads"),  # bundles from before the choice joined at the heads
                      spec.get("members", 1))


def build_models(spec: dict, names: Sequence[str]) -> dict[str, nn.Module]:
    """Fresh models of the bundle's architecture (weights loaded by the caller)."""
    out: dict[str, nn.Module] = {}
    poster = build_single(spec, "poster") if spec.get("image_dim") else None
    plot = build_single(spec, "plot") if spec.get("text_route") else None
    if "poster" in names:
        out["poster"] = poster
    if "plot" in names:
        out["plot"] = plot
    if "fused" in names:
        out["fused"] = build_fused(spec, poster, plot)
    return out
