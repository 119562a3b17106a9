"""Per-genre decision thresholds tuned on dev scores, per input combination, regularised.

"Dev" below is whatever a run tunes on: its dev split, or with cross-fitting (``train.crossfit``) the
out-of-fold scores of every train + dev title (``tuned_on``).

For each genre the threshold maximising its F1 on the dev titles that label it is chosen, from all
candidate cut points at once (scikit-learn's ``precision_recall_curve`` is vectorised over them).
The cut is placed halfway between the chosen score and the next lower dev score, so a test score
equal to a dev positive's score is not decided by float noise. Genres with too few dev positives get
the single global threshold that maximises micro-F1 over all labelled dev entries (a per-genre F1
from 1-2 positives is noise).

``tune_threshold_sets`` does this per input combination (poster only, plot only, both): a model's scores
for plot-only titles are not distributed like its scores for titles with both inputs, so one threshold
tuned on a dev split dominated by poster-only titles misfires on plots. Rare genres' thresholds are
regularised toward a pooled value by a rule chosen by exact leave-one-out on dev (``loo_best_thresholds``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.metrics import precision_recall_curve

from .errors import BadInput


def best_f1_threshold(y, s) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``s >= threshold`` against ``y``; (1.0, 0.0) without positives."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    if y.size == 0 or y.sum() == 0:
        return 1.0, 0.0
    prec, rec, thr = precision_recall_curve(y, s)
    # precision_recall_curve appends a (1, 0) point without a threshold; drop it.
    prec, rec = prec[:-1], rec[:-1]
    denom = prec + rec
    f1 = np.divide(2 * prec * rec, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(np.round(f1, 12)))  # ties: the lowest cut (equal F1s may differ in the last bits)
    t = float(thr[i])
    lower = s[s < t]
    if lower.size:
        t = float((t + lower.max()) / 2.0)
    return t, float(f1[i])


def tune_thresholds(Y, S, M=None, min_positives: int = 3) -> tuple[np.ndarray, dict]:
    """Per-genre thresholds ``[G]`` and info (global threshold, per-genre dev F1, which fell back)."""
    Y = np.asarray(Y, dtype=np.int64)
    S = np.asarray(S, dtype=np.float64)
    M = np.ones_like(Y, dtype=bool) if M is None else np.asarray(M) > 0
    glob, glob_f1 = best_f1_threshold(Y[M], S[M])
    if not (Y[M].sum() > 0):
        glob = 0.5
    thr = np.full(Y.shape[1], glob, dtype=np.float64)
    dev_f1 = {}
    fallback = []
    for j in range(Y.shape[1]):
        rows = M[:, j]
        if Y[rows, j].sum() < min_positives:
            fallback.append(j)
            continue
        thr[j], dev_f1[j] = best_f1_threshold(Y[rows, j], S[rows, j])
    return thr, {"global": float(glob), "global_f1": float(glob_f1), "dev_f1": dev_f1, "fallback": fallback}


# -- per input combination, regularised -------------------------------------------------------------------
# A title's input combination, as the model that scores it sees it: a poster model sees "poster" for a title
# with both inputs. Every model has a set of thresholds per combination it serves plus a pooled set (all dev
# titles that have its inputs), used for a combination without a set and by bundles of older versions.
COMBINATIONS = ("both", "poster", "plot")
NONE = "none"
# The threshold of a genre a model must never predict from an input combination: no dev title that has one of
# the combination's inputs labels the genre, so nothing the model learnt about it from those inputs was ever
# checked (e.g. Musical from a plot when only a poster-only dataset labels Musical). Above any probability.
NEVER = 2.0
# the dev titles whose labels check a combination: those sharing an input with it
SHARES_INPUT = {"both": ("both", "poster", "plot"), "poster": ("both", "poster"), "plot": ("both", "plot")}
# Two levels of regularisation, with rules chosen per model by leave-one-out on dev (``choose_rules``): a
# genre's pooled threshold against one global threshold, and, per combination, a combination's threshold
# against either the genre's pooled one or the combination's own single threshold.
# ("min_support", k): a threshold tuned on fewer than k dev positives is replaced by the level above's;
# ("shrink", k): t = (n * t_own + k * t_above) / (n + k), n = dev positives the own threshold rests on;
# ("toward_combination", k): the same, toward the one threshold that maximises micro-F1 over every genre of the
# combination's dev titles. The pooled threshold is tuned mostly on titles of the other combinations, whose
# scores are distributed differently (the fused model with an input missing), so it can be the wrong anchor
# for a small combination: on the demo's 137 dev titles with both inputs, anchoring them there raised their
# cross-validated dev micro-F1 by ~0.015 and macro-F1 by ~0.05;
# ("combination_global", 0): that one threshold for every genre of the combination;
# ("pooled", 0): the combination gets no set of its own (its thresholds did not generalise on dev).
# Each combination's rule is chosen on its own dev titles (its set decides only its requests), when it has
# enough of them (``OWN_RULE_MIN_TITLES``).
POOLED_RULES = (("min_support", 3), ("min_support", 10), ("shrink", 5), ("shrink", 15), ("shrink", 40))
COMBINATION_RULES = (("min_support", 10), ("min_support", 30), ("shrink", 5), ("shrink", 15), ("shrink", 40),
                     ("shrink", 100), ("toward_combination", 5), ("toward_combination", 15),
                     ("toward_combination", 40), ("toward_combination", 100), ("combination_global", 0),
                     ("pooled", 0))
_NO_K = ("pooled", "combination_global")
_OWN_ANCHOR = ("toward_combination", "combination_global")
# A combination chooses its own rule only with this many dev titles; below, the rule chosen over all dev titles
# (the cornell_tmdb leave-one-dataset-out fold has 6 dev titles with both inputs).
OWN_RULE_MIN_TITLES = 100
# Rules from the fewest free thresholds to the most: a combination choosing its own rule takes the first of these
# whose leave-one-out score is within ``RULE_TOLERANCE`` of the best one (the one-standard-error habit: among
# rules the dev titles cannot tell apart, the simplest). Per-genre cut points tuned on ~900 out-of-fold titles
# fit the pooled datasets' labelling (TMDB lists ~2.8 genres a title, IMDb at most 3, Netflix 1-3) and did not
# carry to a held-out catalogue: on leave-one-dataset-out with cross-fitting, imdb_top250's fused micro-F1 was
# 0.556 with the best-scoring rule (shrink:100; 3.9 genres predicted a title against 2.3 true) and 0.623 with 0.01
# (one threshold for the combination), cornell_tmdb 0.579 both ways, netflix_tv 0.566 -> 0.563; on the dev
# titles with both inputs of three splits (benchmarks/crossfit.py's runs) +0.011 / +0.006 / -0.001, over all
# dev titles -0.001 / +0.003 / -0.005. 0.005 changed nothing held out. benchmarks/README.md, "Cross-fitting".
SIMPLEST_FIRST = (("combination_global", 0), ("pooled", 0), ("toward_combination", 100), ("toward_combination", 40),
                  ("toward_combination", 15), ("toward_combination", 5), ("shrink", 100), ("shrink", 40),
                  ("shrink", 15), ("shrink", 5), ("min_support", 30), ("min_support", 10))
RULE_TOLERANCE = 0.01


def model_reads(name: str) -> tuple[str, ...]:
    """The inputs a model or baseline reads, by its name in a run (poster, plot*, fused, baselines)."""
    if name == "always_negative":
        return ()
    if name == "tfidf_logreg" or name.startswith("plot") or name == "linear_probe_plot":
        return ("plot",)
    if name in ("poster", "linear_probe_poster"):
        return ("poster",)
    return ("poster", "plot")


def used_key(used, reads) -> str:
    """The combination key of one request that supplied the inputs ``used`` (e.g. ``["plot"]``)."""
    return str(combination_keys(["poster" in used], ["plot" in used], reads)[0])


def combination_keys(image_ok, text_ok, reads=("poster", "plot")) -> np.ndarray:
    """Per title, the combination of the inputs in ``reads`` it has: both, poster, plot or none."""
    img = np.asarray(image_ok, bool) & ("poster" in reads)
    txt = np.asarray(text_ok, bool) & ("plot" in reads)
    return np.where(img & txt, "both", np.where(img, "poster", np.where(txt, "plot", NONE))).astype(object)


def inputs_of(keys) -> tuple[np.ndarray, np.ndarray]:
    """(image_ok, text_ok) of titles with combinations ``keys``: the inverse of ``combination_keys``."""
    keys = np.asarray(keys)
    return np.isin(keys, ("both", "poster")), np.isin(keys, ("both", "plot"))


def served_combinations(reads) -> tuple[str, ...]:
    """The combinations a model reading ``reads`` tells apart (a poster model: 'poster' only)."""
    reads = tuple(reads)
    return COMBINATIONS if len(reads) == 2 else reads


@dataclass
class ThresholdSets:
    """Per-genre thresholds per input combination, and the pooled set every other request uses."""

    pooled: np.ndarray                                   # [G]
    sets: dict[str, np.ndarray] = field(default_factory=dict)  # combination -> [G]

    def pick(self, key: str) -> tuple[np.ndarray, str]:
        """(thresholds, name of the set) for a title with input combination ``key``. A title with no input the
        model reads (``NONE``) gets no genre: its score is the model's prior, the same for every such title, and a
        threshold tuned on titles with input would turn that into a guess (every plotless title 'Drama')."""
        if key == NONE:
            return np.full(len(self.pooled), NEVER), NONE
        if key in self.sets:
            return self.sets[key], key
        return self.pooled, "pooled"

    def rows(self, keys) -> np.ndarray:
        """Thresholds ``[N, G]`` of titles with combinations ``keys``."""
        keys = list(keys)
        if not keys:
            return np.zeros((0, len(self.pooled)))
        return np.stack([self.pick(k)[0] for k in keys])

    def to_json(self, ndigits: int = 6) -> dict:
        r = lambda t: [round(float(v), ndigits) for v in t]  # noqa: E731
        return {"pooled": r(self.pooled), "sets": {k: r(v) for k, v in self.sets.items()}}

    @classmethod
    def from_json(cls, obj) -> "ThresholdSets":
        """From ``to_json``'s dict, or a plain per-genre list (bundles that stored one set)."""
        if isinstance(obj, dict):
            return cls(np.asarray(obj["pooled"], np.float64),
                       {k: np.asarray(v, np.float64) for k, v in (obj.get("sets") or {}).items()})
        return cls(np.asarray(obj, np.float64))


