"""The masked loss, class-balance weights and the learning-rate schedule of every training stage."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


# (gamma on positives, gamma on negatives, probability margin on negatives) of each non-BCE loss:
# focal loss (Lin et al. 2017) and asymmetric loss (Ridnik et al. 2021, their multi-label defaults)
LOSS_SHAPES = {"focal": (2.0, 2.0, 0.0), "asl": (0.0, 4.0, 0.05)}


def masked_bce(logits, y, m, pos_weight=None, kind: str = "bce", smoothing: float = 0.0) -> torch.Tensor:
    """BCE over labelled entries only: an unlabelled genre is neither positive nor negative. Logits
    ``[members, B, G]`` (an ensemble while training): the mean of the members' losses. ``kind`` "focal" or
    "asl" down-weights easy entries (each side's ``(1 - p_correct) ** gamma``; ASL also discards negatives
    scored below its margin), with ``pos_weight`` still on the positives. ``smoothing`` eps: targets
    ``y (1 - eps) + eps / 2``."""
    if logits.dim() == y.dim() + 1:
        y, m = y.expand_as(logits), m.expand_as(logits)
    if smoothing:
        y = y * (1 - smoothing) + smoothing / 2
    if kind == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    else:
        g_pos, g_neg, clip = LOSS_SHAPES[kind]
        p = torch.sigmoid(logits)
        pos = F.logsigmoid(logits) * (1 - p).pow(g_pos)
        if pos_weight is not None:
            pos = pos * pos_weight
        p_neg = (p - clip).clamp_min(0) if clip else p
        neg = torch.log((1 - p_neg).clamp_min(1e-8)) if clip else F.logsigmoid(-logits)
        loss = -(y * pos + (1 - y) * neg * p_neg.pow(g_neg))
    return (loss * m).sum() / m.sum().clamp_min(1.0)


def compute_pos_weight(Y, M, mode: str, cap: float) -> torch.Tensor | None:
    if mode == "none":
        return None
    pos = (Y * M).sum(0)
    neg = ((1 - Y) * M).sum(0)
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    w = np.sqrt(ratio) if mode == "sqrt" else ratio
    return torch.from_numpy(np.clip(w, 1.0, cap).astype(np.float32))


def loss_mask(Y, M, ds_index, train_rows, mode: str) -> np.ndarray:
    """The loss's per-entry weights: ``M`` (1 = labelled), with each dataset's negatives scaled by its label
    density (mean genres per training title with any genre) over the densest dataset's, for ``"density"``."""
    W = np.asarray(M, np.float32).copy()
    if mode == "none":
        return W
    Y, ds_index, rows = np.asarray(Y), np.asarray(ds_index), np.asarray(train_rows)
    labelled = rows[Y[rows].sum(1) > 0]
    density = {d: Y[labelled[ds_index[labelled] == d]].sum(1).mean() for d in np.unique(ds_index[labelled])}
    top = max(density.values(), default=1.0)
    scale = np.ones(len(W), np.float32)  # per row: its dataset's density over the densest; positives keep 1
    for d, v in density.items():
        scale[ds_index == d] = v / top
    return W * np.where(Y == 0, scale[:, None], 1.0).astype(np.float32)


def make_scheduler(optimizer, max_lr: list[float], total_steps: int):
    """One-cycle schedule; a constant rate when there are too few steps for one.

    OneCycleLR divides by the length of each phase, so its warm-up must span at least two steps
    (``pct_start * total_steps - 1 >= 1``), else it raises ZeroDivisionError (tiny configs)."""
    if total_steps < 3:
        for group, lr in zip(optimizer.param_groups, max_lr):
            group["lr"] = lr
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    # 2.5 steps rather than 2 keeps the phase boundary clear of float rounding
    pct = min(max(0.25, 2.5 / total_steps), 0.9)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct)
