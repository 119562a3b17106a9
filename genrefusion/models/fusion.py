"""The fused poster + plot model (the paper's merged model), with missing-modality support.

Where the branches join (``join``):

- ``"heads"``: each branch is the ``body`` of a trained single model (its encoder, if any, + head up
  to the last hidden activation, 256-d by default), so fused training starts from what the poster and
  plot models learned beyond their inputs;
- ``"features"`` (the paper's Fig. 1): each branch is only the single model's encoder, if any (the
  AWD-LSTM, or a fine-tuned backbone top), and its input dropout, so the pooled backbone features are
  concatenated with the text features (LSTM concat pooling, or MiniLM) and a new head learns from them.

The two representations are concatenated -> ``PaperHead`` -> G logits (``fusion="concat"``, the
paper's design), or combined by a gated multimodal unit (``fusion="gmu"``, Arevalo et al. 2017: a
learned per-dimension gate between the two modalities).

A title without a poster or without a plot gets that branch's learned ``missing`` embedding in place
of the representation; together with modality dropout during training (``drop_modalities``) the
same model serves poster-only, plot-only and poster + plot titles.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .heads import PaperHead, SingleModel, run_body, select_rows


class GMU(nn.Module):
    def __init__(self, dim_a: int, dim_b: int, out_dim: int):
        super().__init__()
        self.proj_a = nn.Linear(dim_a, out_dim)
        self.proj_b = nn.Linear(dim_b, out_dim)
        self.gate = nn.Linear(dim_a + dim_b, out_dim)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.gate(torch.cat([a, b], dim=1)))
        return z * torch.tanh(self.proj_a(a)) + (1 - z) * torch.tanh(self.proj_b(b))


JOINS = ("heads", "features")
# A branch encoder's batch on a GPU is padded to a multiple of this many rows (see ``encode_bucketed``).
GPU_BUCKET = 32


def encode_bucketed(encoder: nn.Module, x, bucket: int = GPU_BUCKET, pad: bool | None = None):
    """``encoder(x)``, with ``x`` padded with zero rows to a multiple of ``bucket`` rows where ``pad`` (default:
    when ``x`` is on a GPU).

    The fused model's branch sees only the titles with that input, after modality dropout, so nearly every
    batch has another number of rows. On an H200 (torch 2.11, bf16), fine-tuning EfficientNet-Lite0 in the fused
    stage (``train.finetune = "all"``) took ~30 s an epoch for ~870 posters in ~7 batches, against ~1.3 s for
    175 posters in the poster stage, whose batches keep one size; a timing of 24 steps of new sizes had not
    finished after ~4 minutes, so each new batch size seems to cost the GPU seconds (a new convolution plan).
    Padding bounds the sizes to ``batch_size / bucket`` (not yet timed on a GPU: docs/distributed.md). It is
    exact only where rows do not interact, so it is skipped while a BatchNorm layer of the encoder normalises
    with batch statistics (ResNet-50's train; EfficientNet's stay frozen)."""
    if not isinstance(x, torch.Tensor) or not (x.is_cuda if pad is None else pad) or x.shape[0] % bucket == 0:
        return encoder(x)  # token-id dicts (the LSTM route), the CPU, or already a multiple
    if any(m.training for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        return encoder(x)
    n = x.shape[0]
    return encoder(torch.cat([x, x.new_zeros((bucket - n % bucket, *x.shape[1:]))]))[:n]


class Branch(nn.Module):
    """Encoder (optional) + head body of a single model (``join="heads"``) or just its input dropout
    (``join="features"``), and a learned embedding for 'absent'."""

    def __init__(self, single: SingleModel, join: str = "heads"):
        super().__init__()
        if join not in JOINS:
            raise ValueError(f"join must be one of {JOINS}")
        self.encoder = copy.deepcopy(single.encoder)
        if join == "heads":
            self.body, self.rep_dim = copy.deepcopy(single.head.body), single.head.rep_dim
        else:  # the head's input dropout only
            self.body, self.rep_dim = nn.Sequential(nn.Dropout(single.head.input_dropout)), single.head.in_dim
        self.missing = nn.Parameter(torch.zeros(self.rep_dim))

    def forward(self, inp, present: torch.Tensor) -> torch.Tensor:
        present = present.bool()
        b = present.shape[0]
        rep = self.missing.unsqueeze(0).expand(b, -1)
        if not present.any():
            return rep
        x = select_rows(inp, present)
        if self.encoder is not None:
            x = encode_bucketed(self.encoder, x)
        r = run_body(self.body, x)
        # scatter without in-place writes into the expanded parameter view
        idx = present.nonzero(as_tuple=True)[0]
        return rep.index_put((idx,), r.to(rep.dtype))


class FusedModel(nn.Module):
    def __init__(self, poster: SingleModel, plot: SingleModel, n_genres: int, hidden=(512, 256),
                 dropout: float = 0.4, fusion: str = "concat", join: str = "heads", members: int = 1):
        super().__init__()
        if fusion not in ("concat", "gmu"):
            raise ValueError("fusion must be 'concat' or 'gmu'")
        if members > 1 and fusion == "gmu":
            raise ValueError("an ensemble (members > 1) fuses by concatenation only")
        self.fusion, self.join = fusion, join
        self.poster = Branch(poster, join)
        self.plot = Branch(plot, join)
        dp, dt = self.poster.rep_dim, self.plot.rep_dim
        if fusion == "gmu":
            self.gmu = GMU(dp, dt, max(dp, dt))
            in_dim = max(dp, dt)
        else:
            self.gmu = None
            in_dim = dp + dt
        # an ensemble joined at the heads: fused member i reads poster member i's and plot member i's chunk
        parts = (dp, dt) if members > 1 and join == "heads" else None
        self.head = PaperHead(in_dim, n_genres, hidden, dropout, 0.0, members, parts)

    def branch_parameters(self):
        return list(self.poster.encoder.parameters() if self.poster.encoder is not None else []) + \
            list(self.poster.body.parameters()) + \
            list(self.plot.encoder.parameters() if self.plot.encoder is not None else []) + \
            list(self.plot.body.parameters())

    def forward(self, poster_inp, poster_present, plot_inp, plot_present) -> torch.Tensor:
        return self.fuse(self.poster(poster_inp, poster_present), self.plot(plot_inp, plot_present))

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits from branch representations (``self.poster(...)``, ``self.plot(...)``): explanations pair
        each poster variant with each plot variant without re-running the branches."""
        return self.head(self.gmu(a, b) if self.gmu is not None else torch.cat([a, b], dim=1))


def drop_modalities(poster_present: torch.Tensor, plot_present: torch.Tensor, p: float,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality dropout: for titles that have both, hide the poster with probability p/2 and the plot
    with probability p/2 (never both), so the model learns to predict from either alone."""
    if p <= 0:
        return poster_present, plot_present
    both = poster_present.bool() & plot_present.bool()
    u = torch.rand(both.shape, generator=generator)
    hide_poster = both & (u < p / 2)
    hide_plot = both & (u >= p / 2) & (u < p)
    return poster_present.bool() & ~hide_poster, plot_present.bool() & ~hide_plot
