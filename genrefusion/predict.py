"""The Python API: ``GenreClassifier``, a scikit-learn-style estimator over a trained model bundle.

    clf = GenreClassifier.load("runs/demo")
    clf.predict_one(poster="poster.jpg", plot="A retired hitman ...")
    # {"genres": ["Action", "Thriller"], "scores": {...}, "thresholds": {...}, "used": ["poster", "plot"],
    #  "threshold_set": "both"}

Each genre's threshold was tuned on dev titles with the same inputs as the request (poster only, plot only,
or both): ``threshold_set`` names the set used ("pooled" for bundles saved before per-combination sets).

A title is a poster (path, bytes, PIL image or ``preprocess_poster``'s tensor; optional) plus a plot (str; optional): a dict
``{"poster": ..., "plot": ...}``, a ``Title``-like object with ``.poster``/``.plot``, or a ``(poster, plot)`` pair.
Loading reads safetensors + JSON only (never unpickles). Encoders are built once per instance and prediction
writes no features (no feature cache); the one file it may write is MiniLM's ONNX graph, exported once into
the cache folder (if that is not writable, MiniLM runs in PyTorch), so a read-only install can serve requests.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .decision import check_overrides, decide, per_genre, shown_figures, used_inputs
from .errors import BadInput, BundleError, GenreFusionError
from .io import atomic_dir, read_json

PLOT_MAX_CHARS = 20_000  # the API's limit; longer plots are refused rather than silently truncated


def _title_parts(t: Any, i: int) -> tuple[Any, str | None]:
    if isinstance(t, dict):
        poster, plot = t.get("poster"), t.get("plot")
    elif isinstance(t, (tuple, list)) and len(t) == 2:
        poster, plot = t
    elif hasattr(t, "plot") or hasattr(t, "poster"):
        poster, plot = getattr(t, "poster", None), getattr(t, "plot", None)
    else:
        raise BadInput(f"title {i}: expected {{'poster': ..., 'plot': ...}}, a (poster, plot) pair or a Title, "
                       f"got {type(t).__name__}")
    if plot is not None and not isinstance(plot, str):
        raise BadInput(f"title {i}: plot must be text, got {type(plot).__name__}")
    if isinstance(plot, str):
        if len(plot) > PLOT_MAX_CHARS:
            raise BadInput(f"title {i}: plot has {len(plot):,} characters (limit {PLOT_MAX_CHARS:,})")
        plot = plot if plot.strip() else None
        if plot is not None and any("\ud800" <= c <= "\udfff" for c in plot):
            # lone surrogates: undecodable bytes (argv, a surrogateescape'd file) or a bad JSON escape
            raise BadInput(f"title {i}: plot is not valid UTF-8 text")
    if isinstance(poster, str) and not poster:
        poster = None
    return poster, plot


class GenreClassifier:
    """Multi-label genre classifier from poster and/or plot.

    Learned attributes (after ``fit`` or ``load``): ``genres_`` and its scikit-learn name ``classes_`` (the
    columns of ``predict_proba``), ``thresholds_`` (per genre, tuned on the run's dev scores: the pooled set),
    ``threshold_sets_`` (a ``ThresholdSets``: one set per input combination, see ``thresholds_for``),
    ``model_name_`` (``fused``, ``poster`` or ``plot``), ``metrics_`` (the run's test metrics or None),
    ``config_`` (the bundle's config), ``bundle_`` and ``run_dir_``.

    Picklable (``pickle``, ``copy.deepcopy``, process pools): the encoders, built lazily, and their lock are
    left out of the pickle and rebuilt on first use.
    """

    def __init__(self, config=None, model: str | None = None, text_runtime: str | None = None,
                 image_weights: str | os.PathLike | None = None):
        self.config = config
        self.model = model
        self.image_weights = image_weights  # poster backbone file for a bundle that does not carry it
        self.text_runtime = text_runtime  # MiniLM at prediction: auto|torch|onnxruntime|onnxruntime-int8 (text.py)

    # -- scikit-learn estimator protocol -------------------------------------------------------------------
    _PARAMS = ("config", "model", "text_runtime", "image_weights")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters (scikit-learn's ``clone`` and ``repr`` use them)."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params) -> "GenreClassifier":
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"GenreClassifier has no parameter {k!r} (it has {', '.join(self._PARAMS)})")
            setattr(self, k, v)
        return self

    @property
    def classes_(self) -> list[str]:
        return self.genres_

    @property
    def _lock(self) -> threading.Lock:
        """Encoders are built lazily; one builder at a time under a server. Created on first use (a lock
        cannot be pickled)."""
        lock = self.__dict__.get("_lock_obj")
        if lock is None:
            lock = self.__dict__.setdefault("_lock_obj", threading.Lock())
        return lock

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock_obj", None)
        if "encoders_" in state:
            state["encoders_"] = {}  # rebuilt on first use: backbones are large and some hold native sessions
        return state

    # -- training ----------------------------------------------------------------------------------------
    def fit(self, datasets: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = True, models: Sequence[str] | None = None) -> "GenreClassifier":
        """Train on dataset folders into run dir ``out`` (a temporary folder when None) and load the result."""
        from .train import ALL_MODELS, main

        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="genrefusion-run-"))
        main(list(datasets), out, self.config, resume=resume, models=models or ALL_MODELS, progress=progress)
        self._load(out)
        return self

    # -- persistence -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, model: str | None = None, text_runtime: str | None = None,
             image_weights: str | os.PathLike | None = None) -> "GenreClassifier":
        """Load a run dir (holding ``model/``) or a bundle folder. ``text_runtime``: see ``MiniLMEncoder``;
        ``image_weights``: the poster backbone's weights file, for a bundle that does not carry them."""
        clf = cls(model=model, text_runtime=text_runtime, image_weights=image_weights)
        clf._load(Path(path))
        return clf

    def _load(self, path: Path) -> None:
        from .bundle import load_bundle

        if not path.exists():
            raise BundleError(f"{path}: no such run or model folder")
        self.bundle_ = load_bundle(path, image_weights=self.image_weights)
        name = self.model or self.bundle_.default_model
        if name not in self.bundle_.models:
            raise BundleError(f"{path}: has no {name!r} model (it has {', '.join(self.bundle_.models)})")
        self.run_dir_ = path if (path / "model").is_dir() else path.parent
        self.model_name_ = name
        self.genres_ = self.bundle_.genres
        self.thresholds_ = np.asarray(self.bundle_.thresholds[name], dtype=np.float64)
        self.threshold_sets_ = self.bundle_.threshold_sets[name]
        self.config_ = self.bundle_.config
        mpath = self.bundle_.path / "metrics.json"
        if not mpath.is_file():
            mpath = self.run_dir_ / "metrics.json"
        try:
            self.metrics_ = read_json(mpath, "run metrics") if mpath.is_file() else None
        except GenreFusionError:
            self.metrics_ = None  # metrics are informative only; a damaged file must not block predictions
        self.encoders_: dict = {}

    def save(self, path: str | os.PathLike) -> Path:
        """Copy the bundle (and the run's metrics) to ``path`` atomically; ``load(path)`` reads it back."""
        self._check_fitted()
        path = Path(path)
        if path.exists():
            raise GenreFusionError(f"{path}: already exists; choose a new folder")
        with atomic_dir(path) as tmp:
            shutil.copytree(self.bundle_.path, tmp, dirs_exist_ok=True)
            m = self.run_dir_ / "metrics.json"
            if m.is_file() and not (tmp / "metrics.json").exists():
                shutil.copy2(m, tmp / "metrics.json")
        return path

    # -- prediction --------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "bundle_"):
            raise GenreFusionError("this GenreClassifier is not trained: call fit() or GenreClassifier.load()")

    def predict_proba(self, titles: Iterable, batch_size: int = 32, num_workers: int = 0,
                      progress: bool = False) -> np.ndarray:
        """Probabilities ``[n, G]`` (columns in ``genres_`` order). A title with an unreadable poster raises
        BadInput naming it; a title with neither poster nor plot raises BadInput too."""
        import torch

        from .encoders.inputs import build_inputs
        from .inference import Batcher, predict_rows

        self._check_fitted()
        parts = [_title_parts(t, i) for i, t in enumerate(titles)]
        if not parts:
            return np.zeros((0, len(self.genres_)), dtype=np.float32)
        for i, (poster, plot) in enumerate(parts):
            if poster is None and plot is None:
                raise BadInput(f"title {i}: neither a poster nor a plot to predict from")
        posters, plots = [p for p, _ in parts], [t for _, t in parts]
        with self._lock:  # building encoders (first call) must happen once
            inputs = build_inputs(posters, plots, self.input_encoders(), progress=progress, image_batch_size=batch_size,
                                  text_batch_size=batch_size, num_workers=num_workers)
        if inputs.errors:
            raise BadInput(next(iter(inputs.errors.values())))  # names the poster (path or #index)
        model = self.bundle_.models[self.model_name_]
        batcher = Batcher.for_spec(self.bundle_.spec, inputs)
        with torch.inference_mode():
            return predict_rows(model, np.arange(len(parts)), batcher, batch_size=max(256, batch_size))

    def preprocess_poster(self, poster, name: str | None = None):
        """Decode (path/bytes) and preprocess one poster for the image backbone: a ``[3,S,S]`` float32 tensor that
        ``predict_proba`` accepts in place of the poster, so callers can prepare the next batch in another thread
        while this one is inferred. None when the model reads no poster."""
        from PIL import Image

        from .data.images import load_image

        self._check_fitted()
        enc = self.encoders_.get("image")
        if enc is None:
            with self._lock:  # only while building: predict_proba holds the lock for a whole batch
                enc = self.input_encoders().image
        if enc is None:
            return None
        return enc.preprocess(poster if isinstance(poster, Image.Image) else load_image(poster, name=name))

    def input_encoders(self):
        """The bundle's ``InputEncoders`` (poster backbone, MiniLM, LSTM vocabulary), built on first use (call
        under ``_lock`` when other threads may be predicting)."""
        from .inference import bundle_encoders

        self._check_fitted()
        return bundle_encoders(self.bundle_, self.encoders_, text_runtime=self.text_runtime)

    def thresholds_for(self, used: Sequence[str]) -> tuple[np.ndarray, str]:
        """(per-genre thresholds, set name) for a title supplied with the inputs ``used`` (e.g. ``["plot"]``):
        the set tuned on dev titles with the same inputs, as far as this model reads them (a poster model
        given both uses its poster set); the pooled set when the bundle has none for them."""
        from .thresholds import model_reads, used_key

        self._check_fitted()
        return self.threshold_sets_.pick(used_key(used, model_reads(self.model_name_)))

    def decide(self, scores: np.ndarray, top_k: int | None = None, threshold: float | None = None,
               used: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
        """Predicted genres per row, most probable first (rule: ``genrefusion.decision.decide``). ``used``: each
        row's supplied inputs, which pick its threshold set (default: the pooled set)."""
        rows = np.atleast_2d(scores)
        thr = [self.thresholds_for(u)[0] for u in used] if used is not None else [self.thresholds_] * len(rows)
        return [decide(s, self.genres_, t, top_k, threshold) for s, t in zip(rows, thr)]

    def predict(self, titles: Iterable, top_k: int | None = None, threshold: float | None = None) -> list[list[str]]:
        titles = list(titles)
        used = [used_inputs(*_title_parts(t, i)) for i, t in enumerate(titles)]
        return self.decide(self.predict_proba(titles), top_k, threshold, used)

    def predict_one(self, poster=None, plot: str | None = None, top_k: int | None = None,
                    threshold: float | None = None) -> dict:
        """One title -> ``{"genres", "scores", "thresholds", "used", "threshold_set"}`` (the CLI's and the API's
        JSON); ``thresholds`` is the set the decision used (with ``threshold``, that value for every genre), each
        figure rounded as ``shown_figures`` says."""
        check_overrides(top_k, threshold)
        poster, plot = _title_parts({"poster": poster, "plot": plot}, 0)
        if poster is None and plot is None:
            raise BadInput("give a poster, a plot, or both")
        from .thresholds import check_reads

        used = used_inputs(poster, plot)
        check_reads(self.model_name_, used)
        s = self.predict_proba([{"poster": poster, "plot": plot}])[0]
        return {"genres": self.decide(s, top_k, threshold, [used])[0], **self.shown_result(s, used, threshold)}

    def shown_result(self, scores, used, threshold: float | None = None) -> dict:
        """``{"scores", "thresholds", "used", "threshold_set"}`` of one title's scores as every output shows them:
        ``thresholds`` is what the decision compared them with (the set for ``used``, or ``threshold`` for every
        genre), each figure rounded as ``shown_figures`` says."""
        thr, set_name = self.thresholds_for(used)
        if threshold is not None:
            thr = np.full(len(self.genres_), float(threshold))
        shown, shown_thr = shown_figures(self.genres_, scores, thr)
        return {"scores": shown, "thresholds": shown_thr, "used": used, "threshold_set": set_name}

    def rounded_thresholds(self) -> dict[str, float]:
        """``{genre: threshold}`` of the pooled set as every output shows them (4 decimals)."""
        return per_genre(self.genres_, self.thresholds_)

    def explain(self, poster=None, plot: str | None = None, genres=None, top_k: int | None = None,
                top_words: int = 5, overlays: bool = True, threshold: float | None = None) -> dict:
        """Why this title gets its genres: per genre, the score with both inputs / the poster only / the plot
        only, a weight per plot word and a grid of poster-region weights (+ a PNG overlay), all measured by
        occlusion on this model. Plain JSON; shapes in ``genrefusion.explain``."""
        from .explain import explain

        self._check_fitted()
        poster, plot = _title_parts({"poster": poster, "plot": plot}, 0)
        return explain(self, poster=poster, plot=plot, genres=genres, top_k=top_k, top_words=top_words,
                       overlays=overlays, threshold=threshold)

    def rounded_threshold_sets(self) -> dict[str, dict[str, float]]:
        """``{combination: {genre: threshold}}``: the per-input-combination sets (4 decimals)."""
        return {k: per_genre(self.genres_, v) for k, v in self.threshold_sets_.sets.items()}

    # -- description -------------------------------------------------------------------------------------
    def info(self) -> dict:
        """What a ``GET /model`` shows: genres, thresholds, encoders and the run's test metrics beside the
        always-negative baseline."""
        from .thresholds import tuned_on

        self._check_fitted()
        c = self.config_
        keys = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP", "hamming_loss")
        metrics = None
        if self.metrics_:
            from .baselines import probe_for

            models = self.metrics_.get("models", {})
            metrics = {name: {k: models[name].get(k) for k in keys if k in models[name]}
                       for name in (self.model_name_, "poster", "plot", "always_negative", "tfidf_logreg",
                                    probe_for(self.model_name_))
                       if name in models}
        return {"model": self.model_name_, "models": list(self.bundle_.models), "genres": self.genres_,
                "thresholds": self.rounded_thresholds(), "threshold_sets": self.rounded_threshold_sets(),
                "encoders": {"image": c.get("image_encoder"), "text": c.get("text_encoder")},
                "fusion": c.get("spec", {}).get("fusion"),
                "genrefusion_version": c.get("genrefusion_version"),
                "split": (self.metrics_ or {}).get("split"), "test_metrics": metrics,
                "thresholds_tuned_on": tuned_on(self.metrics_) if self.metrics_ else None}

    def __repr__(self) -> str:
        if not hasattr(self, "bundle_"):
            return "GenreClassifier(unfitted)"
        return f"GenreClassifier({self.model_name_}, {len(self.genres_)} genres, from {self.run_dir_})"
