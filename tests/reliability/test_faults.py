"""Faults: `genrefusion train` SIGKILLed at random points 5 times in a row then resumed (finishes, run dir
consistent, same result as an uninterrupted run); the feature cache interrupted mid-write (only the damaged
entries are recomputed, counted as backbone calls); a full disk (ENOSPC from a patched writer: one clear error
line, the previous checkpoint intact, nothing half-written, resume finishes)."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from .util import assert_cli_error, make_counting_encoder, run_cli

HERE = Path(__file__).resolve().parent


def _tiny_overrides():
    from conftest import TINY_RUN_OVERRIDES  # tests/conftest.py: the settings tiny_run was trained with

    return TINY_RUN_OVERRIDES


def _set_args():
    out = []
    for k, v in _tiny_overrides().items():
        out += ["--set", f"{k}={json.dumps(v)}"]  # JSON scalars and lists are valid TOML values
    return out


@pytest.fixture
def warm_cache(tiny_run, tiny_run_cache, tmp_path, monkeypatch):
    """A private copy of the feature cache tiny_run filled (so each train run takes seconds)."""
    dest = tmp_path / "cache"
    shutil.copytree(tiny_run_cache, dest)
    monkeypatch.setenv("GENREFUSION_CACHE", str(dest))
    return dest


def _leftovers(run: Path) -> list[str]:
    """Temp files/folders (every genrefusion temp name starts with '.') and unfinished checkpoints."""
    bad = [str(p.relative_to(run)) for p in run.rglob(".*")]
    bad += [str(p.relative_to(run)) for p in (run / "checkpoints").glob("*")] if (run / "checkpoints").exists() else []
    return bad


def _assert_consistent(run: Path, tiny_run: Path) -> None:
    from genrefusion.bundle import load_bundle
    from genrefusion.predict import GenreClassifier

    assert _leftovers(run) == []
    got = json.loads((run / "metrics.json").read_text())
    for stage in ("poster", "plot_minilm", "fused"):
        info = json.loads((run / "stages" / f"{stage}.json").read_text())
        assert info["done"] is True
    assert load_bundle(run).genres == got["genres"]
    out = GenreClassifier.load(run).predict_one(plot="A haunted spaceship drifts toward a cursed planet.")
    assert set(out["scores"]) == set(got["genres"])
    assert (run / "report.html").is_file()
    # resuming makes the same choices as never stopping: same histories and test metrics as tiny_run
    ref = json.loads((tiny_run / "metrics.json").read_text())
    for stage in ("poster", "plot_minilm", "fused"):
        assert got["training"][stage]["history"] == ref["training"][stage]["history"], stage
    for name in ("poster", "plot", "fused"):
        for k in ("micro_f1", "macro_f1", "mAP"):
            assert got["models"][name][k] == pytest.approx(ref["models"][name][k], abs=1e-6), (name, k)


# -- SIGKILL x5, then resume ----------------------------------------------------------------------------------
# Files that appear, in this order, as a run progresses; a kill is aimed at one not reached yet (+ random jitter).
MARKERS = ["split.json", "checkpoints/poster.pt", "stages/poster.json", "checkpoints/plot_minilm.pt",
           "stages/plot_minilm.json", "checkpoints/fused.pt", "stages/fused.json", "model/config.json",
           "test_scores.npz", "metrics.json"]


def _furthest(run: Path) -> int:
    """Index of the last marker the run has passed (-1: none). A checkpoint is passed once its stage is done."""
    def passed(m):
        if m.startswith("checkpoints/"):
            stage = m.split("/")[1][:-3]
            return (run / m).exists() or (run / "stages" / f"{stage}.json").exists()
        return (run / m).exists()
    return max((i for i, m in enumerate(MARKERS) if passed(m)), default=-1)


@pytest.mark.slow
def test_train_sigkilled_five_times_then_resumed(tiny_run, tiny_run_data, warm_cache, tmp_path, inputs):
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    print(f"kill schedule seed {seed} (RELIABILITY_SEED={seed} replays it)")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "genrefusion", "train", *map(str, tiny_run_data), "--out", str(run), "--resume",
           "--no-progress", "--device", "cpu", *_set_args()]
    env = {**os.environ, "GENREFUSION_CACHE": str(warm_cache)}
    env.pop("GENREFUSION_DEBUG", None)
    kills = 5
    for attempt in range(kills):
        remaining = MARKERS[_furthest(run) + 1:]
        left_after = kills - attempt - 1
        if attempt == 0 or len(remaining) <= left_after:
            # start-up (imports, data, features), or a run past its last marker (only the report left)
            target, jitter, why = None, rng.uniform(0.3, 3.0), "after start"
        else:
            # leave a marker for each kill still to come, so all 5 land before the run can finish
            target = rng.choice(remaining[: len(remaining) - left_after])
            jitter, why = rng.uniform(0.0, 0.3), f"after {target} appeared"
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while target is not None and not (run / target).exists():  # ends with the run at the latest
                assert proc.poll() is None, f"train exited ({proc.returncode}) before {target}: " \
                                            f"{proc.stderr.read().decode()[-2000:]}"
                time.sleep(0.01)
            time.sleep(jitter)
            assert proc.poll() is None, f"train ended before kill {attempt + 1} ({why}): rc {proc.returncode}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        furthest = MARKERS[_furthest(run)] if _furthest(run) >= 0 else "-"
        print(f"kill {attempt + 1}: {why} + {jitter:.2f}s; furthest then: {furthest}; leftovers: {_leftovers(run)}")
    # the 6th run is left alone: it must finish from wherever the 5th was killed
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "test metrics" in done.stdout
    _assert_consistent(run, tiny_run)
    inputs(kills + 1, "train runs (killed, then resumed)")  # five killed and the one that finished


KILL_AT_RENAME = textwrap.dedent("""
    import os, signal, sys
    from genrefusion.cli import main
    needle, nth, when, real, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], os.replace, [0]

    def replace(src, dst, *a, **k):  # SIGKILL at the worst moments: just before or just after a rename
        hit = needle in os.fspath(src) and (n.append(1) or len(n) - 1 == nth)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(src, dst, *a, **k)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    os.replace = replace
    sys.exit(main(sys.argv[4:]))
