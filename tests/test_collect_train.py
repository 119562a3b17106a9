"""End to end: pages collected by `collect imdb-pages` train with `genrefusion.train.main` (slow)."""
from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from genrefusion.collect.imdb_pages import collect_imdb_pages

COLORS = {"Action": (220, 40, 30), "Comedy": (250, 220, 40), "Horror": (20, 20, 20)}
WORDS = {"Action": "explosions chase fight gunfire", "Comedy": "hilarious mishaps jokes prank",
         "Horror": "haunted demon blood scream"}


def write_pages(folder, n=45, seed=0):
    """IMDb-like saved pages (JSON-LD) with a genre-dependent plot and poster saved beside each."""
    rng = random.Random(seed)
    folder.mkdir()
    genres = list(COLORS)
    for i in range(n):
        tt = f"tt{8000000 + i}"
        gs = [genres[i % 3]] + ([genres[(i + 1) % 3]] if i % 4 == 0 else [])
        plot = " ".join(WORDS[g] for g in gs) + " in a small town " + " ".join(rng.sample("a b c d e f g".split(), 3))
        ld = {"@context": "https://schema.org", "@type": "Movie", "url": f"https://www.imdb.com/title/{tt}/",
              "name": f"Title {i}", "description": plot, "genre": gs if len(gs) > 1 else gs[0],
              "image": f"https://m.media-amazon.com/images/M/x{i}@._V1_.jpg", "datePublished": f"{1990 + i % 30}-01-01"}
        (folder / f"{tt}.html").write_text(f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script>'
                                           "</head><body></body></html>")
        Image.new("RGB", (120, 180), COLORS[gs[0]]).save(folder / f"{tt}.jpg")


@pytest.mark.slow
def test_collected_dataset_trains(tmp_path):
    from genrefusion.config import Config
    from genrefusion.train import main as train_main

    write_pages(tmp_path / "pages")
    out = tmp_path / "ds"
    n, rep = collect_imdb_pages(tmp_path / "pages", out)
    assert n == 45 and not rep.skipped
    cfg = Config().replace({"train.epochs": 2, "train.fused_epochs": 2, "train.batch_size": 16,
                            "train.hidden": [32, 16], "data.min_genre_count": 3, "text.encoder": "minilm",
                            "image.num_workers": 0, "cache_dir": str(tmp_path / "cache")})
    result = train_main([out], tmp_path / "run", cfg, progress=False, write_report=False, device="cpu")
    assert sorted(result["genres"]) == ["Action", "Comedy", "Horror"]
    assert set(result["models"]) >= {"poster", "plot", "fused"}
    assert (tmp_path / "run" / "model" / "weights.safetensors").exists()
