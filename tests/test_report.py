"""The run report: figures, self-contained HTML with every metric beside the baseline, damage handling."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from genrefusion.errors import GenreFusionError
from genrefusion.metrics import SUMMARY
from genrefusion.report import write_report

FIGURES = ("genre_distribution", "accuracy", "main_metrics", "per_genre_f1", "confusion_fused", "confusion_poster",
           "confusion_plot", "pr_curves", "training_curves")


@pytest.fixture
def run(tiny_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest)
    shutil.rmtree(dest / "report")
    (dest / "report.html").unlink()
    return dest


def test_figures_and_html(run):
    out = write_report(run, progress=False)
    assert out == run / "report.html"
    for name in FIGURES:
        with Image.open(run / "report" / f"{name}.png") as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 200, name
    page = out.read_text(encoding="utf-8")
    # self-contained: every image is inline, nothing is fetched
    for name in FIGURES:
        assert f'title="{name}"' in page, name
    # the figures plus the explained titles' poster overlays, all inline
    assert page.count("data:image/png;base64,") == len(FIGURES) + page.count('alt="poster regions for ')
    assert not re.search(r'(src|href)="(?!data:)', page)
    m = json.loads((run / "metrics.json").read_text())
    for k in SUMMARY:
        assert f"<td>{k}</td>" in page, k
    header = re.search(r"<tr><th>metric</th>(.*?)</tr>", page).group(1)
    assert re.findall(r"<th>(.*?)</th>", header)[0] == "always negative"  # the baseline beside every metric
    for col in ("fused", "poster", "plot", "TF-IDF + logreg"):
        assert f"<th>{col}</th>" in header
    assert f"{m['models']['fused']['micro_f1']:.3f}" in page
    for part in ("train", "dev", "test"):
        assert f"<td>{part}</td><td>{m['split'][part]}</td>" in page
    assert "features_s" in page and "Biography" in page


def test_paper_figures_data(run):
    """Fig. 2's counts are the training split's labelled positives by dataset and kind; Fig. 3 has the
    always-negative accuracy, which is 1 - the positive rate of the labelled test pairs."""
    page = write_report(run, progress=False).read_text()
    m = json.loads((run / "metrics.json").read_text())
    dist = m["train_genre_distribution"]
    assert {(g["dataset"], g["kind"]) for g in dist["groups"]} == {("cornell_tmdb", "movie"),
                                                                   ("poster_genres_av", "unknown")}
    assert sum(g["titles"] for g in dist["groups"]) == m["split"]["train"]
    cornell = next(g for g in dist["groups"] if g["dataset"] == "cornell_tmdb")
    assert cornell["labelled"]["Biography"] == 0 and cornell["positives"]["Biography"] == 0  # unknown, not negative
    assert "<th>cornell_tmdb (movie)</th>" in page and "<th>poster_genres_av (kind not given)</th>" in page
    table = page[page.index("<th>cornell_tmdb (movie)</th>"):]
    bio = re.search(r"<tr><td>Biography</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    assert bio.group(1) == "–" and int(bio.group(2)) > 0
    neg = m["models"]["always_negative"]
    Y = np.load(run / "test_scores.npz")["Y"].astype(bool)
    M = np.load(run / "test_scores.npz")["M"].astype(bool)
    assert neg["per_label_accuracy"] == pytest.approx(1 - Y[M].mean())
    assert "accuracy_multi" in page


def test_confusion_counts_in_per_genre_table(run):
    page = write_report(run, progress=False).read_text()
    m = json.loads((run / "metrics.json").read_text())
    g, c = next((g, c) for g, c in m["models"]["fused"]["per_genre"].items() if c["labelled"])
    row = re.search(rf"<tr><td>{re.escape(g)}</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[8:12] == [str(c["tp"]), str(c["fp"]), str(c["fn"]), str(c["tn"])]
    # the linear probe on the same features beside the model (and TF-IDF), genre by genre
    assert "<th>tf-idf F1</th><th>linear probe F1</th><th>AP</th>" in page
    assert cells[6] == f"{m['models']['linear_probe_fused']['per_genre'][g]['f1']:.3f}"


def test_damaged_or_pickled_scores_only_drop_the_pr_curves(run):
    (run / "test_scores.npz").write_bytes(b"not a zip")
    page = write_report(run, progress=False).read_text()
    assert "precision-recall curves: not available" in page
    np.savez(run / "test_scores.npz", genres=np.array([object()], dtype=object))  # needs pickle to read
    page = write_report(run, progress=False).read_text()
    assert "precision-recall curves: not available" in page


def test_not_a_run(tmp_path):
    with pytest.raises(GenreFusionError, match="metrics.json: missing"):
        write_report(tmp_path)
    (tmp_path / "metrics.json").write_text('{"x": 1}')
    with pytest.raises(GenreFusionError, match="not a genrefusion run"):
        write_report(tmp_path)


def _rewrite(run, change) -> dict:
    path = run / "metrics.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))
    return m


def _section(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end, page.index(start))]


CUTS = {"both": 0.497, "poster": 0.479, "plot": 0.469}


def _crossfit_combination_global(m: dict) -> None:
    """The fused model as runs/demo has it: cross-fitted, rule min_support:3 / combination_global (one cut per input
    combination, every genre 'fallen back' in threshold_info though it has hundreds of positives), a pooled set that
    decides no title, and a reported operating point (precision 0.25, recall 0.75) no pooled cut gives."""
    genres = list(m["thresholds"]["fused"])
    m["crossfit"] = {"folds": 5, "fold_titles": [20] * 5, "tuned_on": "out-of-fold scores of the train + dev titles"}
    m["thresholds"]["fused"] = {g: 0.0 for g in genres}
    m["threshold_sets"]["fused"] = {c: {g: t for g in genres} for c, t in CUTS.items()}
    m["threshold_sets"]["fused"]["plot"][genres[0]] = 2.0  # no tuning title with a plot labels it: never predicted
    m["threshold_info"]["fused"].update(
        rule="min_support:3 / combination_global", chosen_by="leave-one-out on dev", no_set=[],
        combination_rules={c: "combination_global" for c in CUTS}, leave_one_out={"min_support:3": {"score": 0.48533}},
        pooled={"dev_titles": 1500, "positives": {g: 900 for g in genres}, "fallback": []},
        sets={c: {"dev_titles": 500, "positives": {g: 300 for g in genres}, "fallback": genres} for c in CUTS})
    for c in m["models"]["fused"]["per_genre"].values():
        c.update(precision=0.25, recall=0.75)


def test_report_states_the_decision_rule_of_a_crossfitted_combination_global_run(run, monkeypatch):
    """The per-genre table, PR curves, rule wording and threshold table show the thresholds that decide (one cut per
    input combination), not the pooled set; tuned on the out-of-fold scores, not 'dev-tuned'."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from genrefusion.thresholds import tuned_on

    m = _rewrite(run, _crossfit_combination_global)
    dots, legends = [], []
    plot, legend = Axes.plot, Figure.legend
    monkeypatch.setattr(Axes, "plot", lambda ax, *a, **k: (dots.append(a[:2]) if a[2:3] == ("o",) else None)
                        or plot(ax, *a, **k))
    monkeypatch.setattr(Figure, "legend", lambda fig, *a, **k: legends.append([h.get_label() for h in k["handles"]])
                        or legend(fig, *a, **k))
    page = write_report(run, progress=False).read_text()
    genres = list(m["thresholds"]["fused"])
    # PR curves: the operating point metrics.json reports, labelled as the per-combination decision thresholds
    assert dots and set(dots) == {(0.75, 0.25)}
    assert legends[0] == ["fused model", "probe: both", "decision thresholds (per input combination)",
                          "positive rate (a random ranking)"]  # the PR curves' (the training curves' follows)
    # per-genre table: each combination's single cut said once, no pooled "threshold" column
    table = _section(page, "Per-genre results (fused model)", "</table>")
    assert ("Decision thresholds: poster + plot: 0.497 for every genre; poster only: 0.479 for every genre; "
            f"plot only: 0.469 for every genre (never {genres[0]}).") in table
    assert "<th>threshold" not in table and "0.000" not in re.findall(r"<tr><td>.*?</tr>", table)[0][-40:]
    # the rule in words, for every model, and what the thresholds were tuned on
    assert "Thresholds tuned per genre" not in page
    assert f"Decision thresholds tuned on {tuned_on(m)}: one cut per input combination for fused" in page
    assert "dev-tuned" not in page and "dev positives" not in page and "leave-one-out on dev" not in page
    assert f"at the decision thresholds tuned on {tuned_on(m)}" in page and "min_support:3 0.4853" in page
    # threshold table: the rule decided these cells, no genre fell back for lack of positives
    thr = _section(page, "Thresholds (fused model)", "</table>")
    assert "fell back" not in thr and "*" not in thr
    assert "poster + plot, poster only, plot only: rule <i>combination_global</i>, one cut for every genre" in thr
    assert "The pooled set decides no title" in thr and "<th>poster + plot out-of-fold positives</th>" in thr


