"""Feature caching with 1 rank vs 2 ranks (torchrun, gloo, CPU), and the projected scaling on paper.

Encodes the first N shipped posters (EfficientNet-Lite0) into a fresh temporary cache, once with
``torchrun --nproc_per_node 1`` and once with 2, through the same code ``genrefusion train`` uses
(``extract_image_features``: rank 0 reads the cache and shares the misses out, each rank encodes its
share, rank 0 merges them into the cache). The timed span is the extraction call between two
barriers, so process start-up and model loading are left out; they are printed separately.

Projection (Amdahl): the serial part s is measured directly as the same call again with every poster
cached (hashing every file, the cache lookup and read, and with 2 ranks the broadcast of the matrix:
work every run does whatever the number of ranks); the parallel part is p = T1 - s. N machines, one
rank each at the measured 1-rank rate, take s + p/N. On one 2-core machine a second rank brings no
new cores (the 1-rank run already uses both through intra-op threads), so the measured 2-vs-1
speed-up mostly shows the overhead, not the scaling.

    python benchmarks/bench_distributed.py --posters 300
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(n_posters: int, cache_root: str, out: str) -> None:
    """One rank (run under torchrun)."""
    from genrefusion import distributed as dist
    from genrefusion.encoders.extract import extract_image_features, feature_cache_for
    from genrefusion.encoders.image import build_image_encoder
    from genrefusion.paths import shipped_data_dir

    t_start = time.perf_counter()
    info = dist.init()
    enc = build_image_encoder("efficientnet_lite0")
    posters = sorted((shipped_data_dir() / "poster_genres_av" / "posters").glob("*.jpg"))[:n_posters]
    cache = feature_cache_for(enc, cache_root) if info.is_main else None
    t_ready = time.perf_counter()
    dist.barrier()
    t0 = time.perf_counter()
    f = extract_image_features(posters, enc, cache, batch_size=32, num_workers=0, progress=False)
    dist.barrier()
    t1 = time.perf_counter()
    warm = extract_image_features(posters, enc, cache, batch_size=32, num_workers=0, progress=False)
    dist.barrier()
    t2 = time.perf_counter()
    if info.is_main:
        Path(out).write_text(json.dumps({"posters": len(posters), "ok": int(f.ok.sum()), "extract_s": t1 - t0,
                                         "warm_s": t2 - t1, "warm_hits": warm.cache_hits,
                                         "startup_s": t_ready - t_start, "cached_rows": len(cache)}))
    dist.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(ranks: int, n_posters: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="gf-bench-dist-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), __file__,
               "--worker", str(n_posters), str(Path(tmp) / "cache"), str(out)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"torchrun with {ranks} rank(s) failed:\n{r.stderr[-3000:]}")
        res = json.loads(out.read_text())
        res["wall_s"] = time.perf_counter() - t0
        return res


def run(n_posters: int = 300) -> dict:
    """Measure 1 and 2 ranks; return timings, speed-up and the Amdahl projection."""
    one, two = measure(1, n_posters), measure(2, n_posters)
    t1, t2 = one["extract_s"], two["extract_s"]
    serial = min(two["warm_s"], t1)  # the 2-rank warm pass also pays the broadcast
    parallel = t1 - serial
    projected = {n: round(t1 / (serial + parallel / n), 2) for n in (1, 2, 4, 8, 16, 64)}
    return {
        "posters": n_posters, "cpu_cores": os.cpu_count(),
        "one_rank": {**one, "img_per_s": round(n_posters / t1, 2)},
        "two_ranks": {**two, "img_per_s": round(n_posters / t2, 2)},
        "speedup_2_vs_1": round(t1 / t2, 3),
        "amdahl": {"serial_s": round(serial, 3), "parallel_s": round(parallel, 3),
                   "serial_fraction": round(serial / t1, 4) if t1 else None,
                   "max_speedup": round(t1 / serial, 1) if serial > 0 else None,
                   "projected_speedup_n_ranks": projected,
                   "projected_img_per_s_n_machines": {n: round(n_posters / t1 * s, 1) for n, s in projected.items()}},
    }


def main(argv=None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--worker":
        _worker(int(argv[1]), argv[2], argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posters", type=int, default=300, help="shipped posters to encode (default 300)")
    n = p.parse_args(argv).posters
    if n < 1:  # a slice [:n] would encode (nearly) every shipped poster instead
        p.error(f"--posters: must be >= 1, got {n}")
    res = run(n)
    o, t = res["one_rank"], res["two_ranks"]
    print(f"feature caching of {res['posters']} posters (EfficientNet-Lite0, CPU, {res['cpu_cores']} cores):")
    print(f"  1 rank : {o['extract_s']:.2f}s  ({o['img_per_s']:.1f} img/s; start-up {o['startup_s']:.1f}s)")
    print(f"  2 ranks: {t['extract_s']:.2f}s  ({t['img_per_s']:.1f} img/s; start-up {t['startup_s']:.1f}s)")
    print(f"  speed-up 2 vs 1: {res['speedup_2_vs_1']:.2f}x")
    a = res["amdahl"]
    print(f"Amdahl: serial part (warm-cache pass) {a['serial_s']:.2f}s of {o['extract_s']:.2f}s "
          f"({100 * (a['serial_fraction'] or 0):.1f}%), max speed-up {a['max_speedup']}")
    print("projected on N machines, one rank each at the measured 1-rank rate:")
    for n, s in a["projected_speedup_n_ranks"].items():
        print(f"  N={n:>3}: {s:>6.2f}x  ~{a['projected_img_per_s_n_machines'][n]:.0f} img/s")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
