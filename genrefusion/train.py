"""Staged training of the poster, plot and fused models, honest evaluation, bundle and report.

Laid out like torchvision's ``references/classification/train.py``: ``train_one_epoch`` and the
scoring loop over a standard DataLoader + sampler, ``fit_stage`` for one stage, and ``main`` that
wires the steps (nothing but the ``train`` command and ``GenreClassifier.fit`` imports this module):

1. ``prepare_data``: datasets -> validated titles, union genre vocabulary with a per-title label mask,
   the split grouped by ``imdb_id`` across datasets (written to ``RUN_DIR/split.json``);
2. ``compute_features``: frozen-backbone poster features and MiniLM plot features through the feature cache;
3. ``train_poster`` and ``train_plot`` (plot: MiniLM features, and/or the paper's AWD-LSTM route: LM
   fine-tuning on the training plots, then a classifier with gradual unfreezing); with
   ``text.encoder = "auto"`` both plot models are trained and the better one by *dev* score becomes
   ``plot`` and the fused model's text branch;
4. ``train_fused``: branches initialised from the trained single models, trained whole with modality dropout;
5. ``evaluate_models``: per-genre thresholds on dev, metrics on test (and on the test titles that have
   both inputs), baselines; ``write_outputs``: the model bundle, ``metrics.json`` and the report.

With ``train.crossfit = K`` (the default), ``train_folds`` runs steps 3-4 once per fold of train + dev, each
fold its own dev, and step 5 tunes on the out-of-fold scores of every train + dev title; the fold models are
merged into one ensemble (``models/merge.py``), which is what the bundle serves.

Every training stage checkpoints atomically after each epoch and ends with its best weights in the run
folder (``training/rundir.py``). ``--resume`` skips finished stages and continues an interrupted one after
its last finished epoch. RNGs are re-seeded from (seed, stage, epoch) at every epoch, so a resumed run
makes the same choices as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import distributed as dist
from .config import Config, crossfit_folds
from .data.corpus import Corpus, load_corpus
from .data.dataset import open_datasets
from .encoders.inputs import InputEncoders, Inputs, add_poster_views, build_inputs, feature_rows
from .errors import ConfigError, DatasetError, GenreFusionError
from .inference import Batcher, RowSet, model_logits, predict_rows, row_loader, score_loader
from .metrics import selection_score
from .modelcard import write_model_card
from .models import FusedModel, build_fused, build_single, drop_modalities, model_spec
from .models.build import IMAGE_LEVELS
from .training.finetune import decode_workers, fused_param_groups, poster_param_groups
from .training.optim import compute_pos_weight, loss_mask, make_scheduler, masked_bce
from .training.rundir import RUN_FORMAT, RunDir, clone_state, close_log, finished_run, prepare, setup_log
from .training.seeding import seed_everything, stage_seed
from .training.ulmfit import init_lstm, lm_texts, lstm_param_groups, run_lm_stage
from .version import __version__
from .versions import library_versions

log = logging.getLogger("genrefusion.train")

ALL_MODELS = ("poster", "plot", "fused")

__all__ = ["ALL_MODELS", "RUN_FORMAT", "Batcher", "Corpus", "Inputs", "RunDir", "StageSpec", "fit_stage",
           "init_lstm", "load_corpus", "main", "make_scheduler", "masked_bce", "model_logits", "predict_rows",
           "seed_everything", "stage_seed", "train_one_epoch"]


def progress_disabled(progress: bool):
    """tqdm's ``disable``: off when asked, and off (None) when stderr is not a terminal (logs, CI)."""
    return True if not progress else None


# -- one epoch, one stage -----------------------------------------------------------------------------------
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


@dataclass
class StageSpec:
    name: str
    model: nn.Module
    param_groups: list[dict]
    train_rows: np.ndarray
    dev_rows: np.ndarray
    epochs: int
    modality_dropout: float = 0.0
    sample_weights: np.ndarray | None = None  # per training row: each epoch draws rows with these weights
    reads: str | None = None  # "poster" or "plot" for a single-input stage: its error names the input it lacks


@dataclass
class StageState:
    """Where a stage stands after its last finished epoch (what its checkpoint carries)."""

    start: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    bad: int = 0
    history: list = field(default_factory=list)
    best_state: dict | None = None

    @classmethod
    def resume(cls, run: RunDir, name: str, model, optimizer, scheduler) -> "StageState":
        ckpt = run.load_checkpoint(name)
        if ckpt is None:
            return cls()
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        log.info("stage %s: resuming after epoch %d", name, ckpt["epoch"] + 1)
        return cls(ckpt["epoch"] + 1, ckpt["best_score"], ckpt["best_epoch"], ckpt["bad_epochs"], ckpt["history"],
                   ckpt["best_model"])

    def record(self, epoch: int, train_loss: float, dev_loss: float | None, score: float, model) -> None:
        self.history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5),
                             "dev_loss": None if dev_loss is None else round(dev_loss, 5),
                             "dev_score": round(score, 5)})
        if score > self.best:
            self.best, self.best_epoch, self.bad, self.best_state = score, epoch, 0, clone_state(model)
        else:
            self.bad += 1

    def checkpoint(self, name: str, epoch: int, model, optimizer, scheduler) -> dict:
        return {"stage": name, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_score": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad, "history": self.history, "best_model": self.best_state,
                "torch_rng": torch.get_rng_state()}


def epoch_rows(rows: np.ndarray, weights: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
    """The training rows of one epoch: ``rows`` themselves, or as many drawn with replacement by ``weights``
    (the same draw on every rank: the generator is seeded alike)."""
    if weights is None:
        return rows
    pick = torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), len(rows), replacement=True,
                             generator=generator)
    return rows[pick.numpy()]


