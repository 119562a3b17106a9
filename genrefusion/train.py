"""Staged training of the poster, plot and fused models, honest evaluation, bundle and report.

Laid out like torchvision's ``references/classification/train.py``: ``train_one_epoch`` and
``evaluate`` over a standard DataLoader + sampler, and ``main`` that wires the stages:

1. data: datasets -> validated titles, union genre vocabulary with a per-title label mask, the
   split grouped by ``imdb_id`` across datasets (written to ``RUN_DIR/split.json``);
2. features: frozen-backbone poster features and MiniLM plot features through the feature cache;
3. ``poster`` and ``plot`` models trained separately (plot: MiniLM features, and/or the paper's
   AWD-LSTM route: LM fine-tuning on the training plots, then a classifier with gradual unfreezing);
   with ``text.encoder = "auto"`` both plot models are trained and the better one by *dev* score
   becomes ``plot`` and the fused model's text branch;
4. ``fused``: branches initialised from the trained single models, trained whole with modality
   dropout;
5. per-genre thresholds on dev, metrics on test (and on the test titles that have both inputs),
   baselines, the model bundle, ``metrics.json`` and the report.

Every training stage checkpoints atomically after each epoch (``RUN_DIR/checkpoints/<stage>.pt``,
tensors and plain values only, loaded with ``weights_only=True``) and ends with its best weights in
``RUN_DIR/stages/<stage>.safetensors`` + ``.json``. ``--resume`` skips finished stages and continues
an interrupted one after its last finished epoch. RNGs are re-seeded from (seed, stage, epoch) at
every epoch, so a resumed run makes the same choices as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from . import distributed as dist
from .config import Config
from .data.dataset import Dataset, open_datasets
from .data.records import GenreVocab, Title
from .errors import BundleError, ConfigError, DatasetError, GenreFusionError
from .io import atomic_open, read_json, write_json
from .metrics import selection_score
from .models import FusedModel, SingleModel, TextPooler, drop_modalities

log = logging.getLogger("genrefusion.train")

ALL_MODELS = ("poster", "plot", "fused")
RUN_FORMAT = 1


# -- seeding -----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: str, epoch: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(stage.encode()) + 7919 * epoch) % 2**31


# -- data --------------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """Every usable (dataset, title) row with its label vector, mask, split part and inputs."""

    datasets: list[Dataset]
    titles: list[Title]
    ds_index: np.ndarray            # [N] index into datasets
    keys: list[str]                 # "<dataset>/<id>"
    part: np.ndarray                # [N] 'train' | 'dev' | 'test' | '' (not in the split)
    genres: list[str]
    Y: np.ndarray                   # [N, G] float32 multi-hot
    M: np.ndarray                   # [N, G] float32, 1 where the title's dataset labels the genre
    posters: list[Path | None]
    plots: list[str | None]
    dropped_genres: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    data_info: list[dict] = field(default_factory=list)

    def rows(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.part == part)

    def __len__(self) -> int:
        return len(self.titles)


def load_corpus(datasets: Sequence[Dataset], split=None, min_genre_count: int = 1,
                genres: Sequence[str] | None = None, progress: bool = False) -> Corpus:
    """Rows of ``datasets`` after validation (records only; posters are decoded at feature extraction).

    ``genres=None`` (training): the model vocabulary is the union of the datasets' labelled genres
    minus genres with fewer than ``min_genre_count`` labelled training positives. With ``genres``
    (evaluating a trained model elsewhere) those are used; a genre the model knows but a dataset does
    not label is masked for its titles, and one the dataset labels but the model does not know is
    ignored; both are listed in ``left_out``.
    """
    from .data.validate import validate_dataset

    titles, ds_index, keys, parts, posters, plots, info = [], [], [], [], [], [], []
    for d, ds in enumerate(datasets):
        report = validate_dataset(ds, decode=False)
        used = 0
        for t in ds.titles():
            if not report.usable(t):
                continue
            part = split.part_of(ds.name, t.id) if split is not None else ""
            titles.append(t)
            ds_index.append(d)
            keys.append(f"{ds.name}/{t.id}")
            parts.append(part or "")
            posters.append(ds.poster_path(t) if report.poster_ok(t) else None)
            plots.append(t.plot.strip() if report.plot_ok(t) else None)
            used += 1
        info.append({"name": ds.name, "path": str(ds.root.resolve()), "titles": len(ds.titles()),
                     "used": used, "skipped": len(report.skipped),
                     "with_poster": sum(1 for i, x in enumerate(posters) if ds_index[i] == d and x is not None),
                     "with_plot": sum(1 for i, x in enumerate(plots) if ds_index[i] == d and x is not None),
                     "labelled_genres": ds.labelled_genres})
    if not titles:
        raise DatasetError("no usable title in the given datasets (run `genrefusion validate`)")
    ds_index = np.asarray(ds_index)
    part = np.asarray(parts, dtype=object)
    left_out: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    if genres is None:
        union = GenreVocab(g for ds in datasets for g in ds.labelled_genres)
        Y, M = _encode(union, titles, ds_index, datasets)
        train = part == "train"
        counts = (Y[train] * M[train]).sum(0)
        keep = [i for i, c in enumerate(counts) if c >= min_genre_count]
        dropped = {union.genres[i]: int(counts[i]) for i in range(len(union)) if i not in keep}
        genres = [union.genres[i] for i in keep]
        Y, M = Y[:, keep], M[:, keep]
    else:
        vocab = GenreVocab(genres, sort=False)
        Y, M = _encode(vocab, titles, ds_index, datasets)
        genres = list(genres)
        for ds in datasets:
            lab = set(ds.labelled_genres)
            left_out[ds.name] = {"not_labelled_by_dataset": [g for g in genres if g not in lab],
                                 "unknown_to_model": sorted(lab - set(genres))}
    if not genres:
        raise DatasetError(f"no genre has at least {min_genre_count} labelled training titles "
                           "(lower data.min_genre_count or add data)")
    return Corpus(list(datasets), titles, ds_index, keys, part, list(genres), Y, M, posters, plots,
                  dropped, left_out, info)


def _encode(vocab: GenreVocab, titles, ds_index, datasets):
    Y = np.stack([vocab.encode(t.genres) for t in titles]).astype(np.float32)
    masks = [vocab.mask(ds.labelled_genres) for ds in datasets]
    M = np.stack([masks[d] for d in ds_index]).astype(np.float32)
    return Y * M, M


# -- inputs (features / token ids) -------------------------------------------------------------------------
@dataclass
class Inputs:
    image: torch.Tensor | None = None        # [N, Di]
    image_ok: torch.Tensor | None = None     # [N] bool
    text_ok: torch.Tensor | None = None      # [N] bool (a usable plot)
    minilm: torch.Tensor | None = None       # [N, 384]
    ids: list[list[int]] | None = None       # LSTM token ids per row
    errors: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def image_features(posters, encoder, cache_root=None, batch_size=32, num_workers=0, ids=None, progress=True):
    from .encoders.extract import extract_image_features, feature_cache_for

    # rank 0 is the cache's only reader and writer; other ranks get their share of its misses (extract.py)
    cache = feature_cache_for(encoder, cache_root) if cache_root is not False and dist.is_main() else None
    try:
        return extract_image_features(posters, encoder, cache, batch_size=batch_size, num_workers=num_workers,
                                      ids=ids, progress=progress)
    finally:
        if cache is not None:
            cache.close()


def text_features(plots, encoder, cache_root=None, batch_size=32, ids=None, progress=True):
    from .encoders.extract import extract_text_features, feature_cache_for

    cache = feature_cache_for(encoder, cache_root) if cache_root is not False and dist.is_main() else None
    try:
        return extract_text_features(plots, encoder, cache, batch_size=batch_size, ids=ids, progress=progress)
    finally:
        if cache is not None:
            cache.close()


def effective_workers(n: int) -> int:
    """DataLoader decode workers: 0 inside daemonic processes (no children allowed) or when n is 0."""
    import multiprocessing as mp

    return 0 if mp.current_process().daemon else max(0, int(n))


# -- batching ----------------------------------------------------------------------------------------------
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

    def __call__(self, rows):
        idx = torch.as_tensor(rows, dtype=torch.long)
        inp = self.inputs
        b = {"idx": idx}
        if self.Y is not None:
            b["y"], b["m"] = self.Y[idx], self.M[idx]
        if inp.image is not None:
            b["image"], b["image_present"] = inp.image[idx], inp.image_ok[idx]
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
        return b


def model_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    # under torchrun ``model`` is a DistributedDataParallel wrapper: dispatch on the wrapped model, call the wrapper
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if isinstance(net, FusedModel):
        return model(batch["image"], batch["image_present"], batch["text"], batch["text_present"])
    if net.modality == "poster":
        return model(batch["image"], batch["image_present"])
    return model(batch["text"], batch["text_present"])


def masked_bce(logits, y, m, pos_weight=None) -> torch.Tensor:
    """BCE over labelled entries only: an unlabelled genre is neither positive nor negative."""
    loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    return (loss * m).sum() / m.sum().clamp_min(1.0)


def compute_pos_weight(Y, M, mode: str, cap: float) -> torch.Tensor | None:
    if mode == "none":
        return None
    pos = (Y * M).sum(0)
    neg = ((1 - Y) * M).sum(0)
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    w = np.sqrt(ratio) if mode == "sqrt" else ratio
    return torch.from_numpy(np.clip(w, 1.0, cap).astype(np.float32))


def progress_disabled(progress: bool):
    """tqdm's ``disable``: off when asked, and off (None) when stderr is not a terminal (logs, CI)."""
    return True if not progress else None