""")


@pytest.mark.slow
def test_train_killed_at_rename_then_resumed_leaves_nothing_behind(tiny_run, tiny_run_data, warm_cache, tmp_path,
                                                                     inputs):
    run = tmp_path / "run"
    argv = ["train", *map(str, tiny_run_data), "--out", str(run), "--resume", "--no-progress", "--device", "cpu",
            *_set_args()]
    env = {**os.environ, "GENREFUSION_CACHE": str(warm_cache)}
    env.pop("GENREFUSION_DEBUG", None)
    for needle, nth, when, left in (
            ("/checkpoints/.poster.pt.", 2, "before", "checkpoints/.poster.pt."),  # a temp checkpoint
            ("/stages/.plot_minilm.json.", 1, "after", "checkpoints/plot_minilm.pt"),  # stage done, ckpt kept
            ("/.model.", 1, "before", ".model.")):  # a whole bundle folder not renamed into place
        p = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, needle, str(nth), when, *argv], env=env,
                           capture_output=True, text=True, timeout=400)
        assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
        assert any(x.startswith(left) for x in _leftovers(run)), _leftovers(run)  # what a crash leaves
    done = subprocess.run([sys.executable, "-m", "genrefusion", *argv], env=env, capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_consistent(run, tiny_run)
    inputs(4, "train runs (killed, then resumed)")  # three killed and the one that finished


# -- feature cache interrupted mid-write ------------------------------------------------------------------------
N_POSTERS, BATCH = 24, 4
CRASH = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from util import make_counting_encoder
    from genrefusion.encoders import cache as C
    from genrefusion.encoders.extract import extract_image_features, feature_cache_for
    root, mode, k = sys.argv[2], sys.argv[3], int(sys.argv[4])
    posters = sys.argv[5:]
    real_append, n = C.FeatureCache.append, [0]

    def append(self, keys, feats, ids=None):
        n[0] += 1
        if mode == "random":  # a slow run killed from outside at a random moment; say what is durable
            real_append(self, keys, feats, ids)
            print("committed", n[0] * len(keys), flush=True)
            time.sleep(0.05)
            return
        if n[0] < k:
            return real_append(self, keys, feats, ids)
        if mode == "data":  # die half-way through writing this batch's rows
            with open(self.data_path, "ab") as fh:
                fh.write(np.ascontiguousarray(feats, np.float32).tobytes()[: feats.size * 2 + 3])
        elif mode == "index":  # rows durable, die half-way through their index lines
            before = self.index_path.stat().st_size if self.index_path.exists() else 0
            real_append(self, keys, feats, ids)
            new = self.index_path.read_bytes()[before:]
            os.truncate(self.index_path, before + new.index(b"\\n") // 2)  # inside the batch's first line
        os.kill(os.getpid(), signal.SIGKILL)

    C.FeatureCache.append = append
    enc = make_counting_encoder()
    extract_image_features(posters, enc, feature_cache_for(enc, root), batch_size=%d, num_workers=0, progress=False)
    print("finished", flush=True)
""" % BATCH)


@pytest.fixture
def posters(tmp_path):
    from PIL import Image

    out = []
    for i in range(N_POSTERS):
        p = tmp_path / "posters" / f"p{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 12), (10 * i, 255 - 9 * i, (37 * i) % 256)).save(p)
        out.append(str(p))
    return out


