"""The paper's AWD-LSTM plot route (ULMFiT): the LSTM before fine-tuning, the language-model stage, and the
discriminative learning rates of gradual unfreezing."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist
from ..errors import ConfigError
from ..models import SingleModel, build_lstm
from .rundir import RunDir
from .seeding import seed_everything, stage_seed

log = logging.getLogger("genrefusion.train")


def lstm_param_groups(model: SingleModel, phase: int, lr: float, decay: float) -> list[dict]:
    """ULMFiT gradual unfreezing: phase 0 head only, 1 + last LSTM layer group, 2 everything;
    discriminative learning rates lr / decay**k going down the layer groups."""
    groups = model.encoder.lstm.layer_groups()  # input -> output
    n_open = {0: 0, 1: 1, 2: len(groups)}[phase]
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    out = [{"params": list(model.head.parameters()), "lr": lr}]
    for k, grp in enumerate(reversed(groups[len(groups) - n_open:] if n_open else [])):
        for p in grp:
            p.requires_grad_(True)
        out.append({"params": list(grp), "lr": lr / decay ** (k + 1)})
    return out


def init_lstm(lstm_spec: dict, vocab, lc) -> tuple[nn.Module, torch.Tensor | None]:
    """The AWD-LSTM before LM fine-tuning: from a user-supplied pretrained LM (``text.lstm.pretrained``,
    rows remapped to ``vocab`` by word; also returns its decoder bias), else spaCy-initialised embeddings."""
    if lc.pretrained:
        from ..encoders.lstm import load_pretrained_awd

        path = Path(lc.pretrained)
        if not path.is_file():
            raise ConfigError(f"{path}: AWD-LSTM weights not found (text.lstm.pretrained: a fastai-layout "
                              "language-model state dict such as WikiText-103's)")
        lstm = build_lstm(lstm_spec)
        info = load_pretrained_awd(lstm, path, lc.pretrained_vocab, vocab)
        log.info("AWD-LSTM from %s: %d of %d words found in its vocabulary", path, info["matched"], len(vocab))
        return lstm, info["decoder_bias"]
    from ..encoders.tokenize import spacy_vectors

    # PCA-reduced below 300-d (tokenize.spacy_vectors)
    return build_lstm(lstm_spec, spacy_vectors(vocab, lstm_spec["emb_dim"])), None


_BIAS = "_lm_decoder_bias"  # stored beside the encoder's weights in an LM stage's file


def lm_texts(train_texts, lm_data, exclude_groups: set[str]) -> list[str]:
    """The language-model pre-training text: the training plots, plus every plot of the ``lm_data`` dataset
    folders (unlabelled text) except titles of the run's dev or test groups, which must stay unseen."""
    from ..data.dataset import open_datasets

    extra = []
    for ds in open_datasets(lm_data) if lm_data else []:
        extra += [t.plot for t in ds.titles() if t.plot and t.plot.strip() and t.group_key not in exclude_groups]
    return list(train_texts) + extra


def run_lm_stage(run: RunDir, lstm, vocab, texts, valid_texts, cfg, progress: bool,
                 decoder_bias: torch.Tensor | None = None, stage: str = "lm",
                 epochs: int | None = None) -> tuple[dict, torch.Tensor | None]:
    """Train the AWD-LSTM as a language model on ``texts`` (dev plots only measure it): ``lm_pretrain`` on
    all LM text, ``lm`` (fine-tuning) on the training plots. Returns the stage record and the LM decoder's
    bias (the next LM stage starts from it).

    An LM stage runs as one one-cycle schedule, so it is checkpointed as a whole: killed half-way, it
    starts over on resume."""
    from ..encoders.lstm import LanguageModel, train_language_model

    lc = cfg.text.lstm
    epochs = lc.lm_epochs if epochs is None else epochs
    done = run.stage_info(stage)
    if done is not None:
        state = run.load_stage(stage)
        bias = state.pop(_BIAS, None)
        lstm.load_state_dict(state)
        log.info("stage %s: already done, skipped", stage)
        return done, bias
    if epochs == 0 or not texts:  # the next stage starts from the initial (or pretrained) LSTM
        log.info("stage %s: %s, skipped", stage, "no text" if not texts else "0 epochs")
        return {"stage": stage, "epochs_run": 0, "history": [], "texts": len(texts), "seconds": 0.0,
                "best_score": None, "best_epoch": -1}, decoder_bias
    t0 = time.perf_counter()
    seed_everything(stage_seed(cfg.seed, stage, 0))
    lm = LanguageModel(lstm)
    if decoder_bias is not None:  # a pretrained LM's word frequencies, remapped to this vocabulary
        with torch.no_grad():
            lm.decoder.bias.copy_(decoder_bias)
    res = train_language_model(lstm, vocab, texts, epochs=epochs, lr=lc.lm_lr, bptt=lc.lm_bptt,
                               batch_size=lc.batch_size, seed=stage_seed(cfg.seed, stage, 0), progress=progress,
                               valid_texts=valid_texts or None, device=dist.model_device(lstm), lm=lm)
    history = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in res["history"]]
    for h in history:
        log.info("stage %s epoch %d/%d: LM train loss %.4f%s", stage, h["epoch"], epochs, h["train_loss"],
                 f", dev loss {h['valid_loss']:.4f}" if "valid_loss" in h else "")
    info = {"stage": stage, "epochs_run": len(history), "history": history, "texts": len(texts),
            "tokens": res.get("tokens"), "initial_dev_loss": res.get("initial_valid_loss"),
            "seconds": round(time.perf_counter() - t0, 2),
            "best_score": history[-1].get("valid_loss", history[-1]["train_loss"]) if history else None,
            "best_epoch": len(history) - 1}
    bias = lm.decoder.bias.detach().clone()
    run.save_stage(stage, {**lstm.state_dict(), _BIAS: bias}, info)
    return info, bias
