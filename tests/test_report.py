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
    assert cells[7:11] == [str(c["tp"]), str(c["fp"]), str(c["fn"]), str(c["tn"])]


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
