"""Helpers for the reliability suite: the CLI error contract, crafted bad images, memory readings."""
from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import threading
import zlib


# -- CLI contract ----------------------------------------------------------------------------------------------
def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``genrefusion ARGV`` in-process; returns (rc, stdout, stderr)."""
    from genrefusion.cli import main

    capsys.readouterr()
    debug = os.environ.pop("GENREFUSION_DEBUG", None)  # debug mode re-raises: not the user contract
    try:
        rc = main([str(a) for a in argv])
    finally:
        if debug is not None:
            os.environ["GENREFUSION_DEBUG"] = debug
    out, err = capsys.readouterr()
    return rc, out, err


def assert_cli_error(argv, capsys, *needles: str) -> str:
    """The contract for bad input: exit 2, exactly one ``error: ...`` line on stderr, no traceback.
    Returns that line; every needle (case-insensitive) must be in it."""
    rc, out, err = run_cli(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 2, f"exit {rc}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one error line, stderr: {err!r}"
    assert "Traceback" not in err + out
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])
    return lines[0]


# -- which files get opened --------------------------------------------------------------------------------------
class _OpenWatch:
    """Records the real path of every ``open`` audit event (builtins.open, io.open, os.open) while active.
    Audit hooks cannot be removed, so one hook is installed per process and toggled."""

    def __init__(self):
        self.active = False
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event, args):
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            p = os.path.realpath(os.fsdecode(args[0]))
            with self.lock:
                self.paths.append(p)


_WATCH = _OpenWatch()
sys.addaudithook(_WATCH)


@contextlib.contextmanager
def opened_files():
    """``with opened_files() as seen: ...`` -> ``seen`` lists the real path of every file opened meanwhile."""
    _WATCH.paths = []
    _WATCH.active = True
    try:
        yield _WATCH.paths
    finally:
        _WATCH.active = False


# -- crafted images ---------------------------------------------------------------------------------------------
def image_bytes(mode="RGB", size=(40, 60), fmt="JPEG", color=None, **save) -> bytes:
    from PIL import Image

    if color is None:
        color = {"RGB": (200, 40, 30), "RGBA": (200, 40, 30, 128), "L": 128, "LA": (128, 100), "CMYK": (0, 200, 200, 0),
                 "P": 3, "1": 1, "I;16": 30000}.get(mode, 100)
    im = Image.new(mode, size, color)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(w=30_000, h=30_000) -> bytes:
    """A valid PNG header announcing w x h RGB pixels with ~100 bytes of data: decoding it would need
    w*h*3 bytes (2.7 GB at 30000^2). Nothing of that size is allocated to build it."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def jpeg_bomb(w=30_000, h=30_000) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to announce w x h pixels."""
    data = bytearray(image_bytes(size=(16, 16)))
    i = data.find(b"\xff\xc0")
    assert i > 0
    struct.pack_into(">HH", data, i + 5, h, w)  # marker(2) len(2) precision(1) height(2) width(2)
    return bytes(data)


def exif_rotated_jpeg(size=(60, 30), orientation=6) -> bytes:
    """A landscape JPEG (left half red, right half blue) tagged with EXIF orientation 6 (rotate 90 CW):
    a viewer that honours EXIF shows it portrait, red on top."""
    from PIL import Image

    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), MB."""
    return _status_kb("VmHWM") / 1024


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb("VmRSS", pid) / 1024


def _status_kb(key: str, pid="self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# -- a counting stand-in backbone (feature cache tests) -----------------------------------------------------------
def make_counting_encoder(dim: int = 8):
    """A tiny deterministic image "backbone": features are functions of the pixels; ``calls`` counts the
    posters it was run on (what a cache hit saves)."""
    import torch

    class CountingEncoder(torch.nn.Module):
        name, fingerprint, preprocess_version = "counting", "test", 1

        def __init__(self):
            super().__init__()
            self.dim = dim
            self.proj = torch.nn.Linear(3, dim)
            torch.nn.init.constant_(self.proj.weight, 0.5)
            torch.nn.init.constant_(self.proj.bias, 0.1)
            self.calls = 0

        def preprocess(self, im):
            import numpy as np

            return torch.from_numpy(np.asarray(im.resize((4, 4)), np.float32).reshape(-1, 3)).mean(0) / 255

        def forward(self, x):
            self.calls += x.shape[0]
            return self.proj(x) * torch.arange(1, self.dim + 1)

    return CountingEncoder()
