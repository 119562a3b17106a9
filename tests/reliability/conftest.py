"""Reliability suite helpers: the CLI error contract, an audit hook proving which files get opened, crafted bad
inputs, and a per-category summary ("reliability: N cases per category, failures F") at the end of the run.

Categories are the test modules (``test_posters.py`` -> ``posters``). A test counts as one case; tests that try many
inputs in one go (hypothesis, the server load test) add their own count through the ``cases`` fixture.
"""
from __future__ import annotations

import io
import os
import struct
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path

import pytest

# -- summary ---------------------------------------------------------------------------------------------------
_CASES: Counter = Counter()
_FAILED: Counter = Counter()
_HERE = Path(__file__).resolve().parent


def _category(nodeid: str) -> str | None:
    path = nodeid.split("::")[0]
    if "reliability/" not in path.replace("\\", "/"):
        return None
    return Path(path).stem.removeprefix("test_")


def pytest_runtest_logreport(report):
    cat = _category(report.nodeid)
    if cat is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        extra = dict(report.user_properties).get("cases", 0)
        _CASES[cat] += max(1, int(extra))
        if report.outcome == "failed":
            _FAILED[cat] += 1
    elif report.when == "teardown" and report.outcome == "failed":
        _FAILED[cat] += 1


def pytest_terminal_summary(terminalreporter):
    if not _CASES:
        return
    per = ", ".join(f"{k} {_CASES[k]}" for k in sorted(_CASES))
    terminalreporter.write_line(
        f"reliability: {sum(_CASES.values())} cases per category ({per}), failures {sum(_FAILED.values())}")


@pytest.fixture
def cases(request):
    """``cases(n)``: this test tried ``n`` inputs (counted in the summary instead of 1)."""
    def add(n: int) -> None:
        props = dict(request.node.user_properties)
        request.node.user_properties[:] = [(k, v) for k, v in request.node.user_properties if k != "cases"]
        request.node.user_properties.append(("cases", props.get("cases", 0) + int(n)))
    return add


# -- CLI contract ----------------------------------------------------------------------------------------------
def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``genrefusion ARGV`` in-process; returns (rc, stdout, stderr)."""
    from genrefusion.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
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


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("GENREFUSION_DEBUG", raising=False)  # debug mode re-raises: not the user contract


# -- which files get opened --------------------------------------------------------------------------------------
class _OpenWatch:
    """Records the paths of every ``open`` audit event (builtins.open, os.open, io.open) while active.
    Audit hooks cannot be removed, so one hook is installed for the session and toggled."""

    def __init__(self):
        self.active = False
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event, args):
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            p = args[0]
            p = os.fsdecode(p) if isinstance(p, (bytes, os.PathLike)) else p
            with self.lock:
                self.paths.append(os.path.realpath(p) if os.path.isabs(p) else os.path.abspath(p))


_WATCH = _OpenWatch()
sys.addaudithook(_WATCH)


@pytest.fixture
def opened_files():
    """Context: ``with opened_files() as seen: ...`` -> ``seen`` lists every path opened meanwhile."""
    import contextlib

    @contextlib.contextmanager
    def watch():
        _WATCH.paths = []
        _WATCH.active = True
        try:
            yield _WATCH.paths
        finally:
            _WATCH.active = False

    return watch


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