def _extract(root, posters):
    from genrefusion.encoders.extract import extract_image_features, feature_cache_for

    enc = make_counting_encoder()
    cache = feature_cache_for(enc, root) if root is not None else None
    feats = extract_image_features(posters, enc, cache, batch_size=BATCH, num_workers=0, progress=False)
    return feats, enc.calls, cache


@pytest.mark.parametrize("mode,k,expected_calls", [
    ("data", 3, N_POSTERS - 2 * BATCH),   # batches 1-2 durable; the torn 3rd and the rest recomputed
    ("index", 4, N_POSTERS - 3 * BATCH),  # batch 4's rows are there but their index lines torn: recomputed
    ("data", 1, N_POSTERS),               # killed in the very first write
])
def test_cache_interrupted_mid_write_recomputes_only_damage(posters, tmp_path, mode, k, expected_calls):
    root = tmp_path / "cache"
    p = subprocess.run([sys.executable, "-c", CRASH, str(HERE), str(root), mode, str(k), *posters],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL and "finished" not in p.stdout, p.stderr[-2000:]
    clean, _, _ = _extract(None, posters)
    feats, calls, cache = _extract(root, posters)
    assert calls == expected_calls and feats.cache_hits == N_POSTERS - expected_calls
    assert np.array_equal(feats.values, clean.values) and feats.ok.all()
    cache.close()
    again, calls, _ = _extract(root, posters)  # the repaired cache is whole now
    assert calls == 0 and np.array_equal(again.values, clean.values)


def test_cache_bit_rot_recomputes_only_that_row(posters, tmp_path):
    root = tmp_path / "cache"
    clean, calls, cache = _extract(root, posters)
    assert calls == N_POSTERS
    cache.close()
    data = cache.data_path
    raw = bytearray(data.read_bytes())
    row = 7 * cache.dim * 4
    raw[row + 5] ^= 0xFF  # one flipped byte in the 8th row
    data.write_bytes(bytes(raw))
    feats, calls, cache = _extract(root, posters)
    assert calls == 1 and cache.dropped == 1
    # the row is recomputed alone, not in its batch of 8: BLAS may round the last bit differently, while the
    # flipped byte (mantissa bits 8-15) moves the value by >= 2^-16 of itself
    np.testing.assert_allclose(feats.values, clean.values, rtol=1e-6, atol=0)


@pytest.mark.parametrize("trial", range(2))
def test_cache_sigkilled_at_random_moment(posters, tmp_path, trial):
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", CRASH, str(HERE), str(root), "random", "0", *posters],
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the first batch is durable: now kill at a random point of the rest
    assert first.startswith("committed"), first
    time.sleep(random.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    out = first + proc.stdout.read()
    proc.wait()
    committed = max(int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("committed"))
    clean, _, _ = _extract(None, posters)
    feats, calls, _ = _extract(root, posters)
    # rows acknowledged before the kill are reused; at most the batch in flight may also have landed
    assert N_POSTERS - committed - BATCH <= calls <= N_POSTERS - committed, (calls, committed)
    assert np.array_equal(feats.values, clean.values)


# -- disk full -----------------------------------------------------------------------------------------------
def _enospc_on(monkeypatch, needle: str, nth: int):
    """Make the ``nth`` fsync of a file whose path contains ``needle`` fail with ENOSPC (a full disk)."""
    real = os.fsync
    seen = [0]

    def fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if needle in path:
            seen[0] += 1
            if seen[0] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


@pytest.mark.slow
def test_disk_full_clear_error_previous_checkpoint_intact(tiny_run, tiny_run_data, warm_cache, tmp_path, capsys,
                                                          monkeypatch):
    run = tmp_path / "run"
    argv = ["train", *tiny_run_data, "--out", run, "--resume", "--no-progress", "--device", "cpu", *_set_args()]
    # 1. the disk fills while the 2nd poster checkpoint is written
    with monkeypatch.context() as m:
        _enospc_on(m, "/checkpoints/.poster.pt.", 2)
        line = assert_cli_error(argv, capsys, "poster.pt", "no space left on device")
    print(line)
    ckpt = torch.load(run / "checkpoints" / "poster.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and len(ckpt["history"]) == 1  # epoch 1's checkpoint, whole
    assert not list(run.rglob(".*")) and not (run / "metrics.json").exists()
    # 2. resumed, the disk fills while the model bundle is written: no half bundle, stages kept
    with monkeypatch.context() as m:
        _enospc_on(m, "weights.safetensors", 1)
        assert_cli_error(argv, capsys, "weights.safetensors", "no space left on device")
    assert not (run / "model").exists() and not list(run.rglob(".*"))
    assert all((run / "stages" / f"{s}.json").is_file() for s in ("poster", "plot_minilm", "fused"))
    # 3. space again: resume finishes without retraining, with the uninterrupted run's result
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert "resuming after epoch 1" in (run / "train.log").read_text()
    _assert_consistent(run, tiny_run)
