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

FIGURES = ("main_metrics", "per_genre_f1", "confusion_grid", "pr_curves", "training_curves")


@pytest.fixture
def run(tiny_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest)
    shutil.rmtree(dest / "report")
    (dest / "report.html").unlink()
    # the explained test titles are cached by weights (kept by copytree): drawing the report again reuses them
    (dest / "report").mkdir()
    shutil.copy2(tiny_run / "report" / "explanations.json", dest / "report" / "explanations.json")
    return dest


def test_figures_and_html(run):
    out = write_report(run, progress=False)
    assert out == run / "report.html"
    for name in FIGURES:
        with Image.open(run / "report" / f"{name}.png") as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 200, name
    page = out.read_text(encoding="utf-8")
    # self-contained: every image is inline, nothing is fetched (the figures, then the explanations' overlays)
    why = page.split("<h2>Why? Explanations of a few test titles</h2>", 1)[1].split("<h2>", 1)[0]
    assert page.count("data:image/png;base64,") - why.count("data:image/png;base64,") == len(FIGURES)
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
