"""benchmarks/run.py's figures table: each figure with the date it was measured, a missing one marked."""
from __future__ import annotations

import sys
from pathlib import Path

from conftest import load_benchmark


def test_table_dates_each_figure_and_marks_the_unmeasured(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run.py imports benchmarks.markers
    mod = load_benchmark("run")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- figures:start -->\nold\n<!-- figures:end -->\nprose\n")
    latest = {"train_cold_s": 466.0, "peak_rss_mib_2600": 1339.1,
              "measured": {"train_cold_s": "2026-12-04 23:53"},
              "details": {"date": "2026-12-04 23:53", "machine": {"cpu": "x", "cores": 2}}}
    mod.write_readme_table(latest, readme)
    text = readme.read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    assert "yes | 2026-12-04 23:53 |" in rows["train_cold_s"]
    assert rows["peak_rss_mib_2600"].endswith("| before 2026-12-04 23:53 |")  # kept from an earlier run, undated
    assert "not measured" in rows["train_warm_s"] and rows["train_warm_s"].endswith("|  |")
    assert text.startswith("intro\n") and text.endswith("prose\n") and "\nold\n" not in text
