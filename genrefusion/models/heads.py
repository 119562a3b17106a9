"""The paper's classification head and the single-modality (poster / plot) models.

``PaperHead``: ``in_dim -> Linear -> [BatchNorm, Dropout, ReLU, Linear] x 2 -> G logits`` (the
paper's "linear layer followed by two custom hidden layers" with batch norm, dropout and ReLU, one
sigmoid output per genre). It is split in ``body`` (up to the last hidden activation) and ``out``
(the final Linear), because the fused model reuses the bodies of the trained single models as its
branches.

A single-modality model sees its modality for some titles only (no plot for poster-only datasets).
For a title without it, the model outputs ``prior_logits``: the log-odds of each genre's training
frequency, i.e. the best guess that uses no input. It is a buffer, not trained.
"""
from __future__ import annotations

import torch
from torch import nn

MODALITIES = ("poster", "plot")


class PaperHead(nn.Module):
    def __init__(self, in_dim: int, n_out: int, hidden=(512, 256), dropout: float = 0.4,
                 input_dropout: float = 0.0):
        super().__init__()
        h1, h2 = hidden
        self.in_dim, self.n_out, self.hidden = int(in_dim), int(n_out), (int(h1), int(h2))
        self.body = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.Linear(in_dim, h1),
            nn.BatchNorm1d(h1), nn.Dropout(dropout), nn.ReLU(inplace=True), nn.Linear(h1, h2),
            nn.BatchNorm1d(h2), nn.Dropout(dropout), nn.ReLU(inplace=True),
        )
        self.out = nn.Linear(h2, n_out)

    @property
    def rep_dim(self) -> int:
        return self.hidden[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def run_body(body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``body(x)``, but a training batch holding a single row is run with frozen BatchNorm statistics
    (BatchNorm cannot normalise one value; it happens when modality dropout leaves one row)."""
    if body.training and x.shape[0] == 1:
        body.eval()
        try:
            return body(x)
        finally:
            body.train()
    return body(x)


class TextPooler(nn.Module):
    """Adapts an AWD-LSTM encoder (``.pooled(ids, lengths)``) to the branch interface; ``bptt``: read plots in
    chunks of that many tokens (fastai's ``SentenceEncoder``; None: in one pass)."""

    def __init__(self, lstm: nn.Module, bptt: int | None = None):
        super().__init__()
        self.lstm, self.bptt = lstm, bptt

    @property
    def out_dim(self) -> int:
        return int(self.lstm.out_dim)

    def forward(self, inp: dict) -> torch.Tensor:
        return self.lstm.pooled(inp["ids"], inp["lengths"], self.bptt)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return self.lstm.layer_groups()


def select_rows(inp, present: torch.Tensor):
    """Rows of a branch input where ``present``: a tensor, or a dict of tensors (token ids + lengths)."""
    if isinstance(inp, dict):
        return {k: v[present] for k, v in inp.items()}
    return inp[present]


class SingleModel(nn.Module):
    """``poster`` (image features -> head) or ``plot`` (text features, or AWD-LSTM pooled -> head).

    ``forward(inp, present)``: ``inp`` is ``[B, D]`` features (or ``{"ids", "lengths"}`` for the LSTM
    route), ``present`` ``[B]`` bool. Returns ``[B, G]`` logits.
    """

    def __init__(self, modality: str, in_dim: int, n_genres: int, hidden=(512, 256), dropout: float = 0.4,
                 input_dropout: float = 0.2, encoder: nn.Module | None = None):
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}")
        self.modality = modality
        self.encoder = encoder  # trainable text encoder (LSTM route) or None (cached frozen features)
        self.head = PaperHead(in_dim, n_genres, hidden, dropout, input_dropout)
        self.register_buffer("prior_logits", torch.zeros(n_genres))

    def set_prior(self, rate: torch.Tensor, eps: float = 1e-3) -> None:
        r = rate.clamp(eps, 1 - eps).to(self.prior_logits)
        self.prior_logits.copy_(torch.log(r / (1 - r)))

    def encode(self, inp) -> torch.Tensor:
        return self.encoder(inp) if self.encoder is not None else inp

    def forward(self, inp, present: torch.Tensor) -> torch.Tensor:
        present = present.bool()
        b = present.shape[0]
        logits = self.prior_logits.unsqueeze(0).expand(b, -1).clone()
        if present.any():
            x = self.encode(select_rows(inp, present))
            logits[present] = self.head.out(run_body(self.head.body, x)).to(logits.dtype)
        return logits
