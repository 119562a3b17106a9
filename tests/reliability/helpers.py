"""Shared helpers: CLI runners with the one-line-error contract and poster builders."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from .util import jpeg_bomb, png_bomb  # noqa: F401 - one builder for both halves of the suite

REPO = Path(__file__).resolve().parents[2]


# -- CLI -----------------------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``genrefusion ARGV`` in-process -> (exit code, stdout, stderr). An escaping exception fails the test."""
    from genrefusion.cli import main

    out, err = io.StringIO(), io.StringIO()
    debug = os.environ.pop("GENREFUSION_DEBUG", None)  # debug mode re-raises: not what a user sees
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse usage errors
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        if debug is not None:
            os.environ["GENREFUSION_DEBUG"] = debug
    return rc, out.getvalue(), err.getvalue()


def run_cli_subprocess(argv: list, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """The installed console entry point in a fresh interpreter (what a user sees). ``argv`` may hold bytes."""
    e = dict(os.environ)
    e.pop("GENREFUSION_DEBUG", None)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "genrefusion", *argv], capture_output=True, env=e, timeout=timeout,
                       cwd=REPO)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def assert_one_line_error(rc: int, stderr: str, *needles: str) -> str:
    """Exit 2, exactly one ``error: ...`` line on stderr, no traceback; each needle in that line."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, f"expected one error line, got: {lines}"
    assert rc == 2, f"exit code {rc}, stderr: {stderr}"
    line = errors[0]
    for n in needles:
        assert n.lower() in line.lower(), f"{n!r} not in {line!r}"
    return line


# -- posters -------------------------------------------------------------------------------------------------
def gradient(size=(40, 60), mode="RGB") -> Image.Image:
    """A non-uniform image (so rotations and colour conversions are visible)."""
    w, h = size
    im = Image.new("RGB", size)
    im.putdata([((x * 255) // max(1, w - 1), (y * 255) // max(1, h - 1), 90) for y in range(h) for x in range(w)])
    return im if mode == "RGB" else im.convert(mode)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def exif_rotated(size=(20, 60), orientation=6) -> tuple[bytes, Image.Image]:
    """PNG bytes with an EXIF orientation tag, plus the image as it should look once the tag is honoured."""
    im = gradient(size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(im, "PNG", exif=exif.tobytes())
    # EXIF: 3 = turn 180 degrees, 6 = turn 90 degrees clockwise, 8 = 90 counter-clockwise (PIL turns CCW)
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
    return data, im.transpose(turn[orientation])
