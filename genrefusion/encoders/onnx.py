"""ONNX Runtime sessions for the frozen encoders (poster backbone, MiniLM): export once, check, reuse.

Each graph is exported once per weights fingerprint into the user cache (``$GENREFUSION_CACHE/onnx``), written
atomically (a killed run never leaves half a graph; a damaged one is exported again), and every session is checked
against PyTorch on a probe input before it is used, so the features -- and the feature-cache keys they are stored
under -- stay those of the PyTorch model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError, GenreFusionError
from ..io import atomic_path

log = logging.getLogger(__name__)
ONNX_OPSET = 17


class OnnxRuntimeBacked:
    """For an encoder whose frozen features may run in ONNX Runtime: ``runtime`` ('auto', 'torch', 'onnxruntime'
    ...), ``_session`` (None: not decided yet; False: PyTorch) and ``_build_session()`` come from the encoder."""

    runtime: str
    runtime_label = "the encoder"
    _session = None

    def onnx_session(self):
        """The ONNX Runtime session for frozen features, or None where PyTorch runs them (runtime 'torch', a GPU
        model, weights made trainable, onnxruntime missing, or a failed export or check in 'auto' mode)."""
        if self._session is None:
            self._session = False
            if self.runtime != "torch":
                try:
                    self._session = self._build_session()
                except ConfigError as err:
                    if self.runtime != "auto":
                        raise
                    log.warning("%s runs in PyTorch (%s)", self.runtime_label, err)
        return self._session or None

    def _build_session(self):  # pragma: no cover - abstract
        raise NotImplementedError


class ExportView(torch.nn.Module):
    """A module's ``forward`` as a module of its own that never leaves eval mode, for the ONNX exporter (which
    switches the mode of what it exports and restores it afterwards: done on the encoder itself, that would
    drop its session and re-enable dropout in a wrapper)."""

    def __init__(self, enc: torch.nn.Module):
        super().__init__()
        self.enc = enc

    def forward(self, *args):
        return type(self.enc).forward(self.enc, *args)

    def train(self, mode: bool = True):
        return super().train(False)


def graph_path(stem: str) -> Path:
    from ..paths import cache_dir

    return cache_dir() / "onnx" / f"{stem}-opset{ONNX_OPSET}.onnx"


def atomic_file(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp_name)`` into a temp file beside ``path``, then rename."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except (OSError, GenreFusionError) as err:  # read-only or full cache folder: 'auto' falls back to PyTorch
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot write the ONNX graph under {path.parent} ({reason})") from None


def export_graph(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                 dynamic_axes: dict) -> None:
    import warnings

    def export(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about constant-folded shape checks
            torch.onnx.export(module, args, tmp, dynamo=False, input_names=input_names, output_names=output_names,
                              opset_version=ONNX_OPSET, dynamic_axes=dynamic_axes)

    atomic_file(path, export)


def open_session(path: Path, make: Callable[[], None], feed: dict):
    """(session, its output on ``feed``): an ONNX Runtime CPU session on ``path``; ``make()`` writes the graph when
    it is missing or damaged. Any exporter or runtime failure, the probe run included, becomes a one-line
    ConfigError (callers in 'auto' mode fall back to PyTorch)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("onnxruntime is not installed (pip install 'genrefusion[export]')") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # the same share of the cores PyTorch would use
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # idle ORT threads otherwise spin for a while after each run, stealing the cores the other encoder needs
    # next (measured: +30 ms on a warm single-title prediction)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

    def session():
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    try:
        sess = None
        if path.is_file():
            try:
                sess = session()
            except Exception:  # noqa: BLE001 - a damaged graph (disk full, killed copy): make it again
                path.unlink(missing_ok=True)
        if sess is None:
            make()
            sess = session()
        return sess, sess.run(None, feed)[0]
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any exporter/runtime surprise means: stay on PyTorch
        msg = (str(err).splitlines() or [""])[0][:200]
        raise ConfigError(f"ONNX export/run failed: {type(err).__name__}{': ' + msg if msg else ''}") from None


def check_close(path: Path, got: np.ndarray, want: np.ndarray, tolerance: float) -> None:
    diff = float(np.abs(got - want).max())
    if diff > tolerance:
        raise ConfigError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.1e} (> {tolerance})")
