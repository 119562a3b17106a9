"""Fine-tuning EfficientNet-Lite0 on a GPU (bf16 autocast, as training runs): forward + backward time per step
when every step has a new batch size, when the sizes repeat, and padded as the fused branch pads them
(``models.fusion.encode_bucketed``).

    python benchmarks/gpu/shapes.py [SIZES...]     # default: steps of 97, 98, ..., 120 posters
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from genrefusion.encoders.image import FullBackbone, build_image_encoder  # noqa: E402
from genrefusion.models.fusion import encode_bucketed  # noqa: E402


def main(sizes: list[int]) -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = FullBackbone(build_image_encoder("efficientnet_lite0", None)).to(dev).train()

    def step(n, fn):
        x = torch.randn(n, 3 * 224 * 224, device=dev)
        with torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext():
            y = fn(x)
        y.float().sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step(64, net)  # warm-up
    runs = (("new sizes", net), ("the same sizes again", net),
            ("padded (encode_bucketed)", lambda x: encode_bucketed(net, x, pad=True)))
    for label, fn in runs:
        t = time.perf_counter()
        for n in sizes:
            step(n, fn)
        dt = time.perf_counter() - t
        print(f"{label:26s} {len(sizes)} steps of {min(sizes)}-{max(sizes)} posters: {dt:.2f} s, "
              f"{1000 * dt / len(sizes):.0f} ms a step", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or list(range(97, 121)))
