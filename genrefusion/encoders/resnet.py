"""ResNet-50 in plain torch with torchvision's parameter names, so common ImageNet state dicts load as-is.

No pretrained weights ship with genrefusion (no PyPI package provides them); ``load_resnet50_weights`` reads a
user-supplied ``.pth``/``.pt`` (``torch.load(weights_only=True)``, never unpickling code) or ``.safetensors`` file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

HOW_TO_SUPPLY = ("set [image] weights = \"FILE\" in the config (or --set image.weights=FILE) to train; a trained "
                 "bundle carries the file, else pass --image-weights FILE to predict, serve, evaluate or export")


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # stride on the 3x3 conv ("ResNet v1.5"), as torchvision does
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50; ``features`` returns the 2048-d global-average-pooled activations (``fc`` is kept only so a
    full ImageNet state dict loads without key juggling)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B,2048,h,w] output of layer4 (7x7 for 224-pixel input), before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def read_state_dict(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """Read a tensor state dict from .safetensors or a torch file (weights_only); unwrap common wrappers.

    Accepts ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers and strips a DataParallel ``module.`` prefix.
    Raises ConfigError naming the file on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found ({HOW_TO_SUPPLY})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated/foreign/pickled-code files all end here, as one line
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: cannot read {what} ({msg[:200]})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"{path}: {what} is not a state dict of tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _few(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_resnet50_weights(model: ResNet50, path: str | Path) -> None:
    """Load an ImageNet ResNet-50 state dict (torchvision layout) into ``model``; ``fc.*`` may be absent."""
    sd = read_state_dict(path, "ResNet-50 weights")
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith("fc.")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_few(unexpected)}")
        raise ConfigError(
            f"{path}: not a ResNet-50 state dict in torchvision layout ({'; '.join(parts)})")
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}" for k in sd if sd[k].shape != own[k].shape
           and not k.startswith("fc.")]
    if bad:
        raise ConfigError(f"{path}: ResNet-50 weight shapes differ ({_few(bad, 3)})")
    if "fc.weight" in sd and sd["fc.weight"].shape != own["fc.weight"].shape:
        # a fine-tuned head with another class count: irrelevant for features, keep ours
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    model.load_state_dict(sd, strict=False)