def test_report_stars_fallbacks_and_timings(tiny_run, run):
    """A per-genre rule (min_support:10) stars the thresholds that fell back for too few dev positives; the plot-only
    titles the pooled set decides are said so; train's own report says its total is up to the report."""
    assert "<td>total_s (before the report)</td>" in (tiny_run / "report.html").read_text()
    m = json.loads((run / "metrics.json").read_text())
    info = m["threshold_info"]["fused"]
    assert info["combination_rules"]["both"].startswith("min_support") and info["no_set"] == ["plot"]
    page = write_report(run, progress=False).read_text()
    assert "<td>total_s</td>" in page and "report_s" in page  # metrics.json has the final timings
    thr = _section(page, "Thresholds (fused model)", "</table>")
    assert "* = fell back a level (too few dev positives to tune on)." in thr
    assert "The pooled set decides the titles with plot only." in thr
    starred = {re.search(r"<td>(.*?)</td>", r).group(1) for r in re.findall(r"<tr>.*?</tr>", thr) if "*<" in r}
    assert starred and starred <= set(info["sets"]["both"]["fallback"]) | set(info["sets"]["poster"]["fallback"])
    table = _section(page, "Per-genre results (fused model)", "</table>")
    assert "plot only (pooled set)" in table


def _capture(monkeypatch) -> list:
    """Keep every figure the report draws open (``_png`` keeps it, ``plt.close`` is a no-op) for inspection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrefusion import report

    figs = []
    monkeypatch.setattr(report, "_png", lambda fig: figs.append(fig) or b"png")
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    return figs


def _plt():
    import matplotlib.pyplot as plt

    return plt


def test_report_page_fits_a_phone_width(run):
    """At 390 px the page must not scroll sideways: a wide table scrolls inside its own box, and the page
    tells a phone browser its real width (without the viewport tag it lays the page out 980 px wide)."""
    from genrefusion.report import _CSS

    page = write_report(run, progress=False).read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    table_rule = re.search(r"(?<![\w-])table\{([^}]*)\}", _CSS).group(1)
    assert "display:block" in table_rule and "overflow-x:auto" in table_rule and "max-width:100%" in table_rule
    # a figure is never shrunk to a thumbnail (runs/demo's 4-panel accuracy figure was 1/4 size): its box scrolls
    assert ".fig{overflow-x:auto}" in _CSS and ".fig img{min-width:720px}" in _CSS
    assert page.count("<div class=fig><img src=\"data:image/png;base64,") == len(FIGURES)


def test_accuracy_bar_labels_do_not_print_over_each_other(monkeypatch):
    """runs/demo: per-label accuracies 0.881-0.905 beside the baseline's 0.882 printed as one smear of digits."""
    from genrefusion.report import fig_accuracy

    figs = _capture(monkeypatch)
    acc = {"fused": 0.892, "poster": 0.881, "plot": 0.896, "linear_probe_fused": 0.905, "linear_probe_poster": 0.892,
           "linear_probe_plot": 0.897, "tfidf_logreg": 0.835, "always_negative": 0.882}
    models = {n: {"per_label_accuracy": a, "micro_f1": 0.4, "macro_f1": 0.3, "mAP": 0.3} for n, a in acc.items()}
    models["always_negative"].update(micro_f1=0.0, macro_f1=0.0, mAP=0.1)
    fig_accuracy(_plt(), models)
    fig = figs[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(r) for t in ax.texts if t.get_text()]
        assert len(boxes) == 2 * (len(acc) - 1)
        clashes = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not clashes, ax.get_title()


