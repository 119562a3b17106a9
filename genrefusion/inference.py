"""Scoring titles with trained models: what training, evaluation, prediction, export and serving share.

``Batcher`` gathers a batch of rows from ``Inputs`` (features of the model's text route), ``model_logits``
dispatches on the model kind, ``score_loader`` / ``predict_rows`` run the models in order, and
``bundle_encoders`` builds the encoders a trained bundle names.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from . import distributed as dist
from .encoders.inputs import InputEncoders, Inputs
from .models import FusedModel

log = logging.getLogger("genrefusion.inference")


class RowSet(torch.utils.data.Dataset):
    """Row indices; the collate function gathers features from the in-memory tensors (cheap)."""

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return int(self.rows[i])


class Batcher:
    """Collate row indices into a batch dict: labels, mask and the inputs of the chosen text route."""

    def __init__(self, inputs: Inputs, Y=None, M=None, text_route: str | None = None, max_len: int = 200):
        self.inputs, self.route, self.max_len = inputs, text_route, max_len
        self.Y = torch.from_numpy(np.asarray(Y, np.float32)) if Y is not None else None
        self.M = torch.from_numpy(np.asarray(M, np.float32)) if M is not None else None
        self.augment = False  # posters decoded per batch get the training augmentations

    def for_training(self) -> "Batcher":
        b = copy.copy(self)
        b.augment = True
        return b

    @classmethod
    def for_spec(cls, spec: dict, inputs: Inputs, Y=None, M=None) -> "Batcher":
        """The batcher of a bundle's models (``spec``: the bundle's architecture spec)."""
        return cls(inputs, Y, M, spec.get("text_route"), spec.get("lstm", {}).get("max_len", 200))

    def __call__(self, rows):
        idx = torch.as_tensor(rows, dtype=torch.long)
        inp = self.inputs
        b = {"idx": idx}
        if self.Y is not None:
            b["y"], b["m"] = self.Y[idx], self.M[idx]
        if inp.image is not None:
            b["image"], b["image_present"] = inp.image[idx], inp.image_ok[idx]
            if self.augment and inp.image_views is not None:
                b["image"] = swap_views(b["image"], inp.view_index[idx], inp.image_views)
        elif inp.image_loader is not None:
            b["image"], ok = inp.image_loader(idx.tolist(), self.augment)
            b["image_present"] = inp.image_ok[idx] & ok
        else:
            b["image"], b["image_present"] = None, torch.zeros(len(idx), dtype=torch.bool)
        b["text_present"] = inp.text_ok[idx] if inp.text_ok is not None else torch.zeros(len(idx), dtype=torch.bool)
        if self.route == "minilm":
            b["text"] = inp.minilm[idx]
        elif self.route == "lstm":
            from .encoders.lstm import collate_ids

            lists = [inp.ids[i] if inp.ids[i] else [0] for i in idx.tolist()]
            ids, lengths = collate_ids(lists, self.max_len)
            b["text"] = {"ids": ids, "lengths": lengths}
        else:
            b["text"] = None
        if inp.lexical is not None:
            b["lexical"] = inp.lexical[idx]
        return b


def swap_views(image: torch.Tensor, index: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Training batches (``train.poster_views``): each row with views shows its poster itself or one of its
    ``V`` views, uniformly at random (torch's global RNG, which the training loop seeds per stage and epoch)."""
    pick = torch.randint(0, views.shape[0] + 1, (len(index),))
    use = (index >= 0) & (pick > 0)
    if not use.any():
        return image
    image = image.clone()
    image[use] = views[pick[use] - 1, index[use]]
    return image


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself: under torchrun ``model`` is a DistributedDataParallel wrapper around it."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    # dispatch on the wrapped model, call the wrapper
    net = unwrap(model)
    if isinstance(net, FusedModel):
        return model(batch["image"], batch["image_present"], batch["text"], batch["text_present"])
    if net.modality == "poster":
        return model(batch["image"], batch["image_present"])
    return model(batch["text"], batch["text_present"])


@torch.inference_mode()
def score_loader(model, loader, loss_fn=None) -> tuple[np.ndarray, float | None]:
    """Sigmoid scores for every row of ``loader`` (in order) and the mean masked loss. A model with a
    ``lexical_weight`` (set by the bundle) blends the batch's tf-idf probabilities into the rows with a plot."""
    from .models.lexical import blend

    model.eval()
    device = dist.model_device(model)
    w = getattr(unwrap(model), "lexical_weight", 0.0)
    out, total, n = [], 0.0, 0
    for batch in loader:
        batch = dist.to_device(batch, device)
        with dist.autocast(device):
            logits = model_logits(model, batch)
        if loss_fn is not None and "y" in batch:
            total += loss_fn(logits.float(), batch["y"], batch["m"]).item() * len(batch["idx"])
            n += len(batch["idx"])
        S = torch.sigmoid(logits.float()).cpu().numpy()
        if w and "lexical" in batch:
            S = blend(S, batch["lexical"].cpu().numpy(), batch["text_present"].cpu().numpy(), w)
        out.append(S)
    S = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return S, (total / n if n else None)


def row_loader(rows, batcher: Batcher, batch_size: int = 256, **kw) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(RowSet(rows), batch_size=batch_size, collate_fn=batcher, **kw)


def predict_rows(model, rows, batcher: Batcher, batch_size: int = 256) -> np.ndarray:
    S, _ = score_loader(model, row_loader(rows, batcher, batch_size, shuffle=False))
    return S


def _bundle_image_encoder(bundle):
    """The poster backbone a bundle reads through, with the weights ``Bundle.backbone_weights`` names, seen at
    the level its poster models take (pooled features, activations before the last block, or pixels)."""
    from .encoders.image import build_image_encoder, image_view
    from .errors import BundleError
    from .models.build import image_level

    weights = bundle.backbone_weights()
    img = build_image_encoder(bundle.spec["image_encoder"], weights)
    fp = bundle.config.get("image_fingerprint")
    if bundle.image_weights is None and bundle.config.get("image_backbone"):
        if img.fingerprint != bundle.config.get("image_backbone_sha"):
            raise BundleError(f"{weights}: does not match the checksum recorded in the bundle; the bundle is damaged")
        img.fingerprint = fp or img.fingerprint  # the very weights it trained with: the same feature cache
    elif fp and getattr(img, "fingerprint", fp) != fp:
        log.warning("image encoder weights differ from the ones the model was trained with (%s != %s)",
                    img.fingerprint, fp)
    return image_view(img, image_level(bundle.spec))


def bundle_encoders(bundle, encoders: dict, text_runtime: str | None = None) -> InputEncoders:
    """The encoders a bundle needs (None where it has no such input); built once and kept in ``encoders``."""
    spec = bundle.spec
    img = None
    if spec.get("image_dim"):
        img = encoders.get("image")
        if img is None:
            img = encoders["image"] = _bundle_image_encoder(bundle)
    minilm = None
    if spec.get("text_route") == "minilm":
        minilm = encoders.get("minilm")
        if minilm is None:
            from .encoders.text import MiniLMEncoder

            minilm = encoders["minilm"] = MiniLMEncoder(runtime=text_runtime)
    return InputEncoders(img, minilm, bundle.vocab if spec.get("text_route") == "lstm" else None, bundle.lexical)