# -- the loop ----------------------------------------------------------------------------------------------
def train_one_epoch(model, loss_fn, optimizer, scheduler, loader, epoch: int, desc: str = "train",
                    modality_dropout: float = 0.0, generator=None, progress: bool = True) -> float:
    from tqdm.auto import tqdm

    model.train()
    device = dist.model_device(model)
    total, n = 0.0, 0
    # no per-batch postfix: each set_postfix forces a redraw; the epoch's loss goes to the log instead
    bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}", leave=False, disable=progress_disabled(progress),
               unit="batch", mininterval=2.0)
    for batch in bar:
        if modality_dropout > 0:
            batch["image_present"], batch["text_present"] = drop_modalities(
                batch["image_present"], batch["text_present"], modality_dropout, generator)
        batch = dist.to_device(batch, device)  # after modality dropout: its generator lives on the CPU
        with dist.autocast(device):
            logits = model_logits(model, batch)
            loss = loss_fn(logits, batch["y"], batch["m"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(batch["idx"])
        n += len(batch["idx"])
    bar.close()
    return total / max(n, 1)


@torch.inference_mode()
def evaluate(model, loader, loss_fn=None) -> tuple[np.ndarray, float | None]:
    """Sigmoid scores for every row of ``loader`` (in order) and the mean masked loss."""
    model.eval()
    device = dist.model_device(model)
    out, total, n = [], 0.0, 0
    for batch in loader:
        batch = dist.to_device(batch, device)
        with dist.autocast(device):
            logits = model_logits(model, batch)
        if loss_fn is not None and "y" in batch:
            total += loss_fn(logits.float(), batch["y"], batch["m"]).item() * len(batch["idx"])
            n += len(batch["idx"])
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    S = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return S, (total / n if n else None)


def predict_rows(model, rows, batcher: Batcher, batch_size: int = 256) -> np.ndarray:
    loader = torch.utils.data.DataLoader(RowSet(rows), batch_size=batch_size, shuffle=False, collate_fn=batcher)
    S, _ = evaluate(model, loader)
    return S


# -- run folder: stage results and checkpoints ------------------------------------------------------------
class RunDir:
    """Stage results and checkpoints. Under torchrun rank 0 alone touches the folder: writes happen there
    only, reads are made there and broadcast (every rank calls them in step), so every rank resumes from
    the same checkpoint and the folder need not be shared between nodes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.stages = self.root / "stages"
        self.ckpts = self.root / "checkpoints"

    @dist.main_reads
    def stage_info(self, stage: str) -> dict | None:
        p = self.stages / f"{stage}.json"
        if not p.exists():
            return None
        info = read_json(p, "stage record")
        return info if isinstance(info, dict) and info.get("done") else None

    @dist.main_only
    def save_stage(self, stage: str, state: dict, info: dict) -> None:
        from safetensors.torch import save

        blob = save({k: v.detach().contiguous().clone() for k, v in state.items()})
        with atomic_open(self.stages / f"{stage}.safetensors", "wb") as fh:
            fh.write(blob)
        write_json(self.stages / f"{stage}.json", {**info, "done": True})  # written last: marks completion

    @dist.main_reads
    def load_stage(self, stage: str) -> dict:
        from safetensors.torch import load

        p = self.stages / f"{stage}.safetensors"
        try:
            return load(p.read_bytes())
        except Exception as err:  # safetensors raises its own error types for truncated/garbled files
            raise BundleError(f"{p}: cannot read stage weights ({str(err).splitlines()[0][:120]}); "
                              f"delete {self.stages / (stage + '.json')} to retrain that stage") from None

    @dist.main_only
    def save_checkpoint(self, stage: str, ckpt: dict) -> None:
        with atomic_open(self.ckpts / f"{stage}.pt", "wb") as fh:
            torch.save(ckpt, fh)

    @dist.main_reads
    def load_checkpoint(self, stage: str) -> dict | None:
        p = self.ckpts / f"{stage}.pt"
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:
            # a checkpoint is written atomically, so this is tampering or disk damage: start the stage over
            log.warning("%s: unreadable checkpoint (%s); restarting stage %s", p, str(err).splitlines()[0][:100], stage)
            return None

    @dist.main_only
    def drop_checkpoint(self, stage: str) -> None:
        (self.ckpts / f"{stage}.pt").unlink(missing_ok=True)


def _clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class StageSpec:
    name: str
    model: nn.Module
    param_groups: list[dict]
    train_rows: np.ndarray
    dev_rows: np.ndarray
    epochs: int
    modality_dropout: float = 0.0


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


def fit_stage(run: RunDir, spec: StageSpec, batcher: Batcher, corpus: Corpus, cfg: Config,
              pos_weight=None, progress: bool = True) -> dict:
    """Train one stage with early stopping on dev; checkpoint every epoch; resume; keep the best."""
    done = run.stage_info(spec.name)
    model = spec.model
    if done is not None:
        model.load_state_dict(run.load_stage(spec.name))
        run.drop_checkpoint(spec.name)  # a run killed between finishing the stage and dropping it left one
        log.info("stage %s: already done (best dev %s %.4f at epoch %d), skipped",
                 spec.name, cfg.train.select_metric, done["best_score"], done["best_epoch"] + 1)
        return done
    if len(spec.train_rows) == 0:
        raise DatasetError(f"stage {spec.name}: no training title has the inputs this model needs")
    tc = cfg.train
    loss_fn = lambda lo, y, m: masked_bce(lo, y, m, pos_weight)  # noqa: E731
    optimizer = torch.optim.AdamW(spec.param_groups, weight_decay=tc.weight_decay)
    drop_last = len(spec.train_rows) > tc.batch_size  # a trailing batch of 1 would upset BatchNorm
    steps = max(1, len(spec.train_rows) // tc.batch_size if drop_last else 1)
    scheduler = make_scheduler(optimizer, [g["lr"] for g in spec.param_groups], spec.epochs * steps)
    start, best, best_epoch, bad, history, best_state = 0, -math.inf, -1, 0, [], None
    ckpt = run.load_checkpoint(spec.name)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, best, best_epoch, bad = ckpt["epoch"] + 1, ckpt["best_score"], ckpt["best_epoch"], ckpt["bad_epochs"]
        history, best_state = ckpt["history"], ckpt["best_model"]
        log.info("stage %s: resuming after epoch %d", spec.name, start)
    # under torchrun each rank scores its shard of dev; gather_scores puts the rows back in order
    dev_loader = torch.utils.data.DataLoader(RowSet(dist.shard(spec.dev_rows)), batch_size=256, shuffle=False,
                                             collate_fn=batcher)
    Yd, Md = corpus.Y[spec.dev_rows], corpus.M[spec.dev_rows]
    # DDP after the checkpoint load (it starts every rank from rank 0's weights); a fused model's batch
    # may lack a modality on one rank, leaving that branch without gradient there
    train_model = dist.wrap_ddp(model, find_unused=isinstance(model, FusedModel))
    t0 = time.perf_counter()
    for epoch in range(start, spec.epochs):
        if bad >= tc.patience:
            break
        s = stage_seed(cfg.seed, spec.name, epoch)
        seed_everything(s + dist.info().rank)  # other ranks: different dropout masks, as within one batch
        g = torch.Generator().manual_seed(s)
        sampler, batch_size = dist.epoch_sampler(RowSet(spec.train_rows), g, s, tc.batch_size, drop_last)
        loader = torch.utils.data.DataLoader(RowSet(spec.train_rows), batch_size=batch_size, sampler=sampler,
                                             collate_fn=batcher, drop_last=drop_last)
        train_loss = train_one_epoch(train_model, loss_fn, optimizer, scheduler, loader, epoch, spec.name,
                                     spec.modality_dropout, g, progress)
        train_loss = dist.mean_over_ranks(train_loss)
        dist.sync_buffers(model)  # every rank evaluates (and keeps as best) rank 0's BatchNorm statistics
        S, dev_loss = dist.gather_scores(*evaluate(model, dev_loader, loss_fn), len(spec.dev_rows))
        score = selection_score(tc.select_metric, Yd, S, Md) if len(spec.dev_rows) else -train_loss
        score = dist.broadcast_object(score)  # early stopping must decide alike on every rank
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5),
                        "dev_loss": None if dev_loss is None else round(dev_loss, 5), "dev_score": round(score, 5)})
        if score > best:
            best, best_epoch, bad, best_state = score, epoch, 0, _clone_state(model)
        else:
            bad += 1
        log.info("stage %s epoch %d/%d: train loss %.4f, dev loss %s, dev %s %.4f%s", spec.name, epoch + 1,
                 spec.epochs, train_loss, "-" if dev_loss is None else f"{dev_loss:.4f}", tc.select_metric, score,
                 " (best)" if bad == 0 else "")
        run.save_checkpoint(spec.name, {
            "stage": spec.name, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "best_score": best, "best_epoch": best_epoch, "bad_epochs": bad,
            "history": history, "best_model": best_state, "torch_rng": torch.get_rng_state()})
    if best_state is not None:
        model.load_state_dict(best_state)
    info = {"stage": spec.name, "best_score": best, "best_epoch": best_epoch, "epochs_run": len(history),
            "epochs_max": spec.epochs, "stopped_early": len(history) < spec.epochs, "history": history,
            "train_titles": int(len(spec.train_rows)), "dev_titles": int(len(spec.dev_rows)),
            "seconds": round(time.perf_counter() - t0, 2)}
    run.save_stage(spec.name, model.state_dict(), info)
    run.drop_checkpoint(spec.name)
    return info


# -- model construction ------------------------------------------------------------------------------------
def model_spec(cfg: Config, genres, image_dim: int | None, text_route: str | None, lstm_vocab=None) -> dict:
    """Everything needed to rebuild the models (stored in the bundle's config.json)."""
    tc = cfg.train
    spec = {"genres": list(genres), "image_encoder": cfg.image.encoder, "image_dim": image_dim,
            "text_route": text_route, "hidden": list(tc.hidden), "dropout": tc.dropout,
            "input_dropout": tc.input_dropout, "fusion": tc.fusion}
    if text_route == "minilm":
        spec["text_dim"] = 384
    elif text_route == "lstm":
        lc = cfg.text.lstm
        spec["lstm"] = {"vocab_size": len(lstm_vocab), "emb_dim": lc.emb_dim, "hidden": lc.hidden,
                        "layers": lc.layers, "max_len": lc.max_len}
    return spec


def build_lstm(lstm: dict, init_vectors: torch.Tensor | None = None) -> nn.Module:
    from .encoders.lstm import AWDLSTMEncoder

    return AWDLSTMEncoder(lstm["vocab_size"], emb_size=lstm["emb_dim"], hidden_size=lstm["hidden"],
                          n_layers=lstm["layers"], init_vectors=init_vectors)


def build_single(spec: dict, modality: str, lstm_encoder: nn.Module | None = None) -> SingleModel:
    G = len(spec["genres"])
    kw = dict(hidden=tuple(spec["hidden"]), dropout=spec["dropout"], input_dropout=spec["input_dropout"])
    if modality == "poster":
        return SingleModel("poster", spec["image_dim"], G, **kw)
    if spec["text_route"] == "lstm":
        enc = TextPooler(lstm_encoder if lstm_encoder is not None else build_lstm(spec["lstm"]))
        return SingleModel("plot", enc.out_dim, G, encoder=enc, **{**kw, "input_dropout": 0.0})
    return SingleModel("plot", spec["text_dim"], G, **kw)


def build_fused(spec: dict, poster: SingleModel, plot: SingleModel) -> FusedModel:
    return FusedModel(poster, plot, len(spec["genres"]), tuple(spec["hidden"]), spec["dropout"], spec["fusion"])


def build_models(spec: dict, names: Sequence[str]) -> dict[str, nn.Module]:
    """Fresh models of the bundle's architecture (weights loaded by the caller)."""
    out: dict[str, nn.Module] = {}
    poster = build_single(spec, "poster") if spec.get("image_dim") else None
    plot = build_single(spec, "plot") if spec.get("text_route") else None
    if "poster" in names:
        out["poster"] = poster
    if "plot" in names:
        out["plot"] = plot
    if "fused" in names:
        out["fused"] = build_fused(spec, poster, plot)
    return out


# -- the LSTM (ULMFiT) route -------------------------------------------------------------------------------
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
        from .encoders.lstm import load_pretrained_awd

        path = Path(lc.pretrained)
        if not path.is_file():
            raise ConfigError(f"{path}: AWD-LSTM weights not found (text.lstm.pretrained: a fastai-layout "
                              "language-model state dict such as WikiText-103's)")
        lstm = build_lstm(lstm_spec)
        info = load_pretrained_awd(lstm, path, lc.pretrained_vocab, vocab)
        log.info("AWD-LSTM from %s: %d of %d words found in its vocabulary", path, info["matched"], len(vocab))
        return lstm, info["decoder_bias"]
    from .encoders.tokenize import spacy_vectors

    # PCA-reduced below 300-d (tokenize.spacy_vectors)
    return build_lstm(lstm_spec, spacy_vectors(vocab, lstm_spec["emb_dim"])), None


def run_lm_stage(run: RunDir, lstm, vocab, texts, valid_texts, cfg: Config, progress: bool,
                 decoder_bias: torch.Tensor | None = None) -> dict:
    """Fine-tune the AWD-LSTM as a language model on the *training* plots (dev plots only measure it).

    The LM stage is short (seconds to a minute) and runs as one one-cycle schedule, so it is
    checkpointed as a whole: killed half-way, it starts over on resume."""
    from .encoders.lstm import LanguageModel, train_language_model

    lc = cfg.text.lstm
    done = run.stage_info("lm")
    if done is not None:
        lstm.load_state_dict(run.load_stage("lm"))
        log.info("stage lm: already done, skipped")
        return done
    if lc.lm_epochs == 0:  # no LM fine-tuning: the classifier starts from the initial (or pretrained) LSTM
        log.info("stage lm: text.lstm.lm_epochs = 0, skipped")
        return {"stage": "lm", "epochs_run": 0, "history": [], "texts": len(texts), "seconds": 0.0,
                "best_score": None, "best_epoch": -1}
    t0 = time.perf_counter()
    seed_everything(stage_seed(cfg.seed, "lm", 0))
    lm = LanguageModel(lstm)
    if decoder_bias is not None:  # a pretrained LM's word frequencies, remapped to this vocabulary
        with torch.no_grad():
            lm.decoder.bias.copy_(decoder_bias)
    res = train_language_model(lstm, vocab, texts, epochs=lc.lm_epochs, lr=lc.lm_lr, bptt=lc.lm_bptt,
                               batch_size=lc.batch_size, seed=stage_seed(cfg.seed, "lm", 0), progress=progress,
                               valid_texts=valid_texts or None, device=dist.model_device(lstm), lm=lm)
    history = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in res["history"]]
    for h in history:
        log.info("stage lm epoch %d/%d: LM train loss %.4f%s", h["epoch"], lc.lm_epochs, h["train_loss"],
                 f", dev loss {h['valid_loss']:.4f}" if "valid_loss" in h else "")
    info = {"stage": "lm", "epochs_run": len(history), "history": history, "texts": len(texts),
            "tokens": res.get("tokens"), "initial_dev_loss": res.get("initial_valid_loss"),
            "seconds": round(time.perf_counter() - t0, 2),
            "best_score": history[-1].get("valid_loss", history[-1]["train_loss"]) if history else None,
            "best_epoch": len(history) - 1}
    run.save_stage("lm", lstm.state_dict(), info)
    return info


# -- inputs for any titles --------------------------------------------------------------------------------
def build_inputs(posters, plots, image_encoder=None, minilm=None, vocab=None, cache_root=None, ids=None,
                 image_batch_size: int = 32, text_batch_size: int = 32, num_workers: int = 0,
                 progress: bool = True) -> Inputs:
    """Features / token ids for rows given by poster sources (path/bytes/PIL/None) and plots (str/None).

    A poster that fails to decode, or a plot the text encoder rejects, is recorded in ``errors`` and
    treated as a missing modality for that row."""
    n = len(posters)
    inp = Inputs()
    t0 = time.perf_counter()
    if image_encoder is not None:
        f = image_features(posters, image_encoder, cache_root, image_batch_size, effective_workers(num_workers),
                           ids, progress)
        inp.image, inp.image_ok = torch.from_numpy(f.values), torch.from_numpy(f.ok)
        inp.errors.update(f.errors)
    inp.timings["image_s"] = round(time.perf_counter() - t0, 2)
    text_ok = np.array([isinstance(p, str) and bool(p.strip()) for p in plots], dtype=bool)
    t0 = time.perf_counter()
    if minilm is not None:
        f = text_features(plots, minilm, cache_root, text_batch_size, ids, progress)
        inp.minilm = torch.from_numpy(f.values)
        text_ok &= f.ok
        inp.errors.update(f.errors)
    if vocab is not None:
        inp.ids = [vocab.numericalise(p) if ok else [] for p, ok in zip(plots, text_ok)]
    inp.timings["text_s"] = round(time.perf_counter() - t0, 2)
    inp.text_ok = torch.from_numpy(text_ok)
    if inp.image_ok is None:
        inp.image_ok = torch.zeros(n, dtype=torch.bool)
    return inp


def bundle_encoders(bundle, encoders: dict, text_runtime: str | None = None) -> tuple:
    """(image encoder, MiniLM) a bundle needs (None where it has no such input), built once into ``encoders``."""
    spec = bundle.spec
    img = None
    if spec.get("image_dim"):
        img = encoders.get("image")
        if img is None:
            from .encoders.image import build_image_encoder

            img = encoders["image"] = build_image_encoder(spec["image_encoder"], bundle.config.get("image_weights"))
            fp = bundle.config.get("image_fingerprint")
            if fp and getattr(img, "fingerprint", fp) != fp:
                log.warning("image encoder weights differ from the ones the model was trained with (%s != %s)",
                            img.fingerprint, fp)
    minilm = None
    if spec.get("text_route") == "minilm":
        minilm = encoders.get("minilm")
        if minilm is None:
            from .encoders.text import MiniLMEncoder

            minilm = encoders["minilm"] = MiniLMEncoder(runtime=text_runtime)
    return img, minilm


def make_inputs(posters, plots, bundle, cache_dir=None, ids=None, progress: bool = True, encoders: dict | None = None,
                batch_size: int = 32, num_workers: int = 0) -> Inputs:
    """``build_inputs`` with the encoders a bundle names (built once and kept in ``encoders``)."""
    img, minilm = bundle_encoders(bundle, {} if encoders is None else encoders)
    return build_inputs(posters, plots, img, minilm, bundle.vocab if bundle.spec.get("text_route") == "lstm" else None,
                        cache_dir if cache_dir is not None else False, ids, batch_size, batch_size, num_workers,
                        progress)


def save_test_scores(path: Path, corpus: Corpus, rows, scores: dict[str, np.ndarray]) -> None:
    """Per-title test scores of every model as plain arrays (``np.load(..., allow_pickle=False)`` reads
    them): ``keys``, ``genres``, ``Y``, ``M`` and one ``S_<model>`` array per model and baseline."""
    arrays = {"keys": np.asarray([corpus.keys[i] for i in rows], dtype=str),
              "genres": np.asarray(corpus.genres, dtype=str),
              "Y": corpus.Y[rows].astype(np.uint8), "M": corpus.M[rows].astype(np.uint8)}
    for name, S in scores.items():
        arrays[f"S_{name}"] = np.asarray(S, dtype=np.float32)
    with atomic_open(path, "wb", encoding=None) as fh:
        np.savez(fh, **arrays)


# -- main -------------------------------------------------------------------------------------------------
def _setup_log(path: Path) -> logging.Handler:
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("genrefusion.train", "genrefusion.evaluate"):
        lg = logging.getLogger(name)
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
    return h


def _check_resume(out: Path, stored: dict, resume: bool) -> None:
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        return
    if not resume:
        raise GenreFusionError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    prev = read_json(cfg_path, "run config")
    for key in ("config", "data", "models"):
        if prev.get(key) != stored[key]:
            a, b = prev.get(key), stored[key]
            diff = key
            if isinstance(a, dict) and isinstance(b, dict):
                diff = next((f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), key)
            raise ConfigError(f"{out}: --resume with a different {diff} than the interrupted run; "
                              "resume with the same arguments, or train into a new --out")


def _remove_stale_temps(out: Path) -> None:
    """Remove what a killed run left half-done: atomic writes' temp files (``.NAME.*.tmp``) and bundle temp
    folders (``.model.*``). They were never renamed into place, so nothing reads them; resuming rewrites them."""
    for p in sorted(out.rglob(".*"), reverse=True):
        if p.name.startswith(".model.") and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)


def finished_run(out: Path, write_report: bool = True, progress: bool = False) -> dict | None:
    """The metrics of a run that already finished (its config was checked against this call's), else None.

    ``metrics.json`` is written after the model bundle, so its presence means training and evaluation
    are complete; only the report may be missing (killed while drawing it): it is redrawn."""
    mpath = out / "metrics.json"
    if not mpath.is_file() or not (out / "model" / "config.json").is_file():
        return None
    result = read_json(mpath, "run metrics")
    log.info("%s: run already finished; nothing to train", out)
    if write_report and not (out / "report.html").is_file():
        from .report import write_report as _write_report

        _write_report(out, progress=progress)
    return result


def main(data: Sequence, out, config: Config | None = None, resume: bool = False,
         models: Sequence[str] = ALL_MODELS, progress: bool = True, write_report: bool = True,
         device: str = "auto") -> dict:
    """Train the requested models on ``data`` (dataset folders) into run dir ``out``; returns metrics.

    Under torchrun (RANK/WORLD_SIZE set) every rank calls this: data-parallel training, rank 0 writes
    (see ``genrefusion.distributed``) and every rank returns rank 0's metrics."""
    from .paths import check_writable_target

    t_start = time.perf_counter()
    dist.init(dist.resolve_device(device))
    progress = progress and dist.is_main()
    cfg = config or Config()
    models = [m for m in ALL_MODELS if m in set(models)]
    if not models:
        raise ConfigError(f"--models: name at least one of {', '.join(ALL_MODELS)}")
    out = check_writable_target(Path(out), "the run")
    if out.exists() and not out.is_dir():
        raise GenreFusionError(f"{out}: exists and is not a folder")
    datasets = open_datasets(data)
    for ds in datasets:  # refuse before the run dir exists: a created-then-failed run would demand --resume
        if not ds.titles():
            raise DatasetError(f"{ds.root}: no usable title ({len(ds.problems)} malformed lines; "
                               "run `genrefusion validate`)")
    stored = {"format": RUN_FORMAT, "genrefusion_version": __version__, "config": cfg.to_dict(),
              "data": [str(ds.root.resolve()) for ds in datasets], "models": models}

    def prepare_run_dir():  # rank 0 only: the others wait for its verdict on the folder
        _check_resume(out, stored, resume)
        if (out / "config.json").is_file():
            _remove_stale_temps(out)
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "config.json").exists():
            write_json(out / "config.json", stored)

    dist.from_main(prepare_run_dir)
    if resume:
        done = dist.from_main(lambda: finished_run(out, write_report, progress))
        if done is not None:
            dist.cleanup()
            return done
    handler = _setup_log(out / "train.log") if dist.is_main() else None
    run = RunDir(out)
    threads = torch.get_num_threads()
    try:
        return _main(run, datasets, cfg, models, progress, write_report, t_start, stored)
    finally:
        torch.set_num_threads(threads)
        if handler is not None:
            for name in ("genrefusion.train", "genrefusion.evaluate"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()
        dist.cleanup()


def _main(run: RunDir, datasets, cfg: Config, models, progress, write_report, t_start, stored) -> dict:
    from .baselines import always_negative, fit_tfidf_logreg
    from .bundle import save_bundle
    from .data.split import Split, make_split
    from .evaluate import both_rows, score_model
    from .paths import cache_dir as default_cache_dir
    from .thresholds import tune_thresholds

    out = run.root
    device = dist.current_device()
    log.info("genrefusion %s: training %s on %s into %s", __version__, ",".join(models),
             ", ".join(ds.name for ds in datasets), out)
    if dist.info().enabled:
        log.info("distributed: %d ranks, %s", dist.info().world_size, device)
    seed_everything(cfg.seed)
    timings: dict[str, float] = {}

    # 1. data + split (grouped by imdb_id across datasets; stored in the run, never in the datasets)
    t0 = time.perf_counter()
    split_path = out / "split.json"

    def load_or_make_split():  # rank 0's split (it owns the run folder), broadcast to every rank
        if split_path.exists():
            return Split.load(split_path)
        split = make_split(datasets, dev=cfg.data.dev, test=cfg.data.test, seed=cfg.seed)
        split.save(split_path)
        return split

    split = dist.from_main(load_or_make_split)
    corpus = load_corpus(datasets, split, cfg.data.min_genre_count)
    train_rows, dev_rows, test_rows = corpus.rows("train"), corpus.rows("dev"), corpus.rows("test")
    log.info("titles: %d (train %d, dev %d, test %d); genres: %d%s", len(corpus), len(train_rows), len(dev_rows),
             len(test_rows), len(corpus.genres),
             f"; dropped (< {cfg.data.min_genre_count} training titles): {corpus.dropped_genres}"
             if corpus.dropped_genres else "")
    if not len(train_rows) or not len(dev_rows):
        raise DatasetError("the split leaves no training or no dev titles; add data or change data.dev")
    timings["data_s"] = round(time.perf_counter() - t0, 2)

    # 2. features
    t0 = time.perf_counter()
    need_image = "poster" in models or "fused" in models
    need_text = "plot" in models or "fused" in models
    routes = (["minilm", "lstm"] if cfg.text.encoder == "auto" else [cfg.text.encoder]) if need_text else []
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir() / "features"
    image_enc = minilm = vocab = None
    if need_image:
        from .encoders.image import build_image_encoder

        image_enc = build_image_encoder(cfg.image.encoder, cfg.image.weights).to(device)
    if "minilm" in routes:
        from .encoders.text import MiniLMEncoder

        minilm = MiniLMEncoder().to(device)
    if "lstm" in routes:
        from .encoders.tokenize import Vocab

        lc = cfg.text.lstm
        # the vocabulary comes from training plots only: dev/test words stay unknown, as for unseen titles
        vocab = Vocab.build([corpus.plots[i] for i in train_rows], min_freq=lc.min_freq, max_size=lc.max_vocab)
    inputs = build_inputs(corpus.posters, corpus.plots, image_enc, minilm, vocab, cache_root, corpus.keys,
                          cfg.image.batch_size, cfg.text.batch_size, cfg.image.num_workers, progress)
    image_info = None
    if image_enc is not None:
        image_info = {"name": image_enc.name, "fingerprint": image_enc.fingerprint, "dim": image_enc.dim}
    minilm_fp = getattr(minilm, "fingerprint", None)
    del image_enc, minilm
    if inputs.errors:
        log.warning("%d inputs could not be used (treated as missing): %s", len(inputs.errors),
                    "; ".join(list(inputs.errors.values())[:5]))
    img_ok, txt_ok = inputs.image_ok.numpy(), inputs.text_ok.numpy()
    timings["features_s"] = round(time.perf_counter() - t0, 2)
    timings["features_image_s"], timings["features_text_s"] = inputs.timings["image_s"], inputs.timings["text_s"]
    log.info("features: %d/%d posters, %d/%d plots (%.1fs)", img_ok.sum(), len(corpus), txt_ok.sum(), len(corpus),
             timings["features_s"])

    # 3. single-modality models
    t0 = time.perf_counter()
    tc = cfg.train
    if tc.threads and device.type == "cpu":
        torch.set_num_threads(tc.threads)  # main() restores the caller's setting
    Ytr, Mtr = corpus.Y[train_rows], corpus.M[train_rows]
    prior = torch.from_numpy(Ytr.sum(0) / np.maximum(Mtr.sum(0), 1))
    pos_weight = compute_pos_weight(Ytr, Mtr, tc.pos_weight, tc.pos_weight_cap)
    pos_weight = pos_weight.to(device) if pos_weight is not None else None
    G = len(corpus.genres)
    image_dim = image_info["dim"] if image_info else None
    training: dict[str, dict] = {}
    trained: dict[str, nn.Module] = {}
    specs: dict[str, dict] = {}

    def rows_with(ok, rows):
        return rows[ok[rows]]

    if need_image:
        spec = model_spec(cfg, corpus.genres, image_dim, None)
        # re-seed before every model build: a cold feature cache runs DataLoaders that draw from the global
        # RNG, a warm one does not, and the initial weights must not depend on that
        seed_everything(stage_seed(cfg.seed, "build_poster", 0))
        poster = build_single(spec, "poster").to(device)
        poster.set_prior(prior)
        training["poster"] = fit_stage(run, StageSpec(
            "poster", poster, [{"params": list(poster.parameters()), "lr": tc.lr}],
            rows_with(img_ok, train_rows), rows_with(img_ok, dev_rows), tc.epochs),
            Batcher(inputs, corpus.Y, corpus.M), corpus, cfg, pos_weight, progress)
        trained["poster"] = poster

    plot_candidates: dict[str, dict] = {}
    for route in routes:
        spec = model_spec(cfg, corpus.genres, image_dim, route, vocab)
        batcher = Batcher(inputs, corpus.Y, corpus.M, route, cfg.text.lstm.max_len)
        tr, dv = rows_with(txt_ok, train_rows), rows_with(txt_ok, dev_rows)
        seed_everything(stage_seed(cfg.seed, f"build_plot_{route}", 0))
        if route == "minilm":
            model = build_single(spec, "plot").to(device)
            model.set_prior(prior)
            training["plot_minilm"] = fit_stage(run, StageSpec(
                "plot_minilm", model, [{"params": list(model.parameters()), "lr": tc.lr}], tr, dv, tc.epochs),
                batcher, corpus, cfg, pos_weight, progress)
        else:
            lc = cfg.text.lstm
            lstm, lm_bias = init_lstm(spec["lstm"], vocab, lc)
            lstm = lstm.to(device)
            # LM fine-tuning is short and not data-parallel: rank 0 runs it, the others take its weights
            training["lm"] = dist.run_on_main(lambda: run_lm_stage(
                run, lstm, vocab, [corpus.plots[i] for i in tr], [corpus.plots[i] for i in dv], cfg, progress,
                lm_bias), lstm)
            model = build_single(spec, "plot", lstm).to(device)
            model.set_prior(prior)
            for phase, n_ep in enumerate(lc.unfreeze_epochs):
                if n_ep == 0:
                    continue
                name = f"plot_lstm_{phase + 1}"
                groups = lstm_param_groups(model, phase, lc.lr, lc.lr_decay)
                training[name] = fit_stage(run, StageSpec(name, model, groups, tr, dv, n_ep), batcher, corpus, cfg,
                                           pos_weight, progress)
            for p in model.parameters():
                p.requires_grad_(True)
        S = predict_rows(model, dv, batcher)
        # the text route (and so the fused model's shape) must be chosen alike on every rank
        score = dist.broadcast_object(selection_score(tc.select_metric, corpus.Y[dv], S, corpus.M[dv]))
        plot_candidates[route] = {"dev_score": round(score, 5), "model": model, "spec": spec}
        log.info("plot model %s: dev %s %.4f", route, tc.select_metric, score)
    route = None
    if plot_candidates:
        route = max(plot_candidates, key=lambda r: plot_candidates[r]["dev_score"])
        trained["plot"] = plot_candidates[route]["model"]
        if len(plot_candidates) > 1:
            log.info("text route chosen on dev: %s (%s)", route,
                     ", ".join(f"{r} {c['dev_score']:.4f}" for r, c in plot_candidates.items()))
    final_spec = model_spec(cfg, corpus.genres, image_dim, route, vocab if route == "lstm" else None)

    # 4. fused model: branches from the trained single models, trained whole
    if "fused" in models:
        seed_everything(stage_seed(cfg.seed, "build_fused", 0))
        fused = build_fused(final_spec, trained["poster"], trained["plot"]).to(device)
        branch = set(id(p) for p in fused.branch_parameters())
        # the AWD-LSTM was just fine-tuned by gradual unfreezing; back-propagating through it in every fused
        # epoch would cost more than all other stages together on a CPU, so the fused stage keeps it frozen
        # (its head body still trains, at the branch rate)
        frozen = set(id(p) for p in fused.plot.encoder.parameters()) if fused.plot.encoder is not None else set()
        if tc.branch_lr_factor == 0:
            frozen |= branch
        for p in fused.parameters():
            p.requires_grad_(id(p) not in frozen)
        groups = [{"params": [p for p in fused.parameters() if id(p) in branch and id(p) not in frozen],
                   "lr": tc.lr * tc.branch_lr_factor},
                  {"params": [p for p in fused.parameters() if id(p) not in branch], "lr": tc.lr}]
        groups = [g for g in groups if g["params"]]
        any_ok = img_ok | txt_ok
        training["fused"] = fit_stage(run, StageSpec(
            "fused", fused, groups, rows_with(any_ok, train_rows), rows_with(any_ok, dev_rows), tc.fused_epochs,
            tc.modality_dropout), Batcher(inputs, corpus.Y, corpus.M, route, cfg.text.lstm.max_len), corpus, cfg,
            pos_weight, progress)
        for p in fused.parameters():
            p.requires_grad_(True)
        trained["fused"] = fused
    timings["training_s"] = round(time.perf_counter() - t0, 2)
    if not dist.is_main():
        # thresholds, metrics, bundle and report come from the same weights on rank 0: wait for its result
        return dist.broadcast_object(None)

    # 5. thresholds on dev, metrics on test
    t0 = time.perf_counter()
    Yd, Md, Yt, Mt = corpus.Y[dev_rows], corpus.M[dev_rows], corpus.Y[test_rows], corpus.M[test_rows]
    test_both = both_rows(inputs, test_rows)
    pos_in_test = {int(i): k for k, i in enumerate(test_rows)}
    both_local = np.asarray([pos_in_test[int(i)] for i in test_rows if int(i) in set(test_both.tolist())], dtype=np.int64)
    thresholds, metrics, metrics_both, thr_info = {}, {}, {}, {}
    test_scores: dict[str, np.ndarray] = {}  # per-title test scores, for the report's PR curves
    evaluated = dict(trained)
    if len(plot_candidates) > 1:
        for r, c in plot_candidates.items():
            evaluated[f"plot_{r}"] = c["model"]
    min_pos = tc.threshold_min_positives
    for name, model in evaluated.items():
        r = route if name in ("plot", "fused") else (name[5:] if name.startswith("plot_") else None)
        batcher = Batcher(inputs, corpus.Y, corpus.M, r, cfg.text.lstm.max_len)
        Sd, St = predict_rows(model, dev_rows, batcher), predict_rows(model, test_rows, batcher)
        thr, info = tune_thresholds(Yd, Sd, Md, min_pos)
        thresholds[name], thr_info[name] = thr, {"global": info["global"],
                                                 "fallback": [corpus.genres[j] for j in info["fallback"]]}
        metrics[name] = score_model(Yt, St, Mt, thr, corpus.genres)
        test_scores[name] = St
        metrics[name]["dev_score"] = round(selection_score(tc.select_metric, Yd, Sd, Md), 5)
        if len(both_local):
            metrics_both[name] = score_model(Yt[both_local], St[both_local], Mt[both_local], thr, corpus.genres)
    # baselines
    Z = always_negative(len(test_rows), G)
    half = np.full(G, 0.5)
    metrics["always_negative"] = score_model(Yt, Z, Mt, half, corpus.genres)
    if len(both_local):
        metrics_both["always_negative"] = score_model(Yt[both_local], Z[both_local], Mt[both_local], half,
                                                      corpus.genres)
    texts = lambda rows: [corpus.plots[i] if txt_ok[i] else "" for i in rows]  # noqa: E731
    tfidf, Sd, tf_info = fit_tfidf_logreg(texts(train_rows), Ytr, Mtr, texts(dev_rows), Yd, Md, cfg.seed)
    thr, info = tune_thresholds(Yd, Sd, Md, min_pos)
    St = tfidf.predict_proba(texts(test_rows))
    metrics["tfidf_logreg"] = score_model(Yt, St, Mt, thr, corpus.genres)
    test_scores["tfidf_logreg"], thresholds["tfidf_logreg"] = St, thr
    metrics["tfidf_logreg"]["baseline"] = tf_info
    if len(both_local):
        metrics_both["tfidf_logreg"] = score_model(Yt[both_local], St[both_local], Mt[both_local], thr, corpus.genres)
    timings["evaluation_s"] = round(time.perf_counter() - t0, 2)

    # 6. bundle, metrics.json, report
    bundle_models = {k: v for k, v in trained.items() if k in models}
    meta = {"genrefusion_version": __version__, "image_encoder": cfg.image.encoder,
            "image_weights": cfg.image.weights, "image_fingerprint": image_info["fingerprint"] if image_info else None,
            "text_encoder": route, "text_fingerprint": minilm_fp if route == "minilm" else (
                vocab.fingerprint if route == "lstm" else None),
            "train_config": cfg.to_dict(), "dev_scores": {k: metrics[k]["dev_score"] for k in bundle_models},
            "select_metric": tc.select_metric}
    save_bundle(out / "model", final_spec, bundle_models, {k: thresholds[k] for k in bundle_models}, meta,
                vocab if route == "lstm" else None)
    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    result = {
        "format": RUN_FORMAT, "genrefusion_version": __version__,
        "data": corpus.data_info,
        "split": {"train": int(len(train_rows)), "dev": int(len(dev_rows)), "test": int(len(test_rows)),
                  "test_with_poster_and_plot": int(len(both_local)), "grouped_by": "imdb_id",
                  "file": "split.json"},
        "genres": corpus.genres, "dropped_genres": corpus.dropped_genres,
        "config": cfg.to_dict(), "models_trained": models, "text_route": route,
        "plot_candidates": {r: c["dev_score"] for r, c in plot_candidates.items()},
        "select_metric": tc.select_metric,
        "masking": "per-genre metrics use only titles whose dataset labels the genre; micro/hamming/accuracy "
                   "pool labelled entries only; samples-F1 and exact match zero masked entries in truth and "
                   "prediction; macro/weighted F1 and mAP average genres with a labelled test positive",
        "models": metrics, "models_both": metrics_both,
        "thresholds": {k: {g: round(float(t), 5) for g, t in zip(corpus.genres, v)} for k, v in thresholds.items()},
        "threshold_info": thr_info,
        "training": training, "timings": timings,
        "input_errors": {corpus.keys[i]: e for i, e in list(inputs.errors.items())[:100]},
        "n_input_errors": len(inputs.errors),
    }
    save_test_scores(out / "test_scores.npz", corpus, test_rows, test_scores)
    write_json(out / "metrics.json", result)
    if write_report:
        from .report import write_report as _write_report

        t0 = time.perf_counter()
        _write_report(out, progress=progress)
        timings["report_s"] = round(time.perf_counter() - t0, 2)
        timings["total_s"] = round(time.perf_counter() - t_start, 2)
        result["timings"] = timings
        write_json(out / "metrics.json", result)
    log.info("done in %.1fs: %s", timings["total_s"], ", ".join(
        f"{k} micro-F1 {v['micro_f1']:.3f}" for k, v in metrics.items() if v.get("micro_f1") is not None))
    return dist.broadcast_object(result)