def test_training_curves_title_and_legend_stay_off_the_panels(monkeypatch):
    """runs/demo (15 cross-fitted stages, a twin dev-score axis each): the figure's title ran into the top row's
    panel titles, and each panel's legend sat on its dev-score curve. One legend, below the panels."""
    from genrefusion.report import fig_training_curves

    figs = _capture(monkeypatch)
    hist = [{"epoch": e, "train_loss": 0.8 - 0.04 * e, "dev_loss": 0.5, "dev_score": 0.3 + 0.01 * e} for e in range(1, 13)]
    training = {f"{s}@fold{k}": {"history": hist, "best_epoch": 9} for k in range(5)
                for s in ("poster", "plot_minilm", "fused")}
    fig_training_curves(_plt(), training, "mAP")
    fig = figs[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(r)
    assert not [ax.get_title() for ax in fig.axes if ax.get_title() and ax.title.get_window_extent(r).overlaps(top)]
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["train loss", "dev loss", "dev mAP"]


def test_pr_curves_and_confusion_matrices_show_the_linear_probe(run, monkeypatch):
    """Every figure of a model has its linear probe beside it: the probe's precision-recall curve in each panel,
    its F1 in each confusion matrix's title."""
    from genrefusion.report import fig_confusion_grid, fig_pr_curves

    figs = _capture(monkeypatch)
    m = json.loads((run / "metrics.json").read_text())
    with np.load(run / "test_scores.npz") as d:
        scores = {k: d[k] for k in d.files}
    assert "S_linear_probe_fused" in scores
    fig_pr_curves(_plt(), scores, "fused", m["models"]["fused"]["per_genre"], "decision thresholds")
    fig = figs.pop()
    assert "probe: both" in [t.get_text() for t in fig.legends[0].get_texts()]
    for ax in fig.axes:
        if ax.get_title():  # the model's and the probe's curve (beside the positive rate and the operating point)
            assert {ln.get_color() for ln in ax.get_lines()} >= {"#1f77b4", "#aec7e8"}, ax.get_title()
    fig_confusion_grid(_plt(), m["models"]["fused"], list(m["genres"]), "fused", m["models"]["linear_probe_fused"])
    titles = [ax.get_title() for ax in figs.pop().axes if ax.get_title()]
    g, c = next((g, c) for g, c in m["models"]["linear_probe_fused"]["per_genre"].items() if c.get("labelled"))
    assert any(t.startswith(f"{g} (F1 ") and t.endswith(f", probe {c['f1']:.2f})") for t in titles), titles


def test_breakdown_shows_no_score_where_a_model_reads_no_input(run):
    """runs/demo: the poster model printed 'micro-F1 0.000 [0.000-0.000]' on plot-only titles and on TV series,
    as if it had failed there; it predicts nothing for a title without a poster (its mAP is the always-negative
    baseline's). Such cells are '–', said under the table; a model that reads the titles keeps its figures."""
    from genrefusion.report import _breakdown_table

    def part(micro: float, ap: float) -> dict:
        return {"micro_f1": micro, "macro_f1": micro, "mAP": ap}

    by = {"plot": {"poster": part(0.0, 0.14), "plot": part(0.653, 0.652), "tfidf_logreg": part(0.0, 0.2),
                   "always_negative": part(0.0, 0.14)}}
    table = _breakdown_table(by, {"plot": 1682})
    rows = {r[0]: r[1:] for r in (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>.*?</tr>", table))
            if r}
    assert rows["poster"] == ["–", "–", "–"]
    assert rows["plot"] == ["0.653", "0.653", "0.652"]
    assert rows["TF-IDF + logreg"] == ["0.000", "0.000", "0.200"]  # it reads the plot and still finds nothing
    assert rows["always negative"] == ["0.000", "0.000", "0.140"]  # the baseline keeps its figures
    assert "–: the model predicts nothing for these titles" in table
