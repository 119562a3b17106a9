"""The run report: PNG figures and one self-contained ``report.html`` in the run dir.

Everything comes from the run's ``metrics.json`` (metrics, thresholds, training histories, split
counts, timings) and ``test_scores.npz`` (per-title test scores, for precision-recall curves). The
HTML embeds the PNGs as data URIs, so the file can be mailed or opened anywhere on its own.

Figures (``RUN_DIR/report/``), the paper's Figs. 2-7 among them:
- ``genre_distribution.png``: training titles per genre, stacked by dataset and kind (movie / tv) (Fig. 2);
- ``accuracy.png``: per-label accuracy (fastai's ``accuracy_multi`` at 0.5, the paper's metric) beside
  micro/macro F1 and mAP for every model, each bar with the always-negative baseline's bar beside it (Fig. 3);
- ``main_metrics.png``: micro/macro/weighted/samples F1 and mAP of every model beside the baselines;
- ``per_genre_f1.png``: per-genre test F1 of every model beside ``always_negative`` and ``tfidf_logreg``;
- ``confusion_<model>.png``: one 2x2 confusion matrix (TN/FP/FN/TP) per genre for each of the poster, plot
  and fused models (Figs. 4-7);
- ``pr_curves.png``: per-genre test precision-recall curves of the fused model, with the operating point of
  its decision thresholds (one set per input combination) marked;
- ``training_curves.png``: train/dev loss and the dev selection score per epoch of every stage.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .errors import GenreFusionError
from .io import read_json, write_bytes, write_text
from .metrics import SUMMARY, verdict_lines
from .thresholds import tuned_on

BASELINES = ("always_negative", "tfidf_logreg", "linear_probe_fused", "linear_probe_poster", "linear_probe_plot")
# model order in tables and figures: ours first (the main three, then the plot candidates), baselines last
_ORDER = ("fused", "poster", "plot", "plot_minilm", "plot_lstm", "linear_probe_fused", "linear_probe_poster",
          "linear_probe_plot", "tfidf_logreg", "always_negative")
_LABEL = {"fused": "fused", "poster": "poster", "plot": "plot", "plot_minilm": "plot (MiniLM)",
          "plot_lstm": "plot (LSTM)", "tfidf_logreg": "TF-IDF + logreg", "always_negative": "always negative",
          "linear_probe_fused": "probe: both", "linear_probe_poster": "probe: poster",
          "linear_probe_plot": "probe: plot"}
_COLOR = {"fused": "#1f77b4", "poster": "#ff7f0e", "plot": "#2ca02c", "plot_minilm": "#98df8a",
          "plot_lstm": "#8c564b", "tfidf_logreg": "#9467bd", "always_negative": "#7f7f7f",
          "linear_probe_fused": "#aec7e8", "linear_probe_poster": "#ffbb78", "linear_probe_plot": "#c5e0b4"}


def _ordered(names) -> list[str]:
    names = list(names)
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    return str(v)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # tight: no clipped labels or legends
    return buf.getvalue()


def _tight(fig) -> None:
    """``tight_layout`` that leaves room for the figure's suptitle (about 0.45 in, whatever the figure's height),
    which ``tight_layout`` alone lets the top row's panel titles run into."""
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))


def _grid(n: int, max_cols: int = 6) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return max(1, math.ceil(n / cols)), cols