def _round(f):
    # equal F1 values reached by different float paths must tie (ties go to the lowest cut)
    return np.round(f, 12)


def _first_argmax_upto(f) -> np.ndarray:
    """For each k, the lowest index of the maximum of ``f[0..k]``."""
    rec = np.r_[True, f[1:] > np.maximum.accumulate(f)[:-1]]  # strict new records
    return np.maximum.accumulate(np.where(rec, np.arange(len(f)), 0))


def _first_argmax_from(f) -> np.ndarray:
    """For each k, the lowest index of the maximum of ``f[k..]``."""
    r = f[::-1]
    rec = np.r_[True, r[1:] >= np.maximum.accumulate(r)[:-1]]  # non-strict: a lower index wins ties
    return (len(f) - 1 - np.maximum.accumulate(np.where(rec, np.arange(len(f)), 0)))[::-1]


def loo_best_thresholds(y, s) -> tuple[float, np.ndarray]:
    """``best_f1_threshold(y, s)[0]`` and, for every row i, the threshold tuned without row i (exact, O(n log n)).

    Cuts are the distinct scores v_0 < ... < v_{C-1}; cut k predicts ``s >= v_k``. Leaving row i (score
    v_r) out takes it from the TP (or FP) count of the cuts k <= r and removes cut r when row i was its
    only score; cuts above r are untouched. So the best cut without row i is the better of a prefix
    maximum (k <= r, counts less row i) and a suffix maximum (k > r), both precomputed for y_i = 0 and 1.
    Ties in F1 go to the lowest cut, as in ``best_f1_threshold``; the threshold is placed halfway down to
    the next remaining score.
    """
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    n = len(y)
    full = best_f1_threshold(y, s)[0]
    if n == 0:
        return full, np.zeros(0)
    v, r, cnt = np.unique(s, return_inverse=True, return_counts=True)
    C = len(v)
    pos_at = np.bincount(r, weights=y, minlength=C)
    tp = np.cumsum(pos_at[::-1])[::-1]                 # positives with s >= v_k
    tot = np.cumsum(cnt[::-1])[::-1].astype(np.float64)  # titles with s >= v_k
    P = int(y.sum())
    gone = cnt[r] == 1                                  # row i's cut disappears with it
    k = np.zeros(n, dtype=np.int64)
    for yv in (0, 1):
        sel = np.flatnonzero(y == yv)
        if not len(sel):
            continue
        d_hi, d_lo = tot + P - yv, tot - 1 + P - yv
        hi = _round(np.divide(2.0 * tp, d_hi, out=np.zeros(C), where=d_hi > 0))
        lo = _round(np.divide(2.0 * (tp - yv), d_lo, out=np.zeros(C), where=d_lo > 0))
        up_to, from_ = _first_argmax_upto(lo), _first_argmax_from(hi)
        ri = r[sel]
        last_lo = ri - gone[sel]                        # cuts 0..last_lo contain row i
        k_lo = up_to[np.maximum(last_lo, 0)]
        has_lo = last_lo >= 0
        k_hi = from_[np.minimum(ri + 1, C - 1)]
        has_hi = ri + 1 < C
        take_lo = has_lo & (~has_hi | (lo[k_lo] >= hi[k_hi]))
        k[sel] = np.where(take_lo, k_lo, k_hi)
    t = v[k]
    # next remaining score below the cut: v[k-1], or v[k-2] when v[k-1] was row i's alone
    prev = k - 1 - ((k - 1 == r) & gone)
    t = np.where(prev >= 0, (t + v[np.maximum(prev, 0)]) / 2.0, t)
    return full, np.where(P - y > 0, t, 1.0)


