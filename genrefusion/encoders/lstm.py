"""The paper's text route (ULMFiT): an AWD-LSTM encoder, its tied language model and LM fine-tuning, in plain torch.

AWD-LSTM regularisation (Merity et al. 2017, as in fastai):
- embedding dropout: whole word rows of the embedding matrix dropped per batch;
- variational ("locked") dropout: one mask per sequence, shared over time, on the input and between layers;
- weight drop: DropConnect on each LSTM's hidden-to-hidden matrix, applied with ``torch.func.functional_call`` so
  the stock (fused) ``nn.LSTM`` kernel runs with the dropped matrix and gradients reach the raw weights.
The last layer's output size equals the embedding size so the LM decoder can share (tie) the embedding matrix.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .tokenize import Vocab


def collate_ids(seqs: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad with 0 (xxpad) to the longest sequence (at most ``max_len``), keeping each one's first tokens.

    Returns ``(ids [B,T] int64, lengths [B] int64)``; an empty sequence gets length 1 (a single pad) so pooling
    stays defined.
    """
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1 (got {max_len})")
    lens = [min(len(s), max_len) for s in seqs]
    T = max(1, max(lens, default=1))
    ids = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        if lens[b]:
            ids[b, :lens[b]] = torch.as_tensor(list(s[:lens[b]]), dtype=torch.long)
    return ids, torch.tensor([max(1, n) for n in lens], dtype=torch.long)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout on [B,T,C]: the same channels dropped at every time step of a sequence."""
    if not training or p <= 0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


class WeightDropLSTM(nn.Module):
    """A one-layer LSTM whose hidden-to-hidden weights get DropConnect (p = ``weight_p``) in training."""

    def __init__(self, input_size: int, hidden_size: int, weight_p: float):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.weight_p = weight_p

    def forward(self, x, state=None):
        if self.training and self.weight_p > 0:
            dropped = F.dropout(self.lstm.weight_hh_l0, self.weight_p, training=True)
            return torch.func.functional_call(self.lstm, {"weight_hh_l0": dropped}, (x, state))
        return self.lstm(x, state)


class AWDLSTMEncoder(nn.Module):
    """Embedding -> ``n_layers`` weight-dropped LSTMs. ``forward`` gives per-token outputs, ``pooled`` ULMFiT's
    concat pooling. Defaults: ULMFiT's LM dropouts scaled by ``drop_mult``; sizes small enough for a CPU."""

    def __init__(self, vocab_size: int, emb_size: int = 300, hidden_size: int = 384, n_layers: int = 3,
                 pad_id: int = 0, embed_p: float = 0.02, input_p: float = 0.25, hidden_p: float = 0.15,
                 weight_p: float = 0.2, drop_mult: float = 1.0, init_vectors: torch.Tensor | None = None):
        super().__init__()
        if n_layers < 1 or vocab_size < 1 or emb_size < 1 or hidden_size < 1:
            raise ConfigError("AWD-LSTM sizes (vocab, emb_size, hidden_size, n_layers) must be >= 1")
        self.vocab_size, self.emb_size, self.hidden_size, self.n_layers = vocab_size, emb_size, hidden_size, n_layers
        self.pad_id = pad_id
        self.embed_p, self.input_p, self.hidden_p = embed_p * drop_mult, input_p * drop_mult, hidden_p * drop_mult
        self.emb = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        if init_vectors is not None:
            if tuple(init_vectors.shape) != (vocab_size, emb_size):
                raise ConfigError(f"embedding init has shape {tuple(init_vectors.shape)}, "
                                  f"expected ({vocab_size}, {emb_size})")
            with torch.no_grad():
                self.emb.weight.copy_(init_vectors)
        else:
            nn.init.uniform_(self.emb.weight, -0.1, 0.1)  # fastai's init
        with torch.no_grad():
            self.emb.weight[pad_id].zero_()
        sizes = [emb_size] + [hidden_size] * (n_layers - 1) + [emb_size]
        self.rnns = nn.ModuleList(
            WeightDropLSTM(sizes[i], sizes[i + 1], weight_p * drop_mult) for i in range(n_layers))

    @property
    def out_size(self) -> int:
        return self.emb_size

    @property
    def out_dim(self) -> int:
        """Size of ``pooled``: [last, max, mean] of the last layer's outputs."""
        return 3 * self.emb_size

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.emb.weight
        if self.training and self.embed_p > 0:
            mask = w.new_empty(w.size(0), 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            w = w * mask
        return F.embedding(ids, w, padding_idx=self.pad_id)

    def run(self, ids: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """Full pass: returns (raw outputs per layer, dropped outputs per layer, new states per layer).

        Batches are right-padded and the LSTMs run forward in time, so a real token's output never depends on
        the pads after it: ``lengths`` is only needed by pooling, and the batch is *not* packed. (Packed
        sequences take PyTorch's slow per-step CPU path: measured 3-5x slower to train on 2 cores.) The
        outputs at pad positions are junk; ``pooled`` masks them. ``state`` (list of (h, c) per layer)
        carries hidden states across BPTT windows in LM training.
        """
        x = locked_dropout(self._embed(ids), self.input_p, self.training)
        raw, dropped, new_state = [], [], []
        for i, rnn in enumerate(self.rnns):
            out, st = rnn(x, None if state is None else state[i])
            raw.append(out)
            new_state.append(st)
            if i < self.n_layers - 1:
                x = locked_dropout(out, self.hidden_p, self.training)
                dropped.append(x)
            else:
                dropped.append(out)
        return raw, dropped, new_state

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """[B,T] token ids (right-padded) -> [B,T,emb_size] last-layer outputs (junk at pad positions)."""
        return self.run(ids, lengths)[0][-1]

    def pooled(self, ids: torch.Tensor, lengths: torch.Tensor, bptt: int | None = None) -> torch.Tensor:
        """ULMFiT concat pooling over real tokens only: [last, max, mean] -> [B, 3*emb_size].

        With ``bptt`` a plot longer than it is read as fastai's ``SentenceEncoder`` reads it: in chunks of
        ``bptt`` tokens, the hidden state carried from chunk to chunk and detached (truncated BPTT: gradients
        flow within a chunk), pooling over every chunk. A chunk runs only the plots long enough to reach it,
        so one long plot in a batch of short ones costs little more than the short ones. In eval mode the
        result equals one pass over the whole plot."""
        B, T = ids.shape
        lengths = lengths.to(ids.device).clamp(min=1, max=T)
        if bptt is None or T <= bptt:
            out = self(ids, lengths)
            mask = (torch.arange(T, device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
            last = out[torch.arange(B, device=out.device), lengths - 1]
            mx = out.masked_fill(~mask, float("-inf")).amax(1)
            mean = (out * mask).sum(1) / lengths[:, None].to(out.dtype)
            return torch.cat([last, mx, mean], dim=1)
        return self._pooled_chunks(ids, lengths, bptt)

    def _pooled_chunks(self, ids: torch.Tensor, lengths: torch.Tensor, bptt: int) -> torch.Tensor:
        B, T = ids.shape
        w = self.emb.weight
        mx = w.new_full((B, self.emb_size), float("-inf"))
        total, last = w.new_zeros(B, self.emb_size), w.new_zeros(B, self.emb_size)
        state = None  # per layer (h, c) of every row, [1, B, H]
        for s in range(0, T, bptt):
            active = (lengths > s).nonzero(as_tuple=True)[0]
            if not len(active):
                break
            left = lengths[active] - s                     # tokens of each active plot from here on
            n = int(left.clamp(max=bptt).max())
            st = None if state is None else [(h[:, active], c[:, active]) for h, c in state]
            raw, _, new = self.run(ids[active, s:s + n], state=st)
            out = raw[-1]
            real = torch.arange(n, device=ids.device)[None, :] < left[:, None]
            mx = mx.index_put((active,), torch.maximum(mx[active], out.masked_fill(~real[..., None], float("-inf"))
                                                       .amax(1)))
            total = total.index_add(0, active, (out * real[..., None]).sum(1))
            ends = left <= n                               # plots whose last token is in this chunk
            if ends.any():
                last = last.index_put((active[ends],), out[ends.nonzero(as_tuple=True)[0], left[ends] - 1])
            if state is None:
                state = [(h.new_zeros(h.shape[0], B, h.shape[2]), c.new_zeros(c.shape[0], B, c.shape[2]))
                         for h, c in new]
            state = [(h0.index_copy(1, active, h.detach()), c0.index_copy(1, active, c.detach()))
                     for (h0, c0), (h, c) in zip(state, new)]
        return torch.cat([last, mx, total / lengths[:, None].to(total.dtype)], dim=1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embedding], [LSTM 1], ..., [LSTM n]: input to output, for gradual unfreezing."""
        return [list(self.emb.parameters())] + [list(r.parameters()) for r in self.rnns]

    def config(self) -> dict:
        """Constructor arguments (JSON) to rebuild this encoder from a bundle."""
        return {"vocab_size": self.vocab_size, "emb_size": self.emb_size, "hidden_size": self.hidden_size,
                "n_layers": self.n_layers, "pad_id": self.pad_id}


class LanguageModel(nn.Module):
    """AWD-LSTM encoder + a linear decoder whose weight *is* the embedding matrix (weight tying)."""

    def __init__(self, encoder: AWDLSTMEncoder, output_p: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.output_p = output_p
        self.decoder = nn.Linear(encoder.out_size, encoder.vocab_size)
        self.decoder.weight = encoder.emb.weight
        nn.init.zeros_(self.decoder.bias)

    def forward(self, ids: torch.Tensor, state=None, return_all: bool = False):
        raw, dropped, state = self.encoder.run(ids, state=state)
        out = locked_dropout(raw[-1], self.output_p, self.training)
        logits = self.decoder(out)
        return (logits, raw, dropped, state, out) if return_all else logits


def _lm_stream(vocab: Vocab, texts: Sequence[str], batch_size: int, rng: random.Random | None) -> torch.Tensor:
    """Concatenate xxbos-prefixed documents (shuffled when ``rng``) into [batch_size, L] parallel streams."""
    docs = [vocab.numericalise(t) for t in texts if t and t.strip()]
    if rng is not None:
        rng.shuffle(docs)
    flat = np.fromiter((i for d in docs for i in d), dtype=np.int64)
    L = len(flat) // batch_size
    return torch.from_numpy(flat[:L * batch_size].reshape(batch_size, L))


def _detach(state):
    return [(h.detach(), c.detach()) for h, c in state]


def lm_loss(lm: LanguageModel, vocab: Vocab, texts: Sequence[str], bptt: int = 70, batch_size: int = 32,
            device: str = "cpu") -> float:
    """Mean next-token cross-entropy of ``lm`` on ``texts`` (eval mode, no dropout)."""
    stream = _lm_stream(vocab, texts, min(batch_size, max(1, len(texts))), None).to(device)
    if stream.size(1) < 2:
        raise ConfigError("language-model texts are too short to evaluate")
    was = lm.training
    lm.eval()
    total, n, state = 0.0, 0, None
    with torch.inference_mode():
        for s in range(0, stream.size(1) - 1, bptt):
            x, y = stream[:, s:s + bptt], stream[:, s + 1:s + 1 + bptt]
            x = x[:, :y.size(1)]
            logits, _, _, state, _ = lm(x, state, return_all=True)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            n += y.numel()
    lm.train(was)
    return total / n


def train_language_model(encoder: AWDLSTMEncoder, vocab: Vocab, texts: Sequence[str], epochs: int = 1,
                         bptt: int = 70, batch_size: int = 32, lr: float = 3e-3, progress: bool = True,
                         device: str = "cpu", valid_texts: Sequence[str] | None = None, wd: float = 0.01,
                         clip: float = 0.4, alpha: float = 2.0, beta: float = 1.0, seed: int = 0,
                         lm: LanguageModel | None = None) -> dict:
    """ULMFiT LM fine-tuning: next-token prediction over the (training) plots, one-cycle Adam, AR/TAR.

    Trains ``encoder`` in place. Returns ``{"history": [{"epoch", "train_loss", "valid_loss"?, "seconds"}],
    "initial_valid_loss"?, "tokens"}``.
    """
    from tqdm.auto import tqdm

    if len(vocab) != encoder.vocab_size:
        raise ConfigError(f"vocab has {len(vocab)} tokens but the encoder was built for {encoder.vocab_size}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    lm = (lm or LanguageModel(encoder)).to(device)
    n_tokens = sum(len(vocab.numericalise(t)) for t in texts if t and t.strip())
    steps_per_epoch = math.ceil(max(0, n_tokens // batch_size - 1) / bptt)
    if steps_per_epoch < 1:
        raise ConfigError(f"too little text for language-model training ({n_tokens} tokens, batch {batch_size})")
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch + epochs,
                                                pct_start=0.25)
    result: dict = {"history": [], "tokens": n_tokens}
    if valid_texts:
        result["initial_valid_loss"] = lm_loss(lm, vocab, valid_texts, bptt, batch_size, device)
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        lm.train()
        stream = _lm_stream(vocab, texts, batch_size, rng).to(device)
        state, tot, cnt = None, 0.0, 0
        bar = tqdm(range(0, stream.size(1) - 1, bptt), desc=f"LM fine-tuning {epoch}/{epochs}", unit="batch",
                   disable=None if progress else True, mininterval=2.0)
        for s in bar:
            x, y = stream[:, s:s + bptt], stream[:, s + 1:s + 1 + bptt]
            x = x[:, :y.size(1)]
            logits, raw, dropped, state, out = lm(x, state, return_all=True)
            state = _detach(state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            reg = 0.0
            if alpha:  # activation regularisation on the (dropped) last-layer output
                reg = reg + alpha * out.pow(2).mean()
            if beta and raw[-1].size(1) > 1:  # temporal AR: penalise big jumps between steps
                reg = reg + beta * (raw[-1][:, 1:] - raw[-1][:, :-1]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            (loss + reg).backward()
            if clip:
                nn.utils.clip_grad_norm_(lm.parameters(), clip)
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            tot += loss.item() * y.numel()
            cnt += y.numel()
            bar.set_postfix(loss=f"{tot / cnt:.3f}", refresh=False)  # shown at the next (rate-limited) redraw
        bar.close()
        rec = {"epoch": epoch, "train_loss": tot / max(cnt, 1)}
        if valid_texts:
            rec["valid_loss"] = lm_loss(lm, vocab, valid_texts, bptt, batch_size, device)
        rec["seconds"] = round(time.time() - t0, 2)
        result["history"].append(rec)
    lm.eval()
    return result


# -- user-supplied pretrained weights (fastai WikiText-103 AWD-LSTM) --------------------------------------
def _read_itos(itos) -> list[str]:
    if isinstance(itos, (list, tuple)):
        return [str(w) for w in itos]
    p = Path(itos)
    if not p.is_file():
        raise ConfigError(f"{p}: pretrained vocabulary file not found")
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read the pretrained vocabulary ({err})") from None
    if p.suffix == ".json":
        import json

        try:
            obj = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"{p}: pretrained vocabulary is not valid JSON ({err})") from None
        obj = obj.get("itos") if isinstance(obj, dict) else obj
        if not isinstance(obj, list) or not all(isinstance(w, str) for w in obj):
            raise ConfigError(f"{p}: pretrained vocabulary must be a JSON list of tokens")
        return obj
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")  # one token a line


def _hidden_weights(sd: dict, layer: int):
    """Layer ``layer``'s hidden-to-hidden matrix: fastai's WeightDropout keeps it as ``weight_hh_l0_raw`` (and, in
    fastai 1, also as ``module.weight_hh_l0``); a checkpoint saved without the wrapper has only the latter."""
    pre = f"rnns.{layer}."
    raw = sd.get(pre + "weight_hh_l0_raw")
    return raw if raw is not None else sd.get(pre + "module.weight_hh_l0")


def load_pretrained_awd(encoder: AWDLSTMEncoder, path: str | Path, itos, vocab: Vocab | None = None) -> dict:
    """Load a fastai-layout AWD-LSTM LM state dict (e.g. WikiText-103) into ``encoder``.

    ``itos``: the pretrained vocabulary (list, or a .json / one-token-a-line file; fastai's pickled itos must be
    converted first, since we never unpickle). Embedding rows are remapped by word to ``vocab``'s order; words the
    pretrained vocab lacks get the mean pretrained embedding (as fastai does). Returns
    ``{"matched": n_words_found, "decoder_bias": remapped bias tensor or None}``.
    """
    from .resnet import read_state_dict

    if vocab is None:
        raise ConfigError("load_pretrained_awd needs the target vocabulary to remap embedding rows")
    sd = read_state_dict(path, "AWD-LSTM weights")
    if any(k.startswith("0.") for k in sd):  # fastai SequentialRNN: 0 = encoder, 1 = decoder
        sd = {k[2:] if k.startswith("0.") else "dec." + k[2:] if k.startswith("1.") else k: v
              for k, v in sd.items()}
    old_itos = _read_itos(itos)
    if "encoder.weight" not in sd:
        raise ConfigError(f"{path}: not a fastai AWD-LSTM state dict (no 'encoder.weight'; "
                          f"keys like {', '.join(sorted(sd)[:3])})")
    old_emb = sd["encoder.weight"]
    if old_emb.shape[0] != len(old_itos):
        raise ConfigError(f"{path}: embedding has {old_emb.shape[0]} rows but the vocabulary lists "
                          f"{len(old_itos)} tokens")
    n_layers = len({k.split(".")[1] for k in sd if k.startswith("rnns.")})
    hh0 = _hidden_weights(sd, 0)
    hid = hh0.shape[1] if hh0 is not None else None
    want = (encoder.emb_size, encoder.hidden_size if encoder.n_layers > 1 else encoder.emb_size, encoder.n_layers)
    have = (old_emb.shape[1], hid, n_layers)
    if have != want:
        raise ConfigError(f"{path}: pretrained AWD-LSTM has emb_size={have[0]}, hidden_size={have[1]}, "
                          f"n_layers={have[2]}; build the encoder with those sizes (now {want})")
    new_sd = {}
    for i in range(encoder.n_layers):
        pre = f"rnns.{i}."
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            k = pre + "module." + name
            if k not in sd:
                raise ConfigError(f"{path}: missing key {k!r} (fastai layout expected)")
            new_sd[f"rnns.{i}.lstm.{name}"] = sd[k]
        raw = _hidden_weights(sd, i)
        if raw is None:
            raise ConfigError(f"{path}: missing key {pre + 'weight_hh_l0_raw'!r} (fastai layout expected)")
        new_sd[f"rnns.{i}.lstm.weight_hh_l0"] = raw
    own = encoder.state_dict()
    bad = [f"{k} {tuple(v.shape)}!={tuple(own[k].shape)}" for k, v in new_sd.items() if v.shape != own[k].shape]
    if bad:
        raise ConfigError(f"{path}: AWD-LSTM weight shapes differ ({'; '.join(bad[:3])})")
    old_stoi = {w: i for i, w in enumerate(old_itos)}
    idx = torch.tensor([old_stoi.get(w, -1) for w in vocab.itos])
    found = idx >= 0
    mean = old_emb.float().mean(0)
    emb = mean.repeat(len(vocab), 1)
    emb[found] = old_emb[idx[found]].float()
    new_sd["emb.weight"] = emb
    encoder.load_state_dict(new_sd, strict=False)
    bias = None
    if "dec.decoder.bias" in sd:
        ob = sd["dec.decoder.bias"].float()
        bias = torch.full((len(vocab),), float(ob.mean()))
        bias[found] = ob[idx[found]]
    return {"matched": int(found.sum()), "decoder_bias": bias}
