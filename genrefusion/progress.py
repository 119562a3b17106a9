"""Progress for long loops: a tqdm bar on a terminal, a log line every ~30 s otherwise.

tqdm draws nothing when stderr is not a terminal (a log file, CI, ``demo.sh > out.txt``), which left a
13-minute feature pass silent. ``progress_bar`` keeps tqdm for terminals and, whenever the bar is off,
logs ``desc: done/total (pct), rate, ETA`` on the ``genrefusion.progress`` logger every ``interval``
seconds (INFO: shown by the CLI unless ``-q``), plus a closing line for loops that took that long.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable

log = logging.getLogger("genrefusion.progress")
INTERVAL_S = 30.0


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LogProgress:
    """The bar's stand-in when it is off: counts like tqdm (``update``, ``close``) and logs now and then."""

    def __init__(self, total: int | None, desc: str, unit: str, interval: float = INTERVAL_S,
                 clock: Callable[[], float] | None = None, logger: logging.Logger = log):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.clock, self.log = clock or time.monotonic, logger
        self.n, self.lines = 0, 0
        self.start = self.last = self.clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,} ({self.n / max(self.total, 1):.0%})"
        out = f"{self.desc}: {done}, {rate:.1f} {self.unit}/s"
        if self.total is not None and self.n < self.total:
            out += f", ETA {_duration((self.total - self.n) / rate)}" if rate > 0 else ", ETA unknown"
        return out + f", {_duration(elapsed)} elapsed"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.lines += 1
            self.log.info("%s", self.line())

    def close(self) -> None:
        if self.lines:  # a loop long enough to have reported says when it is done
            self.log.info("%s (done)", self.line())
            self.lines = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True,
                 interval: float = INTERVAL_S, **tqdm_kw):
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else a ``LogProgress``. Both have
    ``update(n)`` and ``close()``."""
    from tqdm.auto import tqdm

    if enabled and _is_tty(tqdm_kw.get("file", sys.stderr)):
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **tqdm_kw)
    return LogProgress(total, desc, unit, interval)


def track(items, desc: str, unit: str = "it", enabled: bool = True, total: int | None = None):
    """Iterate ``items`` under a ``progress_bar`` (for loops whose body may ``continue``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = progress_bar(total, desc, unit, enabled)
    try:
        for x in items:
            yield x
            bar.update(1)
    finally:
        bar.close()


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams (pytest's capture)
        return False
