"""Progress lines when the tqdm bar is off (stderr not a terminal): done/total, rate and ETA every ~30 s."""
from __future__ import annotations

import logging
import types

import numpy as np

from genrefusion import progress as P


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_log_progress_reports_every_interval_with_rate_and_eta(caplog):
    clock = Clock()
    bar = P.LogProgress(1000, "poster features (efficientnet_lite0)", "img", interval=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="genrefusion.progress"):
        for _ in range(100):  # 10 images a second, 10 at a time
            clock.t += 1.0
            bar.update(10)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # at 30, 60 and 90 s, then the closing line
    assert lines[0] == "poster features (efficientnet_lite0): 300/1,000 (30%), 10.0 img/s, ETA 1m10s, 30s elapsed"
    assert lines[-1] == "poster features (efficientnet_lite0): 1,000/1,000 (100%), 10.0 img/s, 1m40s elapsed (done)"


def test_short_loops_stay_silent_and_a_terminal_gets_tqdm(caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="genrefusion.progress"):
        with P.progress_bar(5, "quick", "it") as bar:  # pytest's stderr is not a terminal
            assert isinstance(bar, P.LogProgress)
            bar.update(5)
    assert not caplog.records
    monkeypatch.setattr(P, "_is_tty", lambda stream: True)
    bar = P.progress_bar(5, "quick", "it", disable=True)
    assert not isinstance(bar, P.LogProgress) and hasattr(bar, "update")  # tqdm, as before
    bar.close()
    assert isinstance(P.progress_bar(5, "quick", "it", enabled=False), P.LogProgress)  # --no-progress: lines only


def test_feature_extraction_logs_progress_when_not_on_a_terminal(caplog, monkeypatch):
    from genrefusion.encoders.extract import extract_text_features

    clock = Clock()
    monkeypatch.setattr(P, "time", types.SimpleNamespace(monotonic=clock))

    class SlowEncoder:  # each batch "takes" 20 s
        name, dim = "slow", 4

        def encode(self, texts, batch_size=32):
            clock.t += 20.0
            return np.ones((len(texts), self.dim), np.float32)

    texts = [f"plot number {i}" for i in range(40)]
    with caplog.at_level(logging.INFO, logger="genrefusion.progress"):
        f = extract_text_features(texts, SlowEncoder(), batch_size=8, progress=True)
    assert f.ok.all()
    lines = [r.getMessage() for r in caplog.records]
    assert lines and lines[0].startswith("plot features (slow): 16/40 (40%), 0.4 plot/s, ETA 1m00s")
    assert lines[-1].endswith("(done)")