def parse_rules(rule: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """'min_support:3' / 'shrink:5' (both levels) or 'POOLED / COMBINATION' (e.g. 'shrink:15 / pooled',
    'shrink:5 / toward_combination:40') -> ((name, k) of the pooled level, (name, k) of the combination level)."""
    parts = [p.strip() for p in str(rule).split("/")]
    if len(parts) == 1:
        parts *= 2
    out = []
    for level, p in zip(("pooled", "combination"), parts):
        name, _, k = p.partition(":")
        combination = level == "combination" and len(parts) == 2
        if combination and p in _NO_K:
            out.append((p, 0))
        elif (name in ("min_support", "shrink") or (combination and name == "toward_combination")) \
                and k.isdigit() and int(k) >= 1 and len(parts) == 2:
            out.append((name, int(k)))
        else:
            raise ValueError(f"threshold rule must be min_support:K or shrink:K (K >= 1), or 'POOLED / "
                             f"COMBINATION' where COMBINATION may also be toward_combination:K, "
                             f"combination_global or pooled, got {rule!r}")
    return out[0], out[1]


def _name(rule) -> str:
    return rule[0] if rule[0] in _NO_K else f"{rule[0]}:{rule[1]}"


def rule_name(rules) -> str:
    """'POOLED / COMBINATION', or 'POOLED / both: R, plot: R, ...' when the combinations' rules differ."""
    r_pool, r_comb = rules
    if isinstance(r_comb, dict):
        names = {c: _name(r) for c, r in r_comb.items()}
        if len(set(names.values())) > 1:
            return f"{_name(r_pool)} / " + ", ".join(f"{c}: {n}" for c, n in names.items())
        r_comb = next(iter(r_comb.values()), ("pooled", 0))
    return f"{_name(r_pool)} / {_name(r_comb)}"


def _combine(rule, t_own, n_own, t_above, t_combination=None):
    """One level of a rule: the own threshold (tuned on n_own dev positives) against the level above's (or, for
    the toward_combination rules, the combination's single threshold)."""
    name, k = rule
    if name == "min_support":
        return np.where(n_own >= k, t_own, t_above)
    if name == "pooled":
        return t_above + 0.0 * t_own
    if name == "combination_global":
        return t_combination + 0.0 * t_own
    anchor = t_combination if name == "toward_combination" else t_above
    return (n_own * t_own + k * anchor) / (n_own + k)


@dataclass
class _Genre:
    """One genre's dev data and its tuned (and leave-one-out) thresholds per level."""

    y: np.ndarray             # dev titles labelled for the genre that have an input the model reads
    s: np.ndarray
    keys: np.ndarray          # the rows' combinations
    pooled: tuple             # (t, t_loo per row, positives)
    own: dict                 # combination -> (t, t_loo per row of that combination (aligned to rows), positives)


def _genre_levels(y, s, keys, combos) -> _Genre:
    t_p, loo_p = loo_best_thresholds(y, s)
    own = {}
    for c in combos:
        sel = keys == c
        t_c, loo_c = loo_best_thresholds(y[sel], s[sel])
        full = np.full(len(y), np.nan)
        full[sel] = loo_c
        own[c] = (t_c, full, int(y[sel].sum()))
    return _Genre(y, s, keys, (t_p, loo_p, int(y.sum())), own)


def _apply(rules, g: _Genre, t_global: float, t_comb: dict, loo: bool):
    """Thresholds of one genre under ``rules`` (pooled level, {combination: rule}): (pooled, {combination: t})
    tuned on all rows or, with ``loo``, the threshold each row would get with itself left out (per row).
    ``t_comb``: each combination's single threshold (like the global one, kept in leave-one-out: one title
    hardly moves a cut tuned on every genre's entries)."""
    r_pool, r_comb = rules
    t_p, loo_p, n_p = g.pooled
    if not loo:
        pooled = float(_combine(r_pool, t_p, n_p, t_global))
        return pooled, {c: float(_combine(r_comb[c], t_c, n_c, pooled, t_comb[c]))
                        for c, (t_c, _, n_c) in g.own.items()}
    pooled = _combine(r_pool, loo_p, n_p - g.y, t_global)
    out = pooled.copy()
    for c, (_, loo_c, n_c) in g.own.items():
        sel = g.keys == c
        out[sel] = _combine(r_comb[c], loo_c[sel], n_c - g.y[sel], pooled[sel], t_comb[c])
    return out


def _f1s(tp, fp, fn) -> tuple[float, float]:
    """(micro-F1, macro-F1 over genres with a positive) from per-genre counts."""
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    has = (tp + fn) > 0
    per = 2 * tp[has] / np.maximum(2 * tp[has] + fp[has] + fn[has], 1)
    return float(micro), float(per.mean()) if has.any() else 0.0


def _loo_counts(rules, levels: list[_Genre], t_global, t_comb, combos) -> dict:
    """Per combination, [3, G] counts (tp, fp, fn) of its dev titles, each decided by thresholds tuned without it."""
    out = {c: np.zeros((3, len(levels))) for c in combos}
    for j, g in enumerate(levels):
        if not len(g.y):
            continue
        pred = g.s >= _apply(rules, g, t_global, t_comb, loo=True)
        for c, cnt in out.items():
            sel = g.keys == c
            p, y = pred[sel], g.y[sel] == 1
            cnt[:, j] = (p & y).sum(), (p & ~y).sum(), (~p & y).sum()
    return out


def _score(cnt) -> dict:
    micro, macro = _f1s(*cnt)
    return {"micro_f1": round(micro, 5), "macro_f1": round(macro, 5), "score": round((micro + macro) / 2, 5)}


def _simplest_near_best(rated: dict):
    """The first rule of ``SIMPLEST_FIRST`` scoring within ``RULE_TOLERANCE`` of the best of ``rated``."""
    top = max(rated.values())
    return next((r for r in SIMPLEST_FIRST if r in rated and rated[r] >= top - RULE_TOLERANCE),
                max(rated, key=rated.get))


def choose_rules(levels: list[_Genre], t_global: float, t_comb: dict, multi: bool,
                 n_titles: dict | None = None) -> tuple[tuple, dict]:
    """The rules with the best leave-one-out dev F1 (mean of micro and macro: micro alone would ignore the rare
    genres whose thresholds this is about). Each dev title is decided by thresholds tuned without it. For every
    pooled rule, a combination with at least ``OWN_RULE_MIN_TITLES`` dev titles (``n_titles``) takes the
    combination rule that scores best on its own dev titles; a smaller one takes the rule anchored to the pooled
    thresholds that scores best over all dev titles (a choice, or a single cut, made on a handful of titles is
    noise). The pooled rule whose choices score best over all dev titles wins. ``multi``: the model serves
    several combinations (else its one set is the pooled one). Returns ((pooled rule, {combination: rule}),
    scores by pooled rule)."""
    combos = list(t_comb)
    n_titles = n_titles or {}
    scores, best = {}, None
    for r_pool in POOLED_RULES:
        chosen, total, by_combination = {}, np.zeros((3, len(levels))), {}
        per_rule = {r: _loo_counts((r_pool, {c: r for c in combos}), levels, t_global, t_comb, combos)
                    for r in (COMBINATION_RULES if multi else [("pooled", 0)])}
        over_all = {r: _score(sum(cnt.values(), np.zeros((3, len(levels)))))["score"] for r, cnt in per_rule.items() if r[0] not in _OWN_ANCHOR}
        joint = max(over_all, key=over_all.get)  # ties: the first listed
        for c in combos:
            rated = {r: _score(cnt[c])["score"] for r, cnt in per_rule.items()}
            own = n_titles.get(c, 0) >= OWN_RULE_MIN_TITLES
            chosen[c] = _simplest_near_best(rated) if own else joint
            total += per_rule[chosen[c]][c]
            if multi:
                by_combination[c] = {"chosen_on": "its own dev titles" if own else "all dev titles",
                                     **{_name(r): v for r, v in rated.items()}}
        scores[_name(r_pool)] = {**_score(total), **({"by_combination": by_combination} if multi else {})}
        if best is None or scores[_name(r_pool)]["score"] > scores[_name(best[0])]["score"]:
            best = (r_pool, chosen)
    return best, scores


def tune_threshold_sets(Y, S, M, keys, combos=COMBINATIONS, rule: str = "auto",
                        genres: Sequence[str] | None = None) -> tuple[ThresholdSets, dict]:
    """Per-genre thresholds for every combination in ``combos`` and a pooled set, on dev.

    ``keys``: each dev title's input combination as the model sees it (``combination_keys``); titles with
    'none' (no input the model reads) are not used. A combination's threshold for a genre is tuned on the
    dev titles with exactly that combination and regularised toward the genre's pooled threshold (all
    those titles, itself regularised toward one global threshold: micro-F1 over every labelled entry) or
    toward the combination's own single threshold.
    ``rule``: 'auto' (choose the rules by leave-one-out on dev: the pooled level's, and each combination's on
    its own titles) or a fixed one (``parse_rules``).
    A model serving one combination has one set: its pooled one, under that combination's name. A genre that no
    dev title sharing an input with a combination labels is never predicted from that combination (``NEVER``;
    listed in the info under ``never``). Returns
    the sets and an info dict for metrics.json (rules, leave-one-out scores, per set and genre the dev
    positives each threshold rests on, and the genres that fell back).
    """
    Y = np.asarray(Y, dtype=np.int64)
    S = np.asarray(S, dtype=np.float64)
    M = np.ones_like(Y, dtype=bool) if M is None else np.asarray(M) > 0
    keys = np.asarray(keys, dtype=object)
    G = Y.shape[1]
    genres = list(genres) if genres is not None else [str(j) for j in range(G)]
    seen = keys != NONE
    served = list(combos)
    combos = [c for c in combos if (keys == c).any()]  # a combination without dev titles gets no set
    lab = M & seen[:, None]

    def single_cut(rows):  # the one threshold maximising micro-F1 over every labelled entry of ``rows``
        sel = lab & rows[:, None]
        return best_f1_threshold(Y[sel], S[sel])[0] if Y[sel].sum() else 0.5

    t_global = single_cut(seen)
    t_comb = {c: single_cut(keys == c) for c in combos}
    levels = []
    for j in range(G):
        rows = lab[:, j]
        levels.append(_genre_levels(Y[rows, j], S[rows, j], keys[rows], combos))
    multi = len(served) > 1
    loo = None
    if rule == "auto":
        chosen, loo = choose_rules(levels, t_global, t_comb, multi, {c: int((keys == c).sum()) for c in combos})
    else:
        r_pool, r_comb = parse_rules(rule)
        chosen = (r_pool, {c: r_comb if multi else ("pooled", 0) for c in combos})
    r_combs = chosen[1]
    applied = [_apply(chosen, g, t_global, t_comb, loo=False) for g in levels]
    pooled = np.array([a[0] for a in applied])
    if multi:
        kept = [c for c in combos if r_combs[c][0] != "pooled"]
        sets = {c: np.array([a[1][c] for a in applied]) for c in kept}
    else:  # one combination: its set is the pooled one (tuned on every dev title with the model's input)
        kept, sets = list(combos), {c: pooled.copy() for c in combos}
    never = {}
    for c in combos:
        unchecked = ~(lab & np.isin(keys, SHARES_INPUT[c])[:, None]).any(0)
        if unchecked.any():
            sets[c] = np.where(unchecked, NEVER, sets.get(c, pooled))
            never[c] = [g for g, u in zip(genres, unchecked) if u]
            if not multi:
                pooled = sets[c].copy()
    info = {"rule": rule_name(chosen), "chosen_by": "leave-one-out on dev" if loo else "config",
            "leave_one_out": loo, "global": round(float(t_global), 6),
            "combination_global": {c: round(float(t), 6) for c, t in t_comb.items()},
            "combination_rules": {c: _name(r) for c, r in r_combs.items()},
            "pooled": _rests_on(chosen[0], genres, [g.pooled[2] for g in levels], int(seen.sum())),
            "sets": {c: _rests_on(r_combs[c] if multi else ("pooled", 0), genres, [g.own[c][2] for g in levels],
                                  int((keys == c).sum()), own=multi) for c in combos},
            "no_set": [c for c in served if c not in kept and c not in never],
            "never": never}
    return ThresholdSets(pooled, sets), info


def _rests_on(rule, genres, positives, n_titles, own: bool = True) -> dict:
    """How many dev positives each genre's threshold rests on, and which genres fell back a level (all of
    them when the combination level is 'pooled'; ``own=False``: a single-combination model's set, which
    is its pooled set)."""
    name, k = rule
    low = {"min_support": k, "shrink": 1, "toward_combination": 1, "pooled": float("inf"),
           "combination_global": float("inf")}[name] if own else 0
    out = {"dev_titles": n_titles, "positives": dict(zip(genres, map(int, positives))),
           "fallback": [g for g, n in zip(genres, positives) if n < low]}
    if name in ("shrink", "toward_combination"):
        out["own_weight"] = {g: round(n / (n + k), 3) for g, n in zip(genres, positives)}
    return out


def tuned_on(m: dict) -> str:
    """Which titles a run tuned its thresholds and lexical blend on: its dev split, or with cross-fitting the
    out-of-fold scores of every train + dev title."""
    cf = m.get("crossfit")
    if cf and cf.get("folds"):
        return (f"the out-of-fold scores of {sum(cf.get('fold_titles') or []):,} train + dev titles "
                f"({cf.get('folds')}-fold cross-fitting)")
    dev = (m.get("split") or {}).get("dev")
    return f"{dev:,} dev titles" if isinstance(dev, int) else "the dev titles"


def check_reads(model_name: str, used: Sequence[str]) -> None:
    """BadInput when the model reads none of the inputs ``used``: its answer would be the genre prior, the same
    for every such title."""
    reads = model_reads(model_name)
    if used_key(used, reads) == NONE:
        raise BadInput(f"the {model_name} model reads only the {' and '.join(reads)}; this title gave only its "
                       f"{used[0]}")
