"""From scores to an answer, the same for every output (``predict_one``, batch files, the API): the genres
decided, the scores and thresholds as rounded ``{genre: value}`` maps, and which inputs were used."""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from .errors import BadInput


def decide(scores: np.ndarray, genres: Sequence[str], thresholds: np.ndarray, top_k: int | None = None,
           threshold: float | None = None) -> list[str]:
    """Predicted genres, most probable first: those at or above their threshold (``threshold``
    overrides every genre's). ``top_k`` alone: the k most probable genres, whatever the thresholds
    ("give me 3 genres"); with ``threshold`` too: at most k of those above it."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    if top_k is not None and threshold is None:
        return [genres[j] for j in order[:top_k]]
    thr = np.full(len(genres), float(threshold)) if threshold is not None else np.asarray(thresholds, float)
    picked = [genres[j] for j in order if scores[j] >= thr[j]]
    return picked[:top_k] if top_k is not None else picked


def check_overrides(top_k, threshold) -> None:
    """BadInput unless ``top_k`` is None or a positive integer and ``threshold`` None or a number in [0, 1] (numpy
    numbers too; not a bool, not NaN)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise BadInput(f"top_k: must be a positive integer, got {top_k!r}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                  or not 0.0 <= threshold <= 1.0):
        raise BadInput(f"threshold: must be a number between 0 and 1, got {threshold!r}")


def per_genre(genres: Sequence[str], values, decimals: int = 4, by_value: bool = False) -> dict[str, float]:
    """``{genre: value rounded to decimals}``, in ``genres`` order or, with ``by_value``, highest first."""
    pairs = zip(genres, values)
    if by_value:
        pairs = sorted(pairs, key=lambda x: -x[1])
    return {g: round(float(v), decimals) for g, v in pairs}


def shown_figures(genres, scores, thresholds, decimals: int = 4) -> tuple[dict[str, float], dict[str, float]]:
    """``({genre: score} highest first, {genre: threshold})`` rounded to ``decimals`` places, or to as many more as
    tell a genre's score from its threshold (full precision if none do): a score printed equal to its threshold
    would contradict a decision that went the other way (0.4970 not picked at a threshold of 0.4970)."""
    def places(s: float, t: float) -> int | None:
        return decimals if s == t else next((d for d in range(decimals, 18) if round(s, d) != round(t, d)), None)

    digits = [places(float(s), float(t)) for s, t in zip(scores, thresholds)]
    shown = [[float(v) if d is None else round(float(v), d) for v in (s, t)]
             for s, t, d in zip(scores, thresholds, digits)]
    order = np.argsort(-np.asarray(scores, float), kind="stable")  # as decide orders the genres
    return {genres[j]: shown[j][0] for j in order}, {g: t for g, (_, t) in zip(genres, shown)}


def used_inputs(poster, plot) -> list[str]:
    """The inputs a prediction was made from (None: absent)."""
    return (["poster"] if poster is not None else []) + (["plot"] if plot is not None else [])
