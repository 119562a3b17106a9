"""Cross-fitted fold models merged into one ensemble model of the same architecture.

K fold models of M members each are exactly one model of K * M members (``heads.PaperHead``): member
``k * M + j`` is fold k's member j, a branch's 'absent' embedding is the folds' embeddings side by side (one
chunk per member), and the mean over all members' logits is the mean over the folds' own means. So the bundle,
prediction, export and explanations serve a cross-fitted model as they serve any ensemble. The one part that is
averaged rather than stacked is a single model's ``prior_logits`` (what it answers for a title without its
input): each fold model answers its own prior there, and the ensemble answers their mean.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import GenreFusionError

_MEMBER = re.compile(r"\.members\.(\d+)(?=\.)")


def merge_fold_models(folds: list[nn.Module], merged: nn.Module, members: int) -> nn.Module:
    """Load ``folds`` (models of ``members`` members each) into ``merged`` (the same architecture with
    ``len(folds) * members`` members); returns ``merged``. Parts that are neither per member nor averaged (a
    shared frozen encoder) must be equal across folds."""
    states = [f.state_dict() for f in folds]
    out = {}
    for key, target in merged.state_dict().items():
        m = _MEMBER.search(key)
        if m is not None:
            k, j = divmod(int(m.group(1)), members)
            src = key[:m.start()] + (f".members.{j}" if members > 1 else "") + key[m.end():]
            out[key] = states[k][src]
        elif key.endswith("missing"):
            out[key] = torch.cat([s[key] for s in states])
        elif key.endswith("prior_logits"):
            out[key] = torch.stack([s[key] for s in states]).mean(0)
        else:
            if any(not torch.equal(s[key], states[0][key]) for s in states[1:]):
                raise GenreFusionError(f"cross-fitting: the fold models differ in {key!r}, which cannot be merged "
                                       "(a trained encoder): use train.crossfit = 0")
            out[key] = states[0][key]
        if out[key].shape != target.shape:
            raise GenreFusionError(f"cross-fitting: {key!r} of the folds has shape {tuple(out[key].shape)}, the "
                                   f"merged model {tuple(target.shape)}")
    merged.load_state_dict(out, strict=True)
    return merged