def combination_weights(image_ok: np.ndarray, text_ok: np.ndarray, rows: np.ndarray, mode: str) -> np.ndarray | None:
    """Sampling weights that balance input combinations (``train.fused_balance``): 1/n or 1/sqrt(n) per row,
    n = rows with the same combination (poster only, plot only, both); ``"both"`` is ``"equal"`` with the rows
    that have both inputs drawn as often as the other two combinations together; None for ``"none"``."""
    if mode == "none":
        return None
    combo = image_ok[rows].astype(int) + 2 * text_ok[rows].astype(int)
    n = np.bincount(combo, minlength=4).astype(np.float64)[combo]
    w = 1.0 / (np.sqrt(n) if mode == "sqrt" else n)
    if mode == "both":
        w[combo == 3] *= max(1, len(np.unique(combo[combo != 3])))
    return w


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
        other = {"poster": "plot", "plot": "poster"}.get(spec.reads)
        raise DatasetError(f"stage {spec.name}: no training title has {f'a {spec.reads}' if other else 'an input'}"
                           + (f"; to train on this data alone, use --models {other}" if other else ""))
    tc = cfg.train
    loss_fn = lambda lo, y, m: masked_bce(lo, y, m, pos_weight, tc.loss)  # noqa: E731
    train_loss_fn = lambda lo, y, m: masked_bce(lo, y, m, pos_weight, tc.loss, tc.label_smoothing)  # noqa: E731
    optimizer = torch.optim.AdamW(spec.param_groups, weight_decay=tc.weight_decay)
    drop_last = len(spec.train_rows) > tc.batch_size  # a trailing batch of 1 would upset BatchNorm
    steps = max(1, len(spec.train_rows) // tc.batch_size if drop_last else 1)
    scheduler = make_scheduler(optimizer, [g["lr"] for g in spec.param_groups], spec.epochs * steps)
    st = StageState.resume(run, spec.name, model, optimizer, scheduler)
    # under torchrun each rank scores its shard of dev; gather_scores puts the rows back in order
    dev_loader = row_loader(dist.shard(spec.dev_rows), batcher, 256, shuffle=False)
    Yd, Md = corpus.Y[spec.dev_rows], corpus.M[spec.dev_rows]
    # DDP after the checkpoint load (it starts every rank from rank 0's weights); a fused model's batch
    # may lack a modality on one rank, leaving that branch without gradient there
    train_model = dist.wrap_ddp(model, find_unused=isinstance(model, FusedModel))
    t0 = time.perf_counter()
    for epoch in range(st.start, spec.epochs):
        if st.bad >= tc.patience:
            break
        s = stage_seed(cfg.seed, spec.name, epoch)
        seed_everything(s + dist.info().rank)  # other ranks: different dropout masks, as within one batch
        g = torch.Generator().manual_seed(s)
        rows = epoch_rows(spec.train_rows, spec.sample_weights, g)
        sampler, batch_size = dist.epoch_sampler(RowSet(rows), g, s, tc.batch_size, drop_last)
        loader = row_loader(rows, batcher.for_training(), batch_size, sampler=sampler, drop_last=drop_last,
                            **decode_workers(batcher.inputs, cfg, s))
        train_loss = dist.mean_over_ranks(train_one_epoch(train_model, train_loss_fn, optimizer, scheduler, loader,
                                                          epoch, spec.name, spec.modality_dropout, g, progress))
        dist.sync_buffers(model)  # every rank evaluates (and keeps as best) rank 0's BatchNorm statistics
        S, dev_loss = dist.gather_scores(*score_loader(model, dev_loader, loss_fn), len(spec.dev_rows))
        score = selection_score(tc.select_metric, Yd, S, Md) if len(spec.dev_rows) else -train_loss
        score = dist.broadcast_object(score)  # early stopping must decide alike on every rank
        st.record(epoch, train_loss, dev_loss, score, model)
        log.info("stage %s epoch %d/%d: train loss %.4f, dev loss %s, dev %s %.4f%s", spec.name, epoch + 1,
                 spec.epochs, train_loss, "-" if dev_loss is None else f"{dev_loss:.4f}", tc.select_metric, score,
                 " (best)" if st.bad == 0 else "")
        run.save_checkpoint(spec.name, st.checkpoint(spec.name, epoch, model, optimizer, scheduler))
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    info = {"stage": spec.name, "best_score": st.best, "best_epoch": st.best_epoch, "epochs_run": len(st.history),
            "epochs_max": spec.epochs, "stopped_early": len(st.history) < spec.epochs, "history": st.history,
            "train_titles": int(len(spec.train_rows)), "dev_titles": int(len(spec.dev_rows)),
            "seconds": round(time.perf_counter() - t0, 2)}
    run.save_stage(spec.name, model.state_dict(), info)
    run.drop_checkpoint(spec.name)
    return info


# -- main ---------------------------------------------------------------------------------------------------
def main(data: Sequence, out, config: Config | None = None, resume: bool = False,
         models: Sequence[str] = ALL_MODELS, progress: bool = True, write_report: bool = True,
         device: str = "auto", split=None) -> dict:
    """Train the requested models on ``data`` (dataset folders) into run dir ``out``; returns metrics.

    ``split``: a split file to train on, or ``"new"``; by default the datasets' own ``split.json`` when each has
    one, else a new stratified split (``data.split.given_split``). Either way it is kept as ``out/split.json``.

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
    dist.from_main(lambda: prepare(out, stored, resume))  # rank 0 only: the others wait for its verdict
    if resume:
        done = dist.from_main(lambda: finished_run(out, write_report, progress))
        if done is not None:
            dist.cleanup()
            return done
    handler = setup_log(out / "train.log") if dist.is_main() else None
    threads = torch.get_num_threads()
    ok = False
    try:
        job = Job(RunDir(out), cfg, models, progress, dist.current_device(), t_start, split_file=split)
        result = run_job(job, datasets, write_report)
        ok = True
        return result
    finally:
        torch.set_num_threads(threads)
        if handler is not None:
            close_log(handler)
        dist.cleanup(sync=ok)


@dataclass
class Job:
    """What the steps of one training run share; each step fills in its part."""

    run: RunDir
    cfg: Config
    models: list[str]
    progress: bool
    device: torch.device
    t_start: float
    timings: dict = field(default_factory=dict)
    split_file: str | None = None  # ``main``'s ``split``
    split_source: str | None = None  # the split file(s) the run's split came from (None: made by this run)
    corpus: Corpus | None = None
    train_rows: np.ndarray | None = None
    dev_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    inputs: Inputs | None = None
    cache_root: Path | None = None  # the feature caches' folder; the fitted baselines are cached there too
    baseline_fit: object = None  # a BackgroundFit filling the baseline cache while the networks train
    encoders_info: dict = field(default_factory=dict)  # image (name, fingerprint, dim), minilm fingerprint, vocab
    routes: list[str] = field(default_factory=list)
    pos_weight: torch.Tensor | None = None
    loss_mask: np.ndarray | None = None  # [N, G] the loss's weight of each entry (training.optim.loss_mask)
    prior: torch.Tensor | None = None
    training: dict[str, dict] = field(default_factory=dict)     # stage -> its record
    trained: dict[str, nn.Module] = field(default_factory=dict)
    plot_candidates: dict[str, dict] = field(default_factory=dict)
    route: str | None = None
    final_spec: dict | None = None
    backbone: nn.Module | None = None  # the pretrained poster backbone a fine-tuned poster model starts from
    fold_rows: list | None = None  # cross-fitting: each fold's train + dev rows (``train_folds``)

    def rows_with(self, ok, rows):
        return rows[ok[rows]]

    @property
    def image_dim(self) -> int | None:
        info = self.encoders_info.get("image")
        return info["dim"] if info else None

    def batcher(self, route: str | None) -> Batcher:
        return Batcher(self.inputs, self.corpus.Y, self.loss_mask, route, self.cfg.text.lstm.max_len)


def run_job(job: Job, datasets, write_report: bool) -> dict:
    log.info("genrefusion %s: training %s on %s into %s", __version__, ",".join(job.models),
             ", ".join(ds.name for ds in datasets), job.run.root)
    if dist.info().enabled:
        log.info("distributed: %d ranks, %s", dist.info().world_size, job.device)
    seed_everything(job.cfg.seed)
    n_folds, why_not = crossfit_folds(job.cfg)
    if why_not:
        log.info("train.crossfit = %d not used: %s; thresholds are tuned on the dev split", job.cfg.train.crossfit,
                 why_not)
    prepare_data(job, datasets)
    compute_features(job)
    folds = None
    try:
        t0 = time.perf_counter()
        if n_folds:
            folds = train_folds(job, datasets)
        else:
            start_background_baselines(job)
            train_models(job)
        job.timings["training_s"] = round(time.perf_counter() - t0, 2)
        if not dist.is_main():
            # thresholds, metrics, bundle and report come from the same weights on rank 0: wait for its result
            return dist.broadcast_object(None)
        result = write_outputs(job, evaluate_models(job, folds), write_report)
    finally:
        if job.baseline_fit is not None:  # the run failed before evaluation read the baselines: end the child
            job.baseline_fit.stop()
    return dist.broadcast_object(result)


def train_models(job: Job) -> None:
    """The poster model, the plot model(s) and the fused model, on ``job.train_rows``, stopped early on dev."""
    prepare_training(job)
    if "poster" in job.models or "fused" in job.models:
        train_poster(job)
    for route in job.routes:
        train_plot(job, route)
    choose_text_route(job)
    if "fused" in job.models:
        train_fused(job)


@dataclass
class FoldScores:
    """What cross-fitting leaves for evaluation: every model's and baseline's out-of-fold scores on the train +
    dev titles (in ``Job.dev_rows`` order once ``train_folds`` returns), and the baselines served (fold 0's)."""

    dev: dict
    baselines: dict
    baseline_info: dict


def train_folds(job: Job, datasets) -> FoldScores:
    """``train.crossfit = K``: K runs of ``train_models``, fold k of train + dev as run k's dev (each in
    ``RUN/folds/<k>``, resumable like any stage), each fold's baselines fitted alike; the fold models merged
    into one ensemble (``models.merge``). ``job.dev_rows`` becomes every train + dev title, in fold order, so
    evaluation tunes the lexical blend and the thresholds on their out-of-fold scores. Fold workers
    (``training.fold_worker``) may train some folds first; their stages are then read here as finished."""
    from .models.build import build_models
    from .models.merge import merge_fold_models

    cfg, corpus, K = job.cfg, job.corpus, job.cfg.train.crossfit
    fold_rows = fold_partition(job, datasets)
    log.info("cross-fitting: %d folds of %d train + dev titles (%s)", K, sum(map(len, fold_rows)),
             ", ".join(str(len(f)) for f in fold_rows))
    train_with_fold_workers(job, datasets, fold_rows)
    fold_models: list[dict] = []
    dev: dict[str, list] = {}
    served = None
    for k, rows in enumerate(fold_rows):
        fjob = fold_job(job, k, fold_rows)
        log.info("cross-fitting: fold %d/%d (%d training titles, %d out-of-fold)", k + 1, K,
                 len(fjob.train_rows), len(rows))
        start_background_baselines(fjob)
        job.baseline_fit = fjob.baseline_fit  # so that run_job ends the fold's baseline child if the run fails
        try:
            train_models(fjob)
        finally:
            job.training.update({f"{stage}@fold{k}": rec for stage, rec in fjob.training.items()})
        fold_models.append(fjob.trained)
        job.route = fjob.route
        if dist.is_main():
            baselines, base_dev, base_info = fit_run_baselines(fjob)
            job.baseline_fit = None  # read (fit_run_baselines waited for it)
            for name, model in fjob.trained.items():
                dev.setdefault(name, []).append(predict_rows(model, rows, fjob.batcher(fjob.route)))
            for name, S in base_dev.items():
                dev.setdefault(name, []).append(S)
            if served is None:
                served = (baselines, base_info)
    # the merged ensemble: K * members members, each fold's members in turn
    members = cfg.train.members
    spec = model_spec(cfg, corpus.genres, job.image_dim, job.route)
    job.final_spec = {**spec, "members": K * members}
    merged = build_models(job.final_spec, list(fold_models[0]))
    for name in fold_models[0]:
        job.trained[name] = merge_fold_models([f[name] for f in fold_models], merged[name], members).to(job.device)
    prepare_training(job)  # the loss mask that scoring reads
    job.dev_rows = np.concatenate(fold_rows)
    job.fold_rows = fold_rows
    if not dist.is_main():
        return FoldScores({}, {}, {})
    return FoldScores({n: np.concatenate(v) for n, v in dev.items()}, *served)


def fold_partition(job: Job, datasets) -> list[np.ndarray]:
    """Train + dev cut into ``train.crossfit`` folds (``data.split.make_folds``: grouped by ``imdb_id``,
    stratified), as sorted corpus rows."""
    from .data.split import make_folds, split_key

    corpus = job.corpus
    pool = np.sort(np.concatenate([job.train_rows, job.dev_rows]))
    qualified = len(datasets) > 1
    row_of = {split_key(corpus.datasets[corpus.ds_index[i]].name, corpus.titles[i].id, qualified): i for i in pool}
    return [np.sort([row_of[k] for k in f])
            for f in make_folds(datasets, job.cfg.train.crossfit, job.cfg.seed, row_of.__contains__)]


def fold_job(job: Job, k: int, fold_rows: list[np.ndarray]) -> Job:
    """Fold k's run: trained on the other folds, stopped early on fold k, in ``RUN/folds/<k>``, its own seed."""
    rows = fold_rows[k]
    return dataclasses.replace(
        job, run=RunDir(job.run.root / "folds" / str(k)), cfg=job.cfg.replace({"seed": job.cfg.seed + 1000 * k}),
        train_rows=np.setdiff1d(np.concatenate(fold_rows), rows), dev_rows=rows, training={}, trained={},
        plot_candidates={}, baseline_fit=None, timings={})


def train_claimed_folds(job: Job, fold_rows: list[np.ndarray], claims: Path, go_on=lambda: True) -> list[int]:
    """Train every fold no other process has claimed (``training.fold_worker.claim``) while ``go_on()``; the folds
    trained."""
    from .training.fold_worker import claim

    done = []
    for k in range(len(fold_rows)):
        if go_on() and claim(claims, k):
            log.info("cross-fitting: training fold %d/%d", k + 1, len(fold_rows))
            train_models(fold_job(job, k, fold_rows))
            done.append(k)
    return done


FOLD_WORKER_MIN_TITLES = 2000  # below this a fold trains in seconds: a worker's start-up would cost more


def fold_workers_wanted(job: Job, fold_rows: list[np.ndarray]) -> int:
    """``train.fold_workers``, capped by the cores the training threads leave idle; 0 on an accelerator, under
    torchrun, for a small pool, or when a fold's baselines are not cached yet (their background fit needs the
    spare core)."""
    from .training.baseline_cache import is_cached

    tc = job.cfg.train
    if not tc.fold_workers or not tc.threads or job.device.type != "cpu" or dist.info().enabled:
        return 0
    n = min(tc.fold_workers, (os.cpu_count() or 1) // tc.threads - 1, len(fold_rows) - 1)
    if n <= 0 or sum(map(len, fold_rows)) < FOLD_WORKER_MIN_TITLES:
        return 0
    for k in range(len(fold_rows)):
        fjob = fold_job(job, k, fold_rows)
        if not is_cached(job.cache_root, *baseline_inputs(fjob), seed=fjob.cfg.seed):
            return 0
    return n


def train_with_fold_workers(job: Job, datasets, fold_rows: list[np.ndarray]) -> None:
    """When workers are wanted, train the folds with them, each process claiming the next free fold."""
    from .training.fold_worker import FoldWorkers

    n = fold_workers_wanted(job, fold_rows)
    if not n:
        return
    stored = {"config": job.cfg.to_dict(), "data": [str(ds.root.resolve()) for ds in datasets], "models": job.models}
    workers = FoldWorkers.start([sys.executable, "-m", "genrefusion.train"], job.run.root, n, stored)
    if workers is None:
        return
    try:
        train_claimed_folds(job, fold_rows, workers.claims)
    except BaseException:
        workers.stop()
        raise
    workers.wait()


def run_fold_worker(argv: list[str]) -> None:
    """A fold worker (``python -m genrefusion.train RUN FOLDER``, started by ``train_with_fold_workers``): the job
    rebuilt from ``FOLDER/job.json``, then every fold it can claim trained into ``RUN/folds``."""
    from .io import read_json

    parent = os.getppid()  # a worker whose main process died stops after its current fold
    run, folder = Path(argv[0]), Path(argv[1])
    stored = read_json(folder / "job.json", "fold worker job")
    handler = setup_log(run / "train.log", tag=f"[fold worker {os.getpid()}] ")
    try:
        datasets = open_datasets(stored["data"])
        job = Job(RunDir(run), Config.from_dict(stored["config"]), stored["models"], False, torch.device("cpu"),
                  time.perf_counter())
        prepare_data(job, datasets)  # the run's split.json, written before any worker starts
        compute_features(job)  # from the feature cache the main process has just filled
        done = train_claimed_folds(job, fold_partition(job, datasets), folder / "claims",
                                   lambda: os.getppid() == parent)
        log.info("trained folds %s", ", ".join(map(str, done)) or "none")
    finally:
        close_log(handler)


# -- 1. data ------------------------------------------------------------------------------------------------
def prepare_data(job: Job, datasets) -> None:
    """The split (grouped by imdb_id across datasets; stored in the run, never in the datasets) and the corpus."""
    from .data.split import Split, given_split, make_split

    t0 = time.perf_counter()
    cfg, split_path = job.cfg, job.run.root / "split.json"

    def load_or_make_split():  # rank 0's split (it owns the run folder), broadcast to every rank
        # with whether it was found there: a resumed run's split, or one prepared there (leave-one-dataset-out)
        if split_path.exists():  # a resumed run keeps its split
            split = Split.load(split_path)
            if job.split_file not in (None, "new") and given_split(datasets, job.split_file)[0].parts != split.parts:
                raise ConfigError(f"{job.run.root}: --resume with another --split than the interrupted run's")
            return split, True
        split, source, warnings = given_split(datasets, job.split_file)
        for w in warnings:
            log.warning("%s", w)
        if split is None:
            split = make_split(datasets, dev=cfg.data.dev, test=cfg.data.test, seed=cfg.seed)
        else:
            log.info("split: %s", source)
        split.save(split_path)
        return split, False

    split, found = dist.from_main(load_or_make_split)
    job.split_source = split.source
    corpus = job.corpus = load_corpus(datasets, split, cfg.data.min_genre_count)
    job.train_rows, job.dev_rows, job.test_rows = corpus.rows("train"), corpus.rows("dev"), corpus.rows("test")
    log.info("titles: %d (train %d, dev %d, test %d); genres: %d", len(corpus), len(job.train_rows),
             len(job.dev_rows), len(job.test_rows), len(corpus.genres))
    if corpus.dropped_genres:  # labels the user gave that the model will not learn: said even under -q
        log.warning("%d genre(s) not learnt, with fewer than %d labelled training titles each: %s; "
                    "--set data.min_genre_count=N keeps genres with N or more", len(corpus.dropped_genres),
                    cfg.data.min_genre_count, ", ".join(f"{g} ({n})" for g, n in corpus.dropped_genres.items()))
    # dev titles tune the thresholds and stop training early; test titles give every metric the run reports
    empty = next((p for p, rows in (("train", job.train_rows), ("dev", job.dev_rows), ("test", job.test_rows))
                  if not len(rows)), None)
    if empty:
        names = ", ".join(ds.name for ds in datasets)
        usable = "a usable title has a poster or a plot and a genre the model learns"
        if split.source or found:  # a given split: its file decided, not data.dev / data.test
            raise DatasetError(f"{split.source or split_path}: places no usable title of {names} in its {empty} "
                               f"part ({usable}); " + ("train --split new makes a stratified split" if split.source
                                                       else "delete it to make a stratified split"))
        raise DatasetError(f"the split of {names} leaves no {empty} titles; add data or change data.dev / data.test")
    job.timings["data_s"] = round(time.perf_counter() - t0, 2)


# -- 2. features --------------------------------------------------------------------------------------------
def compute_features(job: Job) -> None:
    """Frozen poster and MiniLM plot features through the feature cache; the LSTM vocabulary and token ids."""
    from .paths import cache_dir as default_cache_dir

    t0 = time.perf_counter()
    cfg, corpus, models = job.cfg, job.corpus, job.models
    need_text = "plot" in models or "fused" in models
    job.routes = (["minilm", "lstm"] if cfg.text.encoder == "auto" else [cfg.text.encoder]) if need_text else []
    cache_root = job.cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir() / "features"
    encoders = InputEncoders()
    level = IMAGE_LEVELS[cfg.train.finetune]
    if "poster" in models or "fused" in models:
        from .encoders.image import build_image_encoder, image_view

        backbone = build_image_encoder(cfg.image.encoder, cfg.image.weights).to(job.device)
        encoders.image = image_view(backbone, level)
        job.backbone = backbone if level != "features" else None
    if "minilm" in job.routes:
        from .encoders.text import MiniLMEncoder

        encoders.minilm = MiniLMEncoder().to(job.device)
    if "lstm" in job.routes:
        from .encoders.tokenize import Vocab

        lc = cfg.text.lstm
        # the vocabulary comes from training plots only: dev/test words stay unknown, as for unseen titles
        encoders.vocab = Vocab.build([corpus.plots[i] for i in job.train_rows], min_freq=lc.min_freq,
                                     max_size=lc.max_vocab)
    inputs = job.inputs = build_inputs(corpus.posters, corpus.plots, encoders, cache_root, corpus.keys,
                                       cfg.image.batch_size, cfg.text.batch_size, cfg.image.num_workers, job.progress,
                                       lazy_pixels=True)
    if cfg.train.poster_views and inputs.image is not None:
        t1 = time.perf_counter()
        add_poster_views(inputs, corpus.posters, job.train_rows, encoders.image, cfg.train.poster_views, cache_root,
                         corpus.keys, cfg.image.batch_size, cfg.image.num_workers, job.progress)
        job.timings["features_views_s"] = round(time.perf_counter() - t1, 2)
        n_views = 0 if inputs.view_index is None else int((inputs.view_index >= 0).sum())
        log.info("poster views: %d per training poster, %d posters (%.1fs)", cfg.train.poster_views, n_views,
                 job.timings["features_views_s"])
    img = getattr(encoders.image, "base", encoders.image)  # the backbone itself, under any view
    job.encoders_info = {"image": {"name": img.name, "fingerprint": img.fingerprint, "dim": img.dim} if img else None,
                         "minilm_fingerprint": getattr(encoders.minilm, "fingerprint", None), "vocab": encoders.vocab}
    del encoders, img
    if inputs.errors:
        log.warning("%d inputs could not be used (treated as missing): %s", len(inputs.errors),
                    "; ".join(list(inputs.errors.values())[:5]))
    t = job.timings
    t["features_s"] = round(time.perf_counter() - t0, 2)
    t["features_image_s"], t["features_text_s"] = inputs.timings["image_s"], inputs.timings["text_s"]
    log.info("features: %d/%d posters, %d/%d plots (%.1fs)", inputs.image_ok.numpy().sum(), len(corpus),
             inputs.text_ok.numpy().sum(), len(corpus), t["features_s"])


# -- 3. single-modality models ------------------------------------------------------------------------------
def prepare_training(job: Job) -> None:
    """Threads, the genre priors the heads start from and the loss's positive weights (training titles only)."""
    tc, corpus = job.cfg.train, job.corpus
    if tc.threads and job.device.type == "cpu":
        torch.set_num_threads(tc.threads)  # main() restores the caller's setting
    Ytr, Mtr = corpus.Y[job.train_rows], corpus.M[job.train_rows]
    job.prior = torch.from_numpy(Ytr.sum(0) / np.maximum(Mtr.sum(0), 1))
    pos_weight = compute_pos_weight(Ytr, Mtr, tc.pos_weight, tc.pos_weight_cap)
    job.pos_weight = pos_weight.to(job.device) if pos_weight is not None else None
    job.loss_mask = loss_mask(corpus.Y, corpus.M, corpus.ds_index, job.train_rows, tc.negative_weight)


def train_poster(job: Job) -> None:
    spec = model_spec(job.cfg, job.corpus.genres, job.image_dim, None)
    # re-seed before every model build: a cold feature cache runs DataLoaders that draw from the global
    # RNG, a warm one does not, and the initial weights must not depend on that
    seed_everything(stage_seed(job.cfg.seed, "build_poster", 0))
    poster = build_single(spec, "poster", image_encoder=job.backbone).to(job.device)
    poster.set_prior(job.prior)
    ok = job.inputs.image_ok.numpy()
    job.training["poster"] = fit_stage(job.run, StageSpec(
        "poster", poster, poster_param_groups(poster, job.cfg.train),
        job.rows_with(ok, job.train_rows), job.rows_with(ok, job.dev_rows), job.cfg.train.epochs, reads="poster"),
        job.batcher(None), job.corpus, job.cfg, job.pos_weight, job.progress)
    job.trained["poster"] = poster


def train_plot(job: Job, route: str) -> None:
    """One plot model (text route ``minilm`` or ``lstm``), scored on dev as a candidate for ``plot``."""
    cfg, corpus, tc = job.cfg, job.corpus, job.cfg.train
    spec = model_spec(cfg, corpus.genres, job.image_dim, route, job.encoders_info["vocab"])
    batcher = job.batcher(route)
    ok = job.inputs.text_ok.numpy()
    tr, dv = job.rows_with(ok, job.train_rows), job.rows_with(ok, job.dev_rows)
    seed_everything(stage_seed(cfg.seed, f"build_plot_{route}", 0))
    if route == "minilm":
        model = build_single(spec, "plot").to(job.device)
        model.set_prior(job.prior)
        job.training["plot_minilm"] = fit_stage(job.run, StageSpec(
            "plot_minilm", model, [{"params": list(model.parameters()), "lr": tc.lr}], tr, dv, tc.epochs,
            reads="plot"),
            batcher, corpus, cfg, job.pos_weight, job.progress)
    else:
        model = _train_lstm_plot(job, spec, batcher, tr, dv)
    S = predict_rows(model, dv, batcher)
    # the text route (and so the fused model's shape) must be chosen alike on every rank
    score = dist.broadcast_object(selection_score(tc.select_metric, corpus.Y[dv], S, corpus.M[dv]))
    job.plot_candidates[route] = {"dev_score": round(score, 5), "model": model, "spec": spec}
    log.info("plot model %s: dev %s %.4f", route, tc.select_metric, score)


def _train_lstm_plot(job: Job, spec: dict, batcher: Batcher, tr, dv) -> nn.Module:
    """ULMFiT: language-model pre-training on all LM text (the training plots + ``text.lstm.lm_data``),
    fine-tuning on the training plots, then the classifier with gradual unfreezing."""
    cfg, lc, vocab, corpus = job.cfg, job.cfg.text.lstm, job.encoders_info["vocab"], job.corpus
    lstm, bias = init_lstm(spec["lstm"], vocab, lc)
    lstm = lstm.to(job.device)
    train_texts, dev_texts = [corpus.plots[i] for i in tr], [corpus.plots[i] for i in dv]
    unseen = {corpus.titles[i].group_key for part in ("dev", "test") for i in corpus.rows(part)}
    pretrain = lm_texts(train_texts, lc.lm_data, unseen) if lc.lm_data else []
    # the LM stages are not data-parallel: rank 0 runs them, the others take its weights
    for stage, texts, epochs in (("lm_pretrain", pretrain, lc.lm_pretrain_epochs), ("lm", train_texts, lc.lm_epochs)):
        if stage == "lm_pretrain" and not lc.lm_data:
            continue  # no text beyond the training plots: the fine-tuning stage alone reads them
        job.training[stage], bias = dist.run_on_main(lambda: run_lm_stage(
            job.run, lstm, vocab, texts, dev_texts, cfg, job.progress, bias, stage, epochs), lstm)
    model = build_single(spec, "plot", lstm).to(job.device)
    model.set_prior(job.prior)
    for phase, n_ep in enumerate(lc.unfreeze_epochs):
        if n_ep == 0:
            continue
        name = f"plot_lstm_{phase + 1}"
        groups = lstm_param_groups(model, phase, lc.lr, lc.lr_decay)
        job.training[name] = fit_stage(job.run, StageSpec(name, model, groups, tr, dv, n_ep, reads="plot"), batcher,
                                       job.corpus, cfg, job.pos_weight, job.progress)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def choose_text_route(job: Job) -> None:
    """The plot model with the best dev score becomes ``plot`` (and the fused model's text branch)."""
    cands = job.plot_candidates
    if cands:
        job.route = max(cands, key=lambda r: cands[r]["dev_score"])
        job.trained["plot"] = cands[job.route]["model"]
        if len(cands) > 1:
            log.info("text route chosen on dev: %s (%s)", job.route,
                     ", ".join(f"{r} {c['dev_score']:.4f}" for r, c in cands.items()))
    vocab = job.encoders_info["vocab"]
    job.final_spec = model_spec(job.cfg, job.corpus.genres, job.image_dim, job.route,
                                vocab if job.route == "lstm" else None)


# -- 4. fused model -----------------------------------------------------------------------------------------
def train_fused(job: Job) -> None:
    """Branches from the trained single models, trained whole; the pretrained encoders inside them too with
    ``train.finetune`` (``training.finetune.fused_param_groups``)."""
    tc = job.cfg.train
    seed_everything(stage_seed(job.cfg.seed, "build_fused", 0))
    fused = build_fused(job.final_spec, job.trained["poster"], job.trained["plot"]).to(job.device)
    groups = fused_param_groups(fused, job.cfg, tc.finetune)
    img_ok, txt_ok = job.inputs.image_ok.numpy(), job.inputs.text_ok.numpy()
    train_rows = job.rows_with(img_ok | txt_ok, job.train_rows)
    job.training["fused"] = fit_stage(job.run, StageSpec(
        "fused", fused, groups, train_rows, job.rows_with(img_ok | txt_ok, job.dev_rows), tc.fused_epochs,
        tc.modality_dropout, combination_weights(img_ok, txt_ok, train_rows, tc.fused_balance)),
        job.batcher(job.route), job.corpus, job.cfg, job.pos_weight, job.progress)
    for p in fused.parameters():
        p.requires_grad_(True)
    job.trained["fused"] = fused


# -- 5. evaluation ------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    scored: dict          # evaluate.score_models: metrics overall, per input combination and kind, probe verdicts
    thresholds: dict      # model or baseline -> ThresholdSets (tuned on dev, per input combination)
    threshold_info: dict
    test_scores: dict     # per-title test scores, for the report's PR curves
    dev_scores: dict      # per-title dev scores (after the lexical blend): what the thresholds were tuned on
    lexical: object = None  # the lexical blend's tf-idf model (baselines.TfidfLogReg), when a model blends it
    lexical_info: dict = field(default_factory=dict)  # model -> {"weight", dev scores by weight, ...}

    @property
    def metrics(self) -> dict:
        return self.scored["models"]


def evaluate_models(job: Job, folds: FoldScores | None = None) -> Evaluation:
    """Thresholds on dev per input combination, metrics on test, beside the always-negative, TF-IDF and
    linear-probe baselines (the baselines are saved in the run, for ``evaluate --data``). With cross-fitting
    (``folds``), "dev" is every train + dev title and its scores are out-of-fold; the baselines are fold 0's."""
    from .baselines import always_negative, baseline_scores
    from .bundle import save_baselines
    from .evaluate import kind_of, score_models, tune_model_thresholds

    t0 = time.perf_counter()
    corpus, dev, test, tc = job.corpus, job.dev_rows, job.test_rows, job.cfg.train
    img_ok, txt_ok = job.inputs.image_ok.numpy(), job.inputs.text_ok.numpy()
    evaluated = dict(job.trained)
    if len(job.plot_candidates) > 1:
        evaluated.update({f"plot_{r}": c["model"] for r, c in job.plot_candidates.items()})

    def scores_on(rows) -> dict:
        return {name: predict_rows(model, rows, job.batcher(
            job.route if name in ("plot", "fused") else (name[5:] if name.startswith("plot_") else None)))
            for name, model in evaluated.items()}

    if folds is None:  # one train/dev run: its dev scores and baselines, as train_folds leaves them for folds
        baselines, base_dev, base_info = fit_run_baselines(job)
        folds = FoldScores({**scores_on(dev), **base_dev}, baselines, base_info)
    baselines, base_info, dev_scores = folds.baselines, folds.baseline_info, dict(folds.dev)
    test_scores = scores_on(test)
    test_scores.update(baseline_scores(baselines, [corpus.plots[i] for i in test], feature_rows(job.inputs, test)))
    dev_scores["always_negative"] = always_negative(len(dev), len(corpus.genres))
    test_scores["always_negative"] = always_negative(len(test), len(corpus.genres))
    Yd, Md = corpus.Y[dev], corpus.M[dev]
    lexical_info = blend_lexical(job, evaluated, dev_scores, test_scores) if "tfidf_logreg" in baselines else {}
    rule = tc.threshold_rule_spec
    thresholds, thr_info = {}, {}
    for name, Sd in dev_scores.items():
        thresholds[name], thr_info[name] = tune_model_thresholds(name, Yd, Sd, Md, img_ok[dev], txt_ok[dev],
                                                                 corpus.genres, rule)
    scored = score_models(corpus.Y[test], corpus.M[test], test_scores, thresholds, img_ok[test], txt_ok[test],
                          [kind_of(corpus.titles[i]) for i in test], corpus.genres)
    for name in evaluated:
        scored["models"][name]["dev_score"] = round(selection_score(tc.select_metric, Yd, dev_scores[name], Md), 5)
    for name, info in base_info.items():
        scored["models"][name]["baseline"] = info
    save_baselines(job.run.root, baselines, {k: thresholds[k] for k in baselines}, base_info)
    job.timings["evaluation_s"] = round(time.perf_counter() - t0, 2)
    return Evaluation(scored, thresholds, thr_info, test_scores, dev_scores,
                      baselines["tfidf_logreg"] if lexical_info else None, lexical_info)


def blend_lexical(job: Job, evaluated: dict, dev_scores: dict, test_scores: dict) -> dict:
    """``text.lexical = "auto"``: blend the tf-idf baseline's probabilities into the plot and fused models', with
    the weight that scores best on dev (``models.lexical``); the scores are replaced in place, before the
    thresholds are tuned. Returns model -> record (the weight, dev score by weight, test mAP of the network
    alone, for the record)."""
    from .metrics import selection_score
    from .models.lexical import blend, choose_weight

    if job.cfg.text.lexical == "off":
        return {}
    corpus, dev, test, metric = job.corpus, job.dev_rows, job.test_rows, job.cfg.train.select_metric
    txt_ok = job.inputs.text_ok.numpy()
    out = {}
    # the served models only: the text-route candidates (plot_minilm, plot_lstm) stay the networks the route was
    # chosen on
    for name in [n for n in ("plot", "fused") if n in evaluated]:
        w, by_w = choose_weight(corpus.Y[dev], dev_scores[name], corpus.M[dev], dev_scores["tfidf_logreg"],
                                txt_ok[dev], metric)
        ok = txt_ok[test]
        alone = selection_score("mAP", corpus.Y[test][ok], test_scores[name][ok], corpus.M[test][ok]) if ok.any() else None
        dev_scores[name] = blend(dev_scores[name], dev_scores["tfidf_logreg"], txt_ok[dev], w)
        test_scores[name] = blend(test_scores[name], test_scores["tfidf_logreg"], ok, w)
        out[name] = {"weight": w, f"dev_{metric}_with_a_plot_by_weight": by_w,
                     "test_mAP_with_a_plot_network_alone": None if alone is None else round(alone, 5)}
        log.info("lexical blend for %s: weight %g (dev %s on titles with a plot: %s)", name, w, metric,
                 ", ".join(f"{k} {v:.4f}" for k, v in by_w.items()))
    return out


def baseline_inputs(job: Job) -> tuple:
    """What the baselines are fitted on: training and dev plots, frozen features, labels and masks."""
    corpus, tr, dv = job.corpus, job.train_rows, job.dev_rows
    return ([corpus.plots[i] for i in tr], [corpus.plots[i] for i in dv], feature_rows(job.inputs, tr),
            feature_rows(job.inputs, dv), corpus.Y[tr], corpus.M[tr], corpus.Y[dv], corpus.M[dv])


def start_background_baselines(job: Job) -> None:
    """On rank 0, when training leaves a core idle (``train.threads`` below the core count), fit the baselines
    into the cache in another process meanwhile (``training.baseline_cache.BackgroundFit``)."""
    from .training.baseline_cache import BackgroundFit

    threads = job.cfg.train.threads
    if dist.is_main() and threads and threads < (os.cpu_count() or 1):
        job.baseline_fit = BackgroundFit.start(job.cache_root, *baseline_inputs(job), seed=job.cfg.seed)


def fit_run_baselines(job: Job):
    """The run's baselines (tf-idf, linear probes on the frozen features), fitted on its training titles,
    chosen on dev; a run on the same titles and features reuses the cached fit (``training.baseline_cache``),
    which a background process may have just written."""
    from .training.baseline_cache import fit_baselines_cached

    if job.baseline_fit is not None:
        job.baseline_fit.wait()
        job.baseline_fit = None
    return fit_baselines_cached(job.cache_root, *baseline_inputs(job), job.cfg.seed)


# -- 6. outputs ---------------------------------------------------------------------------------------------
MASKING = ("per-genre metrics use only titles whose dataset labels the genre; micro/hamming/accuracy "
           "pool labelled entries only; samples-F1 and exact match zero masked entries in truth and "
           "prediction; macro/weighted F1 and mAP average genres with a labelled test positive")


def write_outputs(job: Job, ev: Evaluation, write_report: bool) -> dict:
    """The model bundle, ``test_scores.npz``, ``dev_scores.npz``, ``metrics.json`` and the report."""
    from .bundle import save_bundle
    from .decision import per_genre
    from .data.distribution import genre_distribution
    from .io import write_json
    from .thresholds import combination_keys
    from .training.rundir import save_scores

    cfg, corpus, out, route, timings = job.cfg, job.corpus, job.run.root, job.route, job.timings
    vocab, img = job.encoders_info["vocab"], job.encoders_info["image"]
    bundle_models = {k: v for k, v in job.trained.items() if k in job.models}
    meta = {"genrefusion_version": __version__, "image_encoder": cfg.image.encoder,
            "image_weights": cfg.image.weights, "image_fingerprint": img["fingerprint"] if img else None,
            "text_encoder": route, "text_fingerprint": job.encoders_info["minilm_fingerprint"] if route == "minilm"
            else (vocab.fingerprint if route == "lstm" else None),
            "train_config": cfg.to_dict(), "dev_scores": {k: ev.metrics[k]["dev_score"] for k in bundle_models},
            "select_metric": cfg.train.select_metric, "library_versions": library_versions()}
    carry = cfg.image.weights if img and cfg.image.weights and cfg.image.bundle_weights else None
    save_bundle(out / "model", job.final_spec, bundle_models, {k: ev.thresholds[k] for k in bundle_models}, meta,
                vocab if route == "lstm" else None, backbone_file=carry,
                lexical=(ev.lexical, {k: v["weight"] for k, v in ev.lexical_info.items()}) if ev.lexical else None)
    sc, G = ev.scored, corpus.genres
    timings["total_s"] = round(time.perf_counter() - job.t_start, 2)
    why_not = crossfit_folds(cfg)[1]  # cross-fitting asked for but not possible with this config
    result = {
        "format": RUN_FORMAT, "genrefusion_version": __version__, "library_versions": meta["library_versions"],
        "data": corpus.data_info,
        "split": {"train": int(len(job.train_rows)), "dev": int(len(corpus.rows("dev"))),
                  "test": int(len(job.test_rows)),
                  "test_with_poster_and_plot": sc["n_by_combination"].get("both", 0),
                  "test_by_combination": sc["n_by_combination"], "test_by_kind": sc["n_by_kind"],
                  "grouped_by": "imdb_id", "file": "split.json", "from": job.split_source},
        "genres": corpus.genres, "dropped_genres": corpus.dropped_genres,
        "train_genre_distribution": genre_distribution(
            [corpus.datasets[d].name for d in corpus.ds_index[job.train_rows]],
            [corpus.titles[i].kind for i in job.train_rows], corpus.Y[job.train_rows], corpus.M[job.train_rows],
            corpus.genres),
        # cross-fitting: thresholds and blend tuned on the out-of-fold scores of every train + dev title
        "crossfit": {"folds": len(job.fold_rows), "fold_titles": [int(len(f)) for f in job.fold_rows],
                     "tuned_on": "out-of-fold scores of the train + dev titles"} if job.fold_rows else
                    ({"folds": 0, "not_used": why_not} if why_not else None),
        "config": cfg.to_dict(), "models_trained": job.models, "text_route": route,
        "plot_candidates": {r: c["dev_score"] for r, c in job.plot_candidates.items()},
        "select_metric": cfg.train.select_metric, "masking": MASKING,
        "models": ev.metrics, "models_both": sc["models_both"], "by_combination": sc["by_combination"],
        "by_kind": sc["by_kind"], "probe_verdicts": sc["probe_verdicts"], "bootstrap": sc["bootstrap"],
        # "thresholds": the pooled set of each model; "threshold_sets": one per input combination it serves
        "thresholds": {k: per_genre(G, v.pooled, 5) for k, v in ev.thresholds.items()},
        "threshold_sets": {k: {c: per_genre(G, t, 5) for c, t in v.sets.items()} for k, v in ev.thresholds.items()},
        "threshold_info": ev.threshold_info, "lexical_blend": ev.lexical_info, "training": job.training,
        "timings": timings,
        "input_errors": {corpus.keys[i]: e for i, e in list(job.inputs.errors.items())[:100]},
        "n_input_errors": len(job.inputs.errors),
    }
    img_ok, txt_ok = job.inputs.image_ok.numpy(), job.inputs.text_ok.numpy()
    for part, rows, scores in (("test", job.test_rows, ev.test_scores), ("dev", job.dev_rows, ev.dev_scores)):
        save_scores(out / f"{part}_scores.npz", corpus, rows, scores, combination_keys(img_ok[rows], txt_ok[rows]))
    write_model_card(out / "model", result)  # before metrics.json, whose presence marks a finished run
    write_json(out / "metrics.json", result)
    if write_report:
        from .report import write_report as _write_report

        t0 = time.perf_counter()
        _write_report(out, progress=job.progress)
        timings["report_s"] = round(time.perf_counter() - t0, 2)
        timings["total_s"] = round(time.perf_counter() - job.t_start, 2)
        result["timings"] = timings
        write_json(out / "metrics.json", result)
    log.info("done in %.1fs: %s", timings["total_s"], ", ".join(
        f"{k} micro-F1 {v['micro_f1']:.3f}" for k, v in ev.metrics.items() if v.get("micro_f1") is not None))
    return result


if __name__ == "__main__":  # a fold worker (train_with_fold_workers)
    run_fold_worker(sys.argv[1:])
