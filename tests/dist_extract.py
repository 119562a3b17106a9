"""torchrun entry point for tests/test_distributed.py: sharded feature extraction with toy encoders.

    torchrun --nproc_per_node 2 tests/dist_extract.py POSTER_DIR CACHE OUT

Each rank writes ``OUT/rank<r>.npz`` (image and text values/ok, errors, cache hits).
"""
import json
import sys
from pathlib import Path

import numpy as np

from genrefusion import distributed as dist
from genrefusion.encoders.extract import extract_image_features, extract_text_features, feature_cache_for


def toy_encoders():
    """Deterministic stand-ins for the backbones: cheap, and exactly reproducible in one process."""
    import torch
    from torch import nn

    class ToyImage(nn.Module):
        name, dim, fingerprint = "toyimg", 6, "t1"

        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 6)
            with torch.no_grad():
                self.proj.weight.copy_(torch.arange(18, dtype=torch.float32).view(6, 3) / 10)
                self.proj.bias.zero_()

        def preprocess(self, im, train=False):
            x = torch.from_numpy(np.asarray(im.convert("RGB").resize((8, 8)), dtype=np.float32) / 255)
            return x.permute(2, 0, 1)

        def forward(self, x):
            return self.proj(x.mean(dim=(2, 3)))

    class ToyText:
        name, dim, fingerprint = "toytxt", 4, "t1"

        def encode(self, texts, batch_size=32):
            return np.array([[len(t), t.count(" "), sum(map(ord, t)) % 97, 1.0] for t in texts], np.float32)

    return ToyImage().eval(), ToyText()


def inputs(poster_dir: Path):
    posters = sorted(poster_dir.glob("*.jpg"))
    posters = posters + [posters[0], None, poster_dir / "missing.jpg"]  # duplicate, absent, unreadable
    texts = [f"plot number {i} " + "word " * i for i in range(len(posters))]
    texts[3] = texts[5]  # a duplicate plot is computed once
    texts[4] = None
    return posters, texts


def run(poster_dir, cache_root, out):
    info = dist.init()
    img, txt = toy_encoders()
    posters, texts = inputs(Path(poster_dir))
    ids = [f"t{i}" for i in range(len(posters))]
    caches = [feature_cache_for(e, cache_root) if info.is_main else None for e in (img, txt)]
    fi = extract_image_features(posters, img, caches[0], batch_size=3, num_workers=0, ids=ids, progress=False)
    ft = extract_text_features(texts, txt, caches[1], batch_size=3, ids=ids, progress=False)
    np.savez(Path(out) / f"rank{info.rank}.npz", iv=fi.values, iok=fi.ok, tv=ft.values, tok=ft.ok,
             ierr=json.dumps({str(k): v for k, v in fi.errors.items()}), ihits=fi.cache_hits, thits=ft.cache_hits)
    dist.cleanup()


if __name__ == "__main__":
    run(*sys.argv[1:4])
