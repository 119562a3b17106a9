"""End-to-end fine-tuning (``train.finetune``): the learning-rate groups of the poster and fused stages, and
the decode workers of posters read per batch.

Pretrained parts learn at discriminative rates (ULMFiT): a backbone's top layer group at
``train.lr * train.backbone_lr_factor``, each group below ``train.backbone_lr_decay`` times slower (the
AWD-LSTM's layers: ``text.lstm.lr_decay``). A backbone whose BatchNorm fine-tunes frozen (EfficientNet)
keeps those layers out of every group (``encoders.image.set_train_mode``).
"""
from __future__ import annotations

import random

import torch
from torch import nn

from .. import distributed as dist
from ..encoders.inputs import effective_workers
from ..models import FusedModel, SingleModel, TextPooler


def encoder_groups(layer_groups, top_lr: float, decay: float, n_open: int | None = None) -> list[dict]:
    """Discriminative learning rates: the top layer group at ``top_lr``, each group below ``decay`` times
    slower; only the top ``n_open`` groups (None: all)."""
    top = list(reversed(list(layer_groups)))[:n_open]
    return [{"params": list(grp), "lr": top_lr / decay ** k} for k, grp in enumerate(top)]


def trainable_only(model: nn.Module, groups: list[dict]) -> list[dict]:
    """Switch on gradients for exactly ``groups``' parameters, let ``model.train()`` switch off what must stay
    fixed (frozen BatchNorm of a backbone that fine-tunes that way), and drop those and empty groups."""
    for p in model.parameters():
        p.requires_grad_(False)
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    model.train()
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return [g for g in groups if g["params"]]


def poster_param_groups(model: SingleModel, tc) -> list[dict]:
    """The head at ``train.lr``; a fine-tuned backbone part below it at discriminative rates."""
    groups = [{"params": list(model.head.parameters()), "lr": tc.lr}]
    if model.encoder is not None:
        groups += encoder_groups(model.encoder.layer_groups(), tc.lr * tc.backbone_lr_factor, tc.backbone_lr_decay)
    return trainable_only(model, groups)


def fused_param_groups(fused: FusedModel, cfg, finetune: str) -> list[dict]:
    """New layers (joint head, missing-modality embeddings) at ``train.lr``; the branch bodies from the single
    models at ``lr * branch_lr_factor`` (0: frozen). Pretrained encoders inside the branches train only with
    ``train.finetune`` (the paper's third stage): the backbone part the poster model fine-tuned, and the
    AWD-LSTM (its last layer with "last_block", all of it with "all"), from ``lr * backbone_lr_factor`` down.
    Without it the AWD-LSTM, fine-tuned by gradual unfreezing, stays frozen: back-propagating through it in
    every fused epoch costs more than all other stages together on a CPU."""
    tc = cfg.train
    branch = {id(p) for p in fused.branch_parameters()}
    groups = [{"params": [p for p in fused.parameters() if id(p) not in branch], "lr": tc.lr}]
    if tc.branch_lr_factor > 0:
        groups.append({"params": list(fused.poster.body.parameters()) + list(fused.plot.body.parameters()),
                       "lr": tc.lr * tc.branch_lr_factor})
        for enc, decay in ((fused.poster.encoder, tc.backbone_lr_decay), (fused.plot.encoder, cfg.text.lstm.lr_decay)):
            if enc is None or finetune == "none":
                continue
            n_open = 1 if isinstance(enc, TextPooler) and finetune == "last_block" else None
            groups += encoder_groups(enc.layer_groups(), tc.lr * tc.backbone_lr_factor, decay, n_open)
    return trainable_only(fused, groups)


def decode_workers(inputs, cfg, seed: int) -> dict:
    """DataLoader options for a training stage: posters decoded per batch (finetune "all") use
    ``image.num_workers`` processes beside an accelerator; on a CPU they would only take the backbone's cores."""
    n = effective_workers(cfg.image.num_workers)
    if inputs.image_loader is None or n == 0 or dist.current_device().type == "cpu":
        return {}
    return {"num_workers": n, "worker_init_fn": _seed_worker, "generator": torch.Generator().manual_seed(seed + 1)}


def _seed_worker(worker_id: int) -> None:
    random.seed(torch.initial_seed() % 2**32)  # the augmentations draw from ``random``