def _panels(plt, n: int, cell: tuple[float, float], max_cols: int = 6):
    """A figure of ``n`` panels on a grid: ``(fig, rows, cols, [(k, ax) for each panel])``; the spare cells are blank."""
    rows, cols = _grid(n, max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, rows, cols, list(enumerate(axes.flat))[:n]


# -- figures ----------------------------------------------------------------------------------------------
def fig_main_metrics(plt, models: dict) -> bytes | None:
    names = [n for n in _ordered(models) if models[n].get("micro_f1") is not None or n == "always_negative"]
    keys = ["micro_f1", "macro_f1", "weighted_f1", "samples_f1", "mAP"]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(keys) + 0.3 * len(names) * len(keys) / 2), 4.2))
    w = 0.8 / len(names)
    x = np.arange(len(keys))
    for i, n in enumerate(names):
        vals = [models[n].get(k) or 0.0 for k in keys]
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * w, vals, w, label=_LABEL.get(n, n), color=_COLOR.get(n))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=6, padding=1, rotation=90)
    ax.set_xticks(x, [k.replace("_", " ") for k in keys])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("test score")
    ax.set_title("Test metrics: models vs baselines")
    ax.legend(fontsize=8, ncol=min(4, len(names)), loc="upper left", bbox_to_anchor=(0, -0.1))
    ax.grid(axis="y", alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


def _group_name(group: dict) -> str:
    kind = group["kind"] if group["kind"] != "unknown" else "kind not given"
    return f"{group['dataset']} ({kind})"


def fig_genre_distribution(plt, dist: dict | None) -> bytes | None:
    """Training titles per genre (labelled positives), one stacked bar segment per (dataset, kind)."""
    groups = [g for g in (dist or {}).get("groups") or [] if g.get("titles")]
    genres = list((dist or {}).get("genres") or [])
    if not groups or not genres:
        return None
    totals = {g: sum(gr["positives"].get(g, 0) for gr in groups) for g in genres}
    genres = sorted(genres, key=lambda g: -totals[g])
    fig, ax = plt.subplots(figsize=(8, max(3.5, 0.3 * len(genres) + 1)))
    y = np.arange(len(genres))
    left = np.zeros(len(genres))
    cmap = plt.get_cmap("tab20")
    for k, gr in enumerate(groups):
        vals = np.array([gr["positives"].get(g, 0) for g in genres], dtype=float)
        ax.barh(y, vals, left=left, color=cmap(k % 20), label=f"{_group_name(gr)}, {gr['titles']} titles")
        left += vals
    for j, g in enumerate(genres):
        ax.text(left[j], j, f" {int(left[j])}", va="center", fontsize=7)
    return _genre_bars_png(plt, fig, ax, genres, "training titles labelled with the genre",
                           "Genre distribution of the training split, by dataset and kind", 7)


def _genre_bars_png(plt, fig, ax, ticks, xlabel: str, title: str, legend_size: int) -> bytes:
    """Finish a chart of horizontal bars, one row per genre (first on top), as PNG bytes."""
    ax.set_yticks(np.arange(len(ticks)), ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    out = _png(fig)
    plt.close(fig)
    return out


ACCURACY_KEYS = (("per_label_accuracy", "per-label accuracy\n(accuracy_multi @0.5)"), ("micro_f1", "micro-F1"),
                 ("macro_f1", "macro-F1"), ("mAP", "mAP"))


def fig_accuracy(plt, models: dict) -> bytes | None:
    """The paper's Fig. 3, made honest: every model's per-label accuracy (and F1/mAP), each bar with the
    always-negative baseline's bar beside it, since predicting no genre at all already scores high accuracy."""
    base = models.get("always_negative") or {}
    names = [n for n in _ordered(models) if n != "always_negative" and models[n].get("per_label_accuracy") is not None]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(ACCURACY_KEYS), figsize=(3.2 * len(ACCURACY_KEYS), 3.8), squeeze=False)
    x = np.arange(len(names))
    for ax, (key, title) in zip(axes[0], ACCURACY_KEYS):
        vals = [models[n].get(key) or 0.0 for n in names]
        digits = 3 if key == "per_label_accuracy" else 2  # accuracies sit within a few thousandths of the baseline
        bars = ax.bar(x - 0.2, vals, 0.4, color=[_COLOR.get(n, "C0") for n in names], label="model")
        # upright labels: side by side, two bars of about the same height would print over each other
        ax.bar_label(bars, labels=[f"{v:.{digits}f}" for v in vals], fontsize=6, padding=1, rotation=90)
        b = base.get(key) or 0.0
        nb = ax.bar(x + 0.2, [b] * len(names), 0.4, color=_COLOR["always_negative"], alpha=0.55, hatch="//",
                    label="always negative")
        ax.bar_label(nb, labels=[f"{b:.{digits}f}"] * len(names), fontsize=6, padding=1, color="#555", rotation=90)
        ax.set_xticks(x, [_LABEL.get(n, n) for n in names], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 1.2)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(fontsize=7, loc="upper right")  # where the F1 bars leave room
    fig.suptitle("Test accuracy (the paper's metric) beside F1 and mAP; hatched = always-negative baseline",
                 fontsize=10)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def fig_per_genre_f1(plt, models: dict, genres: list[str]) -> bytes | None:
    names = _ordered(n for n in models if models[n].get("per_genre"))
    if not names or not genres:
        return None
    fig, ax = plt.subplots(figsize=(8, max(4, 0.42 * len(genres) * max(1, len(names) / 3))))
    h = 0.85 / len(names)
    y = np.arange(len(genres))
    for i, n in enumerate(names):
        pg = models[n]["per_genre"]
        vals = [(pg.get(g) or {}).get("f1") or 0.0 for g in genres]
        ax.barh(y + (i - (len(names) - 1) / 2) * h, vals, h, label=_LABEL.get(n, n), color=_COLOR.get(n))
    sup = models[names[0]]["per_genre"]
    ax.set_xlim(0, 1)
    return _genre_bars_png(plt, fig, ax, [f"{g} (n={(sup.get(g) or {}).get('support', 0)})" for g in genres],
                           "test F1 at the decision thresholds (n = labelled test positives)", "Per-genre F1", 8)


def fig_confusion_grid(plt, model: dict, genres: list[str], name: str, probe: dict | None = None) -> bytes | None:
    """2x2 matrices per genre; each panel's title has the model's F1 and, when given, its linear probe's."""
    pg = model.get("per_genre") or {}
    probe_pg = (probe or {}).get("per_genre") or {}
    genres = [g for g in genres if (pg.get(g) or {}).get("labelled")]
    if not genres:
        return None
    fig, _, _, panels = _panels(plt, len(genres), (2.1, 2.2))
    for k, ax in panels:
        g = genres[k]
        c = pg[g]
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        # colour by row share: each row (true negative / true positive titles) reads as rates
        share = mat / np.maximum(mat.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, f"{['TN', 'FP', 'FN', 'TP'][2 * i + j]}\n{v}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
        vs = f", probe {_fmt((probe_pg.get(g) or {}).get('f1'), 2)}" if probe_pg else ""
        ax.set_title(f"{g} (F1 {_fmt(c.get('f1'), 2)}{vs})", fontsize=8)
        ax.set_xticks([0, 1], ["pred 0", "pred 1"], fontsize=6)
        ax.set_yticks([0, 1], ["true 0", "true 1"], fontsize=6)
    fig.suptitle(f"Per-genre confusion matrices on test ({_LABEL.get(name, name)} model)", fontsize=10)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def fig_pr_curves(plt, scores, name: str, per_genre: dict | None, label: str) -> bytes | None:
    """Per-genre test precision-recall curves, each with the operating point ``per_genre`` reports (the model's
    decision thresholds: each title decided with its input combination's set), marked ``label``."""
    from matplotlib.lines import Line2D
    from sklearn.metrics import precision_recall_curve

    key = f"S_{name}"
    if scores is None or key not in scores or not {"genres", "Y", "M"} <= set(scores):
        return None
    genres = [str(g) for g in scores["genres"]]
    Y, M, S = scores["Y"].astype(bool), scores["M"].astype(bool), scores[key]
    todo = [j for j in range(len(genres)) if Y[M[:, j], j].any()]
    if not todo:
        return None
    from .baselines import probe_for

    probe = probe_for(name)
    probe = probe if f"S_{probe}" in scores else None
    fig, rows, cols, panels = _panels(plt, len(todo), (2.2, 2.2))
    for k, ax in panels:
        j = todo[k]
        lab = M[:, j]
        y, s = Y[lab, j], S[lab, j]
        if probe is not None:  # the linear probe on the same frozen features, beside the model
            p_prec, p_rec, _ = precision_recall_curve(y, scores[f"S_{probe}"][lab, j])
            ax.plot(p_rec, p_prec, color=_COLOR.get(probe, "C1"), lw=1.0)
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, color=_COLOR.get(name, "C0"), lw=1.2)
        ax.axhline(y.mean(), color="grey", lw=0.8, ls="--")  # a random ranking's precision
        c = (per_genre or {}).get(genres[j]) or {}
        if c.get("precision") is not None and c.get("recall") is not None:
            ax.plot(c["recall"], c["precision"], "o", color="black", ms=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{genres[j]} (n={int(y.sum())})", fontsize=8)
        ax.tick_params(labelsize=6)
        if k % cols == 0:
            ax.set_ylabel("precision", fontsize=7)
        if k // cols == rows - 1:
            ax.set_xlabel("recall", fontsize=7)
    fig.suptitle(f"Test precision-recall per genre ({_LABEL.get(name, name)} model)", fontsize=9)
    fig.tight_layout()
    handles = [Line2D([], [], color=_COLOR.get(name, "C0"), lw=1.2, label=f"{_LABEL.get(name, name)} model")]
    handles += [Line2D([], [], color=_COLOR.get(probe, "C1"), lw=1.0, label=_LABEL.get(probe, probe))] if probe else []
    handles += [Line2D([], [], color="black", marker="o", ls="", ms=3, label=label),
                Line2D([], [], color="grey", lw=0.8, ls="--", label="positive rate (a random ranking)")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(handles), fontsize=7,
               frameon=False)
    out = _png(fig)
    plt.close(fig)
    return out


def fig_training_curves(plt, training: dict, metric: str) -> bytes | None:
    stages = [(k, v) for k, v in training.items() if isinstance(v, dict) and v.get("history")]
    if not stages:
        return None
    fig, _, _, panels = _panels(plt, len(stages), (4.2, 3.0), max_cols=3)
    handles = {}  # one legend for the figure, below it: a legend in a panel sits on some stage's curves
    for k, ax in panels:
        name, info = stages[k]
        hist = info["history"]
        ep = [h["epoch"] for h in hist]
        if name == "lm":
            ax.plot(ep, [h.get("train_loss") for h in hist], "o-", label="LM train loss", ms=3)
            if any("valid_loss" in h for h in hist):
                ax.plot(ep, [h.get("valid_loss") for h in hist], "s-", label="LM dev loss", ms=3)
            ax.set_title("lm (language-model fine-tuning)", fontsize=9)
            ax.set_ylabel("cross-entropy", fontsize=8)
        else:
            ax.plot(ep, [h.get("train_loss") for h in hist], "o-", label="train loss", ms=3)
            if any(h.get("dev_loss") is not None for h in hist):
                ax.plot(ep, [h.get("dev_loss") for h in hist], "s-", label="dev loss", ms=3)
            ax.set_ylabel("masked BCE", fontsize=8)
            ax2 = ax.twinx()
            ax2.plot(ep, [h.get("dev_score") for h in hist], "^-", color="C2", label=f"dev {metric}", ms=3)
            ax2.set_ylabel(f"dev {metric}", fontsize=8, color="C2")
            ax2.tick_params(labelsize=7)
            best = info.get("best_epoch")
            if isinstance(best, int) and best >= 0:
                ax.axvline(best + 1, color="grey", ls=":", lw=1)
            ax.set_title(f"{name} (best epoch {best + 1 if isinstance(best, int) else '?'})", fontsize=9)
        handles.update((ln.get_label(), ln) for ln in ax.get_lines() if not ln.get_label().startswith("_"))
        if name != "lm":
            handles.update((ln.get_label(), ln) for ln in ax2.get_lines())
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(ep) <= 15:  # whole epochs only (a one-epoch stage would otherwise get 0.96 .. 1.04)
            ax.set_xticks(ep)
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Training curves per stage (dotted line: epoch kept)", fontsize=10)
    _tight(fig)
    fig.legend(handles=list(handles.values()), loc="upper center", bbox_to_anchor=(0.5, 0),
               ncol=len(handles), fontsize=8, frameon=False)
    out = _png(fig)
    plt.close(fig)
    return out


# -- html -------------------------------------------------------------------------------------------------
# phone widths: a wide table scrolls inside its own box (display:block + overflow-x), never the page
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;display:block;max-width:100%;overflow-x:auto}
code{overflow-wrap:anywhere}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.base{background:#fafafa;color:#555}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.best{font-weight:bold}.fig{overflow-x:auto}.fig img{min-width:720px}"""


def _table(header: list[str], rows: list[list[str]], base_cols: set[int] = frozenset()) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = []
    for r in rows:
        cells = "".join(f"<td{' class=base' if i in base_cols else ''}>{c}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _ci_text(m: dict, key: str) -> str:
    ci = (m.get("ci95") or {}).get(key)
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""


def _metric_table(models: dict) -> str:
    """Every summary metric (rows) of every model (columns), the always-negative baseline first."""
    names = ["always_negative"] + [n for n in _ordered(models) if n != "always_negative"]
    names = [n for n in names if n in models]
    lower_better = {"hamming_loss"}
    rows = []
    for k in list(SUMMARY) + ["n_titles"]:
        ours = [models[n].get(k) for n in names if n not in BASELINES and isinstance(models[n].get(k), float)]
        best = (min(ours) if k in lower_better else max(ours)) if ours else None
        cells = [html.escape(k)]
        for n in names:
            v = models[n].get(k)
            s = html.escape(_fmt(v))
            cells.append(f"<span class=best>{s}</span>" if best is not None and v == best and n not in BASELINES
                         else s)
        rows.append(cells)
        if k in ("micro_f1", "macro_f1"):  # the 95 % bootstrap interval below each F1 (evaluate.score_models)
            rows.append([f"{k} 95% interval"] + [_ci_text(models[n], k) for n in names])
    base_cols = {i + 1 for i, n in enumerate(names) if n in BASELINES}
    return _table(["metric"] + [_LABEL.get(n, n) for n in names], rows, base_cols)


def _thr(v) -> str:
    """A threshold; 'never' above 1: no tuning title with those inputs labels the genre, so it is not predicted."""
    return "never" if isinstance(v, (int, float)) and v > 1 else _fmt(v)


def _deciding_sets(m: dict, name: str) -> dict[str, dict]:
    """The threshold sets that decide model ``name``'s titles, by the input combinations they serve: a set per
    combination, and the pooled set for the combinations without one (every title in runs from older versions)."""
    sets = (m.get("threshold_sets") or {}).get(name) or {}
    rest = ((m.get("threshold_info") or {}).get(name) or {}).get("no_set", [] if sets else ["every input"])
    out = {_PARTS.get(c, c): t for c, t in sets.items()}
    if rest and (m.get("thresholds") or {}).get(name):
        out[", ".join(_PARTS.get(c, c) for c in rest) + " (pooled set)"] = m["thresholds"][name]
    return out


def _per_genre_table(model: dict, sets: dict[str, dict], base: dict | None, probe: dict | None = None) -> str:
    """Per genre: test counts and metrics at the decision thresholds, and the thresholds that decide (a set that
    is one value for every genre is said once above the table, the others are columns)."""
    uniform, notes = set(), []
    for k, t in sets.items():
        cuts = {v for v in t.values() if v <= 1}
        if len(cuts) == 1:
            uniform.add(k)
            never = [g for g, v in t.items() if v > 1]
            notes.append(f"{k}: {_fmt(cuts.pop())} for every genre" + (f" (never {', '.join(never)})" if never else ""))
    cols = [k for k in sets if k not in uniform]
    rows = []
    for g, c in (model.get("per_genre") or {}).items():
        tfidf = ((base or {}).get("per_genre") or {}).get(g, {}).get("f1")
        probe_f1 = [_fmt(((probe or {}).get("per_genre") or {}).get(g, {}).get("f1"))] if probe else []
        rows.append([html.escape(g), str(c.get("labelled", 0)), str(c.get("support", 0)), _fmt(c.get("precision")),
                     _fmt(c.get("recall")), _fmt(c.get("f1")), _fmt(tfidf)] + probe_f1
                    + [_fmt(c.get("ap")), str(c.get("tp", 0)), str(c.get("fp", 0)), str(c.get("fn", 0)),
                       str(c.get("tn", 0))] + [_thr(sets[k].get(g)) for k in cols])
    note = f"<p>Decision thresholds: {html.escape('; '.join(notes))}.</p>" if notes else ""
    return note + _table(["genre", "labelled", "positives", "precision", "recall", "F1", "tf-idf F1"]
                         + (["linear probe F1"] if probe else []) + ["AP", "TP", "FP", "FN", "TN"]
                         + [f"threshold: {k}" for k in cols], rows)


_PARTS = {"both": "poster + plot", "poster": "poster only", "plot": "plot only", "movie": "movies", "tv": "TV series",
          "unknown": "kind unknown"}


def _rule_words(info: dict) -> str:
    """How a model's thresholds decide, in words, from its rule (``threshold_info``): one cut per input
    combination (``combination_global``), or per genre (one pooled set, or a set per combination)."""
    rule = str(info.get("rule", ""))
    if rule.startswith("fixed"):
        return rule
    rules = info.get("combination_rules") or {"": rule.rpartition("/")[2].strip()}
    words = {c: {"combination_global": "one cut", "pooled": "the pooled per-genre set"}.get(r, "per genre")
             for c, r in rules.items()}
    if len(set(words.values())) > 1:
        return "per input combination (" + ", ".join(f"{_PARTS.get(c, c)}: {w}" for c, w in words.items()) + ")"
    if "one cut" in words.values():
        return "one cut per input combination" if len(rules) > 1 else "one cut for every genre"
    return "per genre and input combination" if "per genre" in words.values() and len(rules) > 1 else "per genre"


def _tuning(m: dict) -> str:
    """What the titles the thresholds were tuned on are called in a table's column: dev, or out-of-fold."""
    return "out-of-fold" if (m.get("crossfit") or {}).get("folds") else "dev"


def _decision_note(m: dict, models: dict) -> str:
    """Each model's decision rule in words, models with the same wording together, and what it was tuned on."""
    info, by_words = m.get("threshold_info") or {}, {}
    for n in _ordered(models):
        if n in info and n != "always_negative":
            by_words.setdefault(_rule_words(info[n]), []).append(_LABEL.get(n, n))
    rules = "; ".join(f"{w} for {', '.join(names)}" for w, names in by_words.items())
    return f"Decision thresholds tuned on {tuned_on(m)}" + (f": {rules}" if rules else "")


def _breakdown_table(by: dict, counts: dict) -> str:
    """micro-F1 / macro-F1 / mAP of every model (rows) on each part (column groups: a combination or a kind)."""
    parts = [p for p in by if by[p]]
    names = _ordered({n for p in parts for n in by[p]})
    keys = ("micro_f1", "macro_f1", "mAP")
    header = ["model"] + [f"{_PARTS.get(p, p)} (n={counts.get(p, '?')}) {k.replace('_f1', '-F1')}"
                          for p in parts for k in keys]

    def cell(m: dict, k: str) -> str:  # the figure, and its bootstrap interval where it has one
        ci = _ci_text(m, k)
        return html.escape(_fmt(m.get(k))) + (f" <small>[{ci}]</small>" if ci else "")

    def blind(p: str, n: str) -> bool:  # predicts nothing on part p: no F1, and the ranking is the baseline's
        m, base = by[p].get(n) or {}, by[p].get("always_negative") or {}
        return n != "always_negative" and m.get("micro_f1") == 0 and m.get("mAP") is not None \
            and m.get("mAP") == base.get("mAP")

    rows = [[html.escape(_LABEL.get(n, n))] + ["–" if blind(p, n) else cell(by[p].get(n) or {}, k)
                                               for p in parts for k in keys]
            for n in names]
    return _table(header, rows) + ("<p><small>[ ]: 95% bootstrap interval (test titles resampled). –: the model "
                                   "predicts nothing for these titles (it reads none of their inputs), so its scores "
                                   "there are the always-negative baseline's.</small></p>")


def _verdicts_html(verdicts: list[dict]) -> str:
    lines = verdict_lines(verdicts)
    if not lines:
        return "<p><i>No linear probe in this run (runs from older versions, or no frozen features).</i></p>"
    return "<ul>" + "".join(f"<li>{'<b>' if 'NOT' in ln else ''}{html.escape(ln)}{'</b>' if 'NOT' in ln else ''}</li>"
                            for ln in lines) + "</ul>"


def _threshold_table(sets: dict, info: dict, pooled: dict | None, tuning: str) -> str:
    """Per genre: the pooled and each input combination's threshold and the ``tuning`` positives it rests on
    (* = fell back a level for too few of them; 'never': see ``_thr``), with a legend saying which cells the rule
    decides (``combination_global``: one cut for every genre, no star) and which set decides whose titles."""
    rules = info.get("combination_rules") or {}
    levels = [("pooled", pooled or {}, info.get("pooled") or {}, "")] + [
        (_PARTS.get(c, c), sets[c], (info.get("sets") or {}).get(c) or {}, rules.get(c, "")) for c in sets]
    header, rows = ["genre"] + [h for name, *_ in levels for h in (name, f"{name} {tuning} positives")], []
    for g in (pooled or {}):
        row = [html.escape(g)]
        for _, t, ci, rule in levels:
            star = "*" if g in (ci.get("fallback") or []) and rule not in ("combination_global", "pooled") else ""
            row += [_thr(t.get(g)), f"{(ci.get('positives') or {}).get(g, '')}{star}"]
        rows.append(row)
    one_cut = [_PARTS.get(c, c) for c in sets if rules.get(c) == "combination_global"]
    rest = info.get("no_set") or []
    legend = ([f"{', '.join(one_cut)}: rule <i>combination_global</i>, one cut for every genre, tuned on all the "
               "combination's titles (no genre's own positives decide it; the counts are for reference)."]
              if one_cut else [])
    if any(r[i].endswith("*") for r in rows for i in range(2, len(r), 2)):
        legend.append(f"* = fell back a level (too few {tuning} positives to tune on).")
    legend.append("The pooled set decides " + (f"the titles with {', '.join(_PARTS.get(c, c) for c in rest)}."
                                               if rest else "no title: every input combination has a set of its own.")
                  if len(sets) > 1 or rest else "The pooled set decides every title.")
    return f"<p>{' '.join(legend)}</p>" + _table(header, rows)


def _breakdown_html(m: dict) -> list[str]:
    """The metrics per input combination and per kind, and the verdicts against the linear probes."""
    split, parts = m.get("split") or {}, []
    if m.get("by_combination"):
        parts += ["<h3>By input combination</h3><p>Each title is decided with its input combination's decision "
                  f"thresholds (tuned on {html.escape(tuned_on(m))}; the rules are above).</p>",
                  _breakdown_table(m["by_combination"], split.get("test_by_combination") or {})]
    if m.get("by_kind"):
        parts += ["<h3>By kind</h3>", _breakdown_table(m["by_kind"], split.get("test_by_kind") or {})]
    if "probe_verdicts" in m:
        parts += ["<h3>Against the linear probes</h3><p>One-vs-rest logistic regression on the same frozen "
                  "features: a model that does not beat it has not earned its extra layers. The poster and plot models "
                  "meet their probes on the titles with their input: a model predicts nothing for a title without any input "
                  "it reads.</p>",
                  _verdicts_html(m["probe_verdicts"])]
    return parts


def _thresholds_html(m: dict, main: str) -> list[str]:
    """The main model's threshold sets, the rule that regularised them and the tuning positives behind each."""
    info = (m.get("threshold_info") or {}).get(main) or {}
    sets = (m.get("threshold_sets") or {}).get(main)
    if sets is None:
        return []
    loo = info.get("leave_one_out") or {}
    chosen = str(info.get("chosen_by", ""))
    return [f"<h2>Thresholds ({html.escape(_LABEL.get(main, main))} model)</h2>"
            f"<p>Tuned on {html.escape(tuned_on(m))}: {html.escape(_rule_words(info))}, by rule "
            f"<b>{html.escape(str(info.get('rule')))}</b> (pooled level / input-combination level; "
            + html.escape("chosen by leave-one-out on the same titles" if chosen.startswith("leave-one-out")
                          else chosen)
            + (", mean of micro- and macro-F1 by pooled rule: "
               + html.escape(", ".join(f"{k} {v['score']:.4f}" for k, v in loo.items())) if loo else "")
            + "). Rules: <i>min_support:K</i> keeps a genre's own threshold where it rests on K positives, else "
            "the level above's; <i>shrink:K</i> pulls it toward the level above's, <i>toward_combination:K</i> toward "
            "the combination's single cut; <i>combination_global</i> takes that single cut for every genre; "
            "<i>pooled</i>: the combination has no set of its own."
            + (" Leave-one-out preferred the pooled set to per-combination sets for this model: every request "
               "uses the pooled thresholds." if str(info.get("rule", "")).endswith("/ pooled")
               and chosen.startswith("leave-one-out") and len(info.get("combination_rules") or {}) > 1 else "")
            + "</p>",
            _threshold_table(sets, info, (m.get("thresholds") or {}).get(main), _tuning(m))]


def _data_html(m: dict, figs: dict) -> list[str]:
    """The split's counts, the training data's genre distribution (the paper's Fig. 2), the datasets used and
    the genres dropped."""
    split = m.get("split") or {}
    parts = ["<h2>Data and split</h2>", _kv_table({k: v for k, v in split.items()
                                                  if k != "file" and not isinstance(v, dict)}, ("part", "titles")),
             _img("genre_distribution", figs["genre_distribution"], "genre distribution of the training split"),
             _distribution_table(m.get("train_genre_distribution"))]
    ds_rows = [[html.escape(str(d.get("name"))), str(d.get("titles")), str(d.get("used")), str(d.get("with_poster")),
                str(d.get("with_plot")), str(len(d.get("labelled_genres") or []))] for d in m.get("data") or []]
    parts.append(_table(["dataset", "titles", "used", "with poster", "with plot", "genres labelled"], ds_rows))
    if m.get("dropped_genres"):
        parts.append("<p>Genres dropped (too few training titles): "
                     f"{html.escape(', '.join(f'{g} ({n})' for g, n in m['dropped_genres'].items()))}</p>")
    return parts


def _distribution_table(dist: dict | None) -> str:
    """Training titles per genre (rows) and (dataset, kind) group (columns); '–' where the group's dataset
    does not label the genre (unknown there, not negative)."""
    groups = (dist or {}).get("groups") or []
    if not groups:
        return ""
    rows = [[html.escape(g)] + [str(gr["positives"].get(g, 0)) if gr["labelled"].get(g) else "–" for gr in groups]
            for g in dist.get("genres") or []]
    rows.append(["titles"] + [str(gr["titles"]) for gr in groups])
    return _table(["genre"] + [_group_name(gr) for gr in groups], rows)


def _kv_table(d: dict, header=("item", "value")) -> str:
    return _table(list(header), [[html.escape(str(k)), html.escape(_fmt(v, 2))] for k, v in d.items()])


def _img(name: str, png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><i>{html.escape(alt)}: not available for this run.</i></p>"
    b64 = base64.b64encode(png).decode("ascii")
    # in a box of its own that scrolls sideways: on a phone a figure is never shrunk below legible (720 px)
    return (f'<div class=fig><img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" '
            f'title="{html.escape(name)}"></div>')


def _load_scores(path: Path):
    if not path.is_file():
        return None
    try:
        # plain arrays only: never unpickle run files; read everything now (small) so damage shows here
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # a damaged optional file costs the PR curves only, not the report
        import logging

        logging.getLogger("genrefusion.report").warning("%s: unreadable (%s); no PR curves", path, err)
        return None


def _explanations(run_dir: Path, scores, main: str | None) -> str:
    """The explained test titles (``explain.showcase``), or a line saying why there are none."""
    from .explain.render import report_section
    from .explain.showcase import N_FIRST, N_WRONG, showcase

    if scores is None or main is None or f"S_{main}" not in scores:
        return "<p><i>Explanations: not available (no test scores for this run).</i></p>"
    try:
        entries = showcase(run_dir, scores, main)
    except (GenreFusionError, OSError) as err:
        return f"<p><i>Explanations: not available ({html.escape(str(err))}).</i></p>"
    except Exception as err:  # noqa: BLE001 - a bug here must not cost a finished run its report: logged, shown
        import logging

        logging.getLogger("genrefusion.report").exception("explanations for the report failed")
        return f"<p><i>Explanations: not available (internal error: {html.escape(type(err).__name__)}).</i></p>"
    if not entries:
        return "<p><i>Explanations: no test title has both a poster and a plot.</i></p>"
    note = (f"The {_LABEL.get(main, main)} model on test titles with a poster and a plot, chosen by a fixed rule "
            f"before explaining (the first {N_FIRST} by a hash of their id, then the next {N_WRONG} it gets wrong); "
            "each for its predicted and its labelled genres.")
    return report_section(entries, note)


def write_report(run_dir, progress: bool = True) -> Path:
    """Write ``RUN_DIR/report/*.png`` and ``RUN_DIR/report.html`` from the run's metrics; returns the html path."""
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        raise GenreFusionError(f"{mpath}: missing; is {run_dir} a finished training run?")
    m = read_json(mpath, "run metrics")
    if not isinstance(m, dict) or not isinstance(m.get("models"), dict) or "genres" not in m:
        raise GenreFusionError(f"{mpath}: not a genrefusion run's metrics (no 'models'/'genres')")
    figs = _draw_figures(run_dir, m, progress)
    out = run_dir / "report.html"
    write_text(out, "\n".join(_html_results(run_dir, m, figs) + _html_run(m, figs)))
    return out


def _main_model(models: dict) -> str | None:
    return next((n for n in ("fused", "plot", "poster") if n in models), None)


def _confusion_models(models: dict) -> list[str]:
    return [n for n in ("fused", "poster", "plot") if n in models]


def _draw_figures(run_dir: Path, m: dict, progress: bool) -> dict[str, bytes | None]:
    """Every figure as PNG bytes (None where the run lacks what it shows), also written to ``RUN_DIR/report/``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers/CI; must precede pyplot
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from .baselines import probe_for

    models, genres = m["models"], list(m["genres"])
    main = _main_model(models)
    pr_label = "decision thresholds" + (" (per input combination)" if len(_deciding_sets(m, main)) > 1 else "")
    scores = _load_scores(run_dir / "test_scores.npz")
    jobs = [
        ("genre_distribution", lambda: fig_genre_distribution(plt, m.get("train_genre_distribution"))),
        ("accuracy", lambda: fig_accuracy(plt, models)),
        ("main_metrics", lambda: fig_main_metrics(plt, models)),
        ("per_genre_f1", lambda: fig_per_genre_f1(plt, models, genres)),
        *[(f"confusion_{n}", lambda n=n: fig_confusion_grid(plt, models[n], genres, n, models.get(probe_for(n))))
          for n in _confusion_models(models)],
        ("pr_curves", lambda: fig_pr_curves(plt, scores, main, models[main].get("per_genre"), pr_label)
         if main else None),
        ("training_curves", lambda: fig_training_curves(plt, m.get("training") or {}, m.get("select_metric", "mAP"))),
    ]
    figs: dict[str, bytes | None] = {}
    with tqdm(jobs, desc="report", unit="figure", disable=True if not progress else None, leave=False) as bar:
        for name, make in bar:
            with plt.rc_context({"font.size": 9}):
                figs[name] = make()
            if figs[name] is not None:
                write_bytes(run_dir / "report" / f"{name}.png", figs[name])
    return figs


def _lexical_note(m: dict) -> str:
    """The lexical blend's weights (models/lexical.py), as the run chose them on dev."""
    blend = {k: v for k, v in (m.get("lexical_blend") or {}).items() if v.get("weight")}
    if not blend:
        return ""
    return (" · lexical blend (tf-idf logistic regression averaged into titles with a plot, weight chosen on "
            + html.escape(tuned_on(m)) + "): "
            + html.escape(", ".join(f"{k} {v['weight']:g}" for k, v in blend.items())))


def _html_results(run_dir: Path, m: dict, figs: dict) -> list[str]:
    """The page's head and its results: metric tables, the paper's accuracy figure, per-genre results."""
    from .baselines import probe_for

    models, split = m["models"], m.get("split") or {}
    main, confusion = _main_model(models), _confusion_models(models)
    parts = ["<!doctype html><html><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'><title>genrefusion run report</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>genrefusion run report</h1><p>Run: <code>{html.escape(str(run_dir.resolve()))}</code> · "
             f"genrefusion {html.escape(str(m.get('genrefusion_version', '?')))} · text route: "
             f"<b>{html.escape(str(m.get('text_route')))}</b>"
             + (f" (chosen on dev {html.escape(str(m.get('select_metric')))}: "
                f"{html.escape(', '.join(f'{r} {v:.4f}' for r, v in m['plot_candidates'].items()))})"
                if m.get("plot_candidates") else "")
             + f"{_lexical_note(m)}</p>",
             f"<h2>Test metrics</h2><p>{html.escape(_decision_note(m, models))}. Shaded columns are baselines; "
             "bold is the best of our models.</p>", _metric_table(models)]
    if m.get("models_both"):
        parts += [f"<h3>Test titles with both a poster and a plot ({split.get('test_with_poster_and_plot', '?')})</h3>",
                  _metric_table(m["models_both"])]
    parts += _breakdown_html(m)
    parts += [_img("main_metrics", figs["main_metrics"], "main metrics vs baselines"),
              "<h2>Accuracy, the paper's metric, beside F1 and mAP</h2><p>Per-label accuracy is fastai's "
              "<code>accuracy_multi</code> (sigmoid score &gt; 0.5, averaged over every labelled title-genre pair), "
              "the metric of the paper's Fig. 3. Most pairs are negatives, so predicting no genre at all already "
              "scores high: read each model's bar against the hatched always-negative bar beside it.</p>",
              _img("accuracy", figs["accuracy"], "accuracy beside F1 and mAP"),
              f"<h2>Per-genre F1</h2><p>Test F1 of each model at its decision thresholds, tuned on "
              f"{html.escape(tuned_on(m))}.</p>", _img("per_genre_f1", figs["per_genre_f1"], "per-genre F1")]
    if main:
        parts += [f"<h2>Per-genre results ({html.escape(_LABEL.get(main, main))} model)</h2>",
                  _per_genre_table(models[main], _deciding_sets(m, main), models.get("tfidf_logreg"),
                                   models.get(probe_for(main))),
                  _img("pr_curves", figs["pr_curves"], "precision-recall curves")]
        parts += _thresholds_html(m, main)
    if confusion:
        parts.append("<h2>Per-genre confusion matrices on test</h2><p>One 2&times;2 matrix per genre and model "
                     "(the paper's Figs. 4-7), at the decision thresholds tuned on "
                     f"{html.escape(tuned_on(m))}; shading is the share of each true row. Each panel's title gives the "
                     "model's F1 beside its linear probe's (same frozen features); the always-negative baseline's "
                     "matrix is every title in the top row (F1 0).</p>")
        parts += [_img(f"confusion_{n}", figs[f"confusion_{n}"], f"per-genre confusion matrices ({n})")
                  for n in confusion]
    parts += ["<h2>Why? Explanations of a few test titles</h2>",
              _explanations(run_dir, _load_scores(run_dir / "test_scores.npz"), main)]
    return parts


def _html_run(m: dict, figs: dict) -> list[str]:
    """The page's account of the run: training, data and split, timings, masking, config."""
    folds = (m.get("crossfit") or {}).get("folds")
    parts = ["<h2>Training</h2>"] + ([f"<p>{folds}-fold cross-fitting: stage <i>NAME@foldK</i> trained on the other "
                                      "folds of train + dev, and its dev (loss, score, epoch kept) is fold K; the "
                                      f"served models merge the {folds} folds' models.</p>"] if folds else []) + [
        _img("training_curves", figs["training_curves"], "training curves")]
    stage_rows = [[html.escape(k), str(v.get("epochs_run", "")), str(v.get("epochs_max", "")),
                   _fmt((v.get("best_epoch") + 1) if isinstance(v.get("best_epoch"), int) else None),
                   _fmt(v.get("best_score"), 4), _fmt(v.get("seconds"), 1)]
                  for k, v in (m.get("training") or {}).items() if isinstance(v, dict)]
    parts.append(_table(["stage", "epochs run", "max epochs", "best epoch", "best dev score", "seconds"], stage_rows))
    parts += _data_html(m, figs)
    timings = m.get("timings") or {}
    if "report_s" not in timings:  # train draws its report before it times it: the total is up to the report
        timings = {(f"{k} (before the report)" if k == "total_s" else k): v for k, v in timings.items()}
    parts += ["<h2>Timings (seconds)</h2>", _kv_table(timings, ("step", "seconds")),
              "<h2>Masking</h2>", f"<p>{html.escape(str(m.get('masking', '')))}</p>",
              "<h2>Config</h2>", f"<pre>{html.escape(json.dumps(m.get('config'), indent=2))}</pre>",
              "</body></html>"]
    return parts
