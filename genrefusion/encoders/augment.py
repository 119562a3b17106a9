"""Poster views as they arrive in the wild, for train-time augmentation on cached features.

Posters of real titles come small (thumbnails of 100-200 px), squashed, cropped and re-encoded; the shipped
training posters are clean 288-384 px JPEGs. ``poster_view(im, seed)`` makes one degraded view of a poster:
a random resized crop, a down-then-up scaling to a small size, a flip, a squash of the aspect ratio and a
JPEG re-encode at a low quality, each drawn from ``seed``. The backbone then sees the view exactly as it
sees any poster (``ImageEncoder.preprocess``, eval mode), so its features sit beside the clean ones.

Views are deterministic per (poster bytes, view number, ``VIEW_VERSION``): their features are computed once
and cached like the clean ones (``extract_image_features(..., view=v)``), so an augmented epoch costs a
feature lookup, not a backbone pass. Bump ``VIEW_VERSION`` when the recipe changes.
"""
from __future__ import annotations

import io
import math
import random
import zlib

from PIL import Image

VIEW_VERSION = 1


def view_key(key: str, view: int) -> str:
    """Feature-cache key of a view: the poster's content key for view 0, a derived key otherwise."""
    return key if view == 0 else f"{key}-view{view}-v{VIEW_VERSION}"


def view_seed(key: str) -> int:
    """The random seed of the view whose cache key (``view_key``) is ``key``."""
    return zlib.crc32(key.encode())


def _crop(im: Image.Image, rng: random.Random, scale=(0.65, 1.0), ratio=(0.8, 1.25)) -> Image.Image:
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return im.crop((left, top, left + cw, top + ch))
    return im


def poster_view(im: Image.Image, seed: int) -> Image.Image:
    """One degraded view of an RGB poster (see the module docstring); same seed, same view."""
    rng = random.Random(seed)
    im = _crop(im.convert("RGB"), rng)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = im.size
    if rng.random() < 0.3:  # squashed: a poster stretched into another box
        im = im.resize((max(8, round(w * rng.uniform(0.8, 1.25))), h), Image.Resampling.BILINEAR)
        w, h = im.size
    if rng.random() < 0.7:  # a thumbnail: longer side 96-160 px, scaled back up as a viewer would
        side = rng.randint(96, 160)
        s = side / max(w, h)
        if s < 1:
            small = im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BILINEAR)
            im = small.resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.7:  # re-encoded
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=rng.randint(25, 80))
        buf.seek(0)
        im = Image.open(buf)
        im.load()
    return im
