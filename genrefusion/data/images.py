"""Safe poster loading: any common format -> RGB PIL image, with size limits and EXIF rotation.

Every entry point (datasets, predict, API) opens posters through ``load_image`` so one set of
rules applies: bounded bytes and pixels (decompression bombs refused), truncated files refused,
CMYK/greyscale/alpha/palette converted to RGB.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadInput

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000

# We check pixel counts ourselves (below); keep PIL's own guard as a backstop at 2x.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 2


def _open(data: bytes | None, path: Path | None, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data) if data is not None else path)
            w, h = im.size
            if w * h > max_pixels:
                raise BadInput(f"{name}: image too large ({w}x{h} = {w*h/1e6:.0f} MP > {max_pixels/1e6:.0f} MP)")
            im.load()  # full decode: truncated/corrupt data fails here, not later
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"{name}: image too large (decompression bomb refused)") from None
    except UnidentifiedImageError:
        raise BadInput(f"{name}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadInput(f"{name}: corrupt or truncated image ({err})") from None
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """EXIF-rotate, then flatten alpha on white and convert any mode (CMYK, L, P, I;16) to RGB."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not lose an otherwise fine poster
        pass
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.split()[-1])
        return bg
    if im.mode in ("I", "I;16", "I;16B", "F"):
        im = ImageOps.autocontrast(im.convert("F").convert("L")) if im.mode == "F" else im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image(src, name: str | None = None, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load a poster from a path, bytes or PIL image and return an RGB image.

    Raises ``BadInput`` with a one-line reason naming ``name`` (default: the path).
    """
    if isinstance(src, Image.Image):
        w, h = src.size
        if w * h > max_pixels:
            raise BadInput(f"{name or 'image'}: image too large ({w}x{h})")
        return to_rgb(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        name = name or "poster"
        if not data:
            raise BadInput(f"{name}: empty file (0 bytes)")
        if len(data) > max_bytes:
            raise BadInput(f"{name}: file too large ({len(data)/1e6:.1f} MB > {max_bytes/1e6:.0f} MB)")
        return to_rgb(_open(data, None, name, max_pixels))
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        name = name or str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BadInput(f"{name}: file not found") from None
        except OSError as err:
            raise BadInput(f"{name}: cannot read ({err.strerror})") from None
        if not path.is_file():
            raise BadInput(f"{name}: not a regular file")
        if size == 0:
            raise BadInput(f"{name}: empty file (0 bytes)")
        if size > max_bytes:
            raise BadInput(f"{name}: file too large ({size/1e6:.1f} MB > {max_bytes/1e6:.0f} MB)")
        return to_rgb(_open(None, path, name, max_pixels))
    raise BadInput(f"{name or 'poster'}: unsupported poster type {type(src).__name__}")


def check_image_file(path: Path, name: str | None = None) -> str | None:
    """Return None if ``path`` decodes as an image, else the one-line reason (for validation)."""
    try:
        load_image(path, name=name)
    except BadInput as err:
        return str(err)
    return None


def save_jpeg(im: Image.Image, dest: Path, max_side: int | None = None, quality: int = 92) -> None:
    """Re-encode ``im`` as RGB JPEG at ``dest`` atomically (optionally bounding the longer side)."""
    from ..io import atomic_open

    im = to_rgb(im)
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    with atomic_open(dest, "wb") as fh:
        im.save(fh, format="JPEG", quality=quality)
