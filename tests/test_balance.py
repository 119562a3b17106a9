"""The fused stage's balanced sampling of input combinations (train.fused_balance)."""
from __future__ import annotations

import numpy as np
import torch

from genrefusion.train import combination_weights, epoch_rows


def test_combination_weights_balance_the_inputs():
    # 900 poster-only, 90 plot-only, 10 both (the shape of the shipped data)
    img = np.array([True] * 900 + [False] * 90 + [True] * 10)
    txt = np.array([False] * 900 + [True] * 90 + [True] * 10)
    rows = np.arange(1000)
    assert combination_weights(img, txt, rows, "none") is None
    w = combination_weights(img, txt, rows, "equal")
    share = [w[:900].sum(), w[900:990].sum(), w[990:].sum()]
    assert np.allclose(share, share[0])  # each combination drawn equally often
    ws = combination_weights(img, txt, rows, "sqrt")
    s = np.array([ws[:900].sum(), ws[900:990].sum(), ws[990:].sum()]) / ws.sum()
    assert s[0] > s[1] > s[2] > 10 / 1000  # in between: the big group still leads, the small one gains
    wb = combination_weights(img, txt, rows, "both")
    b = np.array([wb[:900].sum(), wb[900:990].sum(), wb[990:].sum()]) / wb.sum()
    assert np.allclose(b, [0.25, 0.25, 0.5])  # both inputs: as often as the two single-input groups together
    drawn = epoch_rows(rows, w, torch.Generator().manual_seed(0))
    again = epoch_rows(rows, w, torch.Generator().manual_seed(0))
    assert len(drawn) == 1000 and np.array_equal(drawn, again)  # same seed, same epoch on every rank
    assert 0.25 < np.isin(drawn, rows[990:]).mean() < 0.42
    assert np.array_equal(epoch_rows(rows, None, torch.Generator()), rows)
