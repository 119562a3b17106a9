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


def _body(in_dim: int, hidden, dropout: float, input_dropout: float) -> nn.Sequential:
    h1, h2 = hidden
    return nn.Sequential(
        nn.Dropout(input_dropout),
        nn.Linear(in_dim, h1),
        nn.BatchNorm1d(h1), nn.Dropout(dropout), nn.ReLU(inplace=True), nn.Linear(h1, h2),
        nn.BatchNorm1d(h2), nn.Dropout(dropout), nn.ReLU(inplace=True),
    )


class MemberBodies(nn.Module):
    """The bodies of an ensemble's members, side by side: ``[B, members * h2]``, member i's representation in
    chunk i. ``parts``: the input is a concatenation of parts each holding one chunk per member (the fused
    head, reading the branches' member chunks: member i reads chunk i of every part); None: every member
    reads the whole input."""

    def __init__(self, bodies, parts: tuple[int, ...] | None = None):
        super().__init__()
        self.members, self.parts = nn.ModuleList(bodies), parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.members)
        if self.parts is None:
            return torch.cat([b(x) for b in self.members], dim=1)
        pieces = [p.reshape(p.shape[0], k, -1) for p in torch.split(x, list(self.parts), dim=1)]
        return torch.cat([b(torch.cat([p[:, i] for p in pieces], dim=1)) for i, b in enumerate(self.members)], dim=1)


class MemberOut(nn.Module):
    """The members' output layers: in training, every member's logits ``[members, B, G]`` (each member learns
    from its own loss, as independently trained models would); otherwise their mean ``[B, G]``."""

    def __init__(self, members: int, h2: int, n_out: int):
        super().__init__()
        self.members = nn.ModuleList(nn.Linear(h2, n_out) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, len(self.members), dim=1)
        out = torch.stack([lin(c) for lin, c in zip(self.members, chunks)])
        return out if self.training else out.mean(0)


class PaperHead(nn.Module):
    """``members`` > 1: that many independently initialised heads (an ensemble in one module) whose logits are
    averaged; ``parts``: see ``MemberBodies`` (the fused head of an ensemble)."""

    def __init__(self, in_dim: int, n_out: int, hidden=(512, 256), dropout: float = 0.4,
                 input_dropout: float = 0.0, members: int = 1, parts: tuple[int, ...] | None = None):
        super().__init__()
        h1, h2 = hidden
        self.in_dim, self.n_out, self.hidden = int(in_dim), int(n_out), (int(h1), int(h2))
        self.members, self.input_dropout = int(members), float(input_dropout)
        if self.members == 1:  # the paper's head, laid out as in bundles from before ensembles
            self.body = _body(in_dim, hidden, dropout, input_dropout)
            self.out = nn.Linear(h2, n_out)
        else:
            member_in = in_dim if parts is None else sum(parts) // self.members
            self.body = MemberBodies([_body(member_in, hidden, dropout, input_dropout) for _ in range(self.members)],
                                     parts)
            self.out = MemberOut(self.members, h2, n_out)

    @property
    def rep_dim(self) -> int:
        return self.hidden[1] * self.members

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
                 input_dropout: float = 0.2, encoder: nn.Module | None = None, members: int = 1):
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}")
        self.modality = modality
        self.encoder = encoder  # trainable text encoder (LSTM route) or None (cached frozen features)
        self.head = PaperHead(in_dim, n_genres, hidden, dropout, input_dropout, members)
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
            out = self.head.out(run_body(self.head.body, x)).to(logits.dtype)
            if out.dim() == 3:  # an ensemble's members while training: [members, B, G]
                logits = logits.unsqueeze(0).repeat(out.shape[0], 1, 1)
                logits[:, present] = out
            else:
                logits[present] = out
        return logits
