"""The benchmark scripts' argument errors: one line naming the bad path or value, checked before the long work;
their shared README writer is atomic."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["bench_robustness.py", "{bad}"], ["bench_serve.py", "{bad}"],
                                  ["explain.py", "--run", "{bad}"], ["real_titles.py", "{bad}"]])
def test_a_bad_run_folder_is_one_error_line_not_a_traceback(tmp_path, args):
    bad = tmp_path / "no-such-run"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / args[0]),
                           *[a.format(bad=bad) for a in args[1:]]], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {bad}: no such run or model folder"]


@pytest.mark.parametrize("name, argv, msg", [
    ("crossfit", ["--data", "{tmp}"], "--data: no dataset"),
    ("genre_blend", ["{tmp}"], "no metrics.json"),
    ("bench_distributed", ["--posters", "0"], "--posters: must be >= 1"),  # its [:n] slice took every poster
    ("scale", ["--run", "{tmp}/nope"], "model bundle not found"),  # found after generating 2,600 titles
    ("scale", ["--sizes", "0"], "--sizes: must be >= 1")])
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch, name, argv, msg):
    mod = load_benchmark(name)

    def work(*a, **k):
        raise AssertionError("the long work started")

    for entry in ("run", "run_seed", "run_scale", "evaluate_run"):
        if hasattr(mod, entry):
            monkeypatch.setattr(mod, entry, work)
    with pytest.raises(SystemExit) as ei:
        mod.main([a.format(tmp=tmp_path) for a in argv])
    assert ei.value.code == 2
    assert msg in capsys.readouterr().err


def test_run_refuses_a_run_option_that_is_no_run_instead_of_benchmarking_another(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))  # run.py imports benchmarks.markers
    mod = load_benchmark("run")
    (tmp_path / "runs" / "demo" / "model").mkdir(parents=True)  # a run the fallback would pick
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "OUT", tmp_path / "out")
    monkeypatch.setattr(mod, "train_job", lambda *a, **k: pytest.fail("trained before checking --run"))
    assert mod.pick_run(None) == tmp_path / "runs" / "demo"
    with pytest.raises(SystemExit, match="not a trained run"):
        mod.pick_run(tmp_path / "typo")
    with pytest.raises(SystemExit, match="not a trained run"):  # before the training jobs, without --quick
        mod.main(["--run", str(tmp_path / "typo"), "--out", str(tmp_path / "latest.json")])
    assert not (tmp_path / "out").exists()


def test_replace_block_keeps_the_file_whole_when_the_write_fails(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.markers import replace_block

    readme = tmp_path / "README.md"
    text = "prose\n<!-- t:start -->\nold\n<!-- t:end -->\nmore prose\n"
    readme.write_text(text)
    with pytest.raises(UnicodeEncodeError):
        replace_block(readme, "t", "bad \ud800 body")
    assert readme.read_text() == text
    assert replace_block(readme, "t", "new") and "\nnew\n" in readme.read_text()
