"""Scale benchmark: time and peak RSS of validate / split / feature caching / predict --batch at 2.6k and 26k titles.

A synthetic canonical dataset of N titles is generated from the shipped posters and plots with new ids. Every
poster is re-encoded with a small per-title change (crop offset + a marker pixel) and every plot gets a distinct
suffix, so the content-keyed feature cache cannot short-cut the work: the 26k run really decodes and encodes 26k
posters. Each step runs in its own subprocess; its peak RSS comes from ``wait4`` (the kernel's ru_maxrss), so
numbers include torch, the model and every buffer. The step is started by a small launcher process, not by
this one: Linux carries the forking parent's RSS into the child's ru_maxrss across exec, so a child forked
from a benchmark that has loaded torch would report at least the benchmark's own size.

    python benchmarks/scale.py --sizes 2600 26000 --run runs/demo        # predict step needs a trained run
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrefusion.data.dataset import Dataset, DatasetWriter  # noqa: E402
from genrefusion.data.records import Title  # noqa: E402
from genrefusion.paths import shipped_datasets  # noqa: E402

# Feature caching as `genrefusion train` does it (same encoders, same cache code), without the training.
PREDICT_FULL_MAX = int(os.environ.get("GF_PREDICT_FULL_MAX", 2600))

CACHE_SNIPPET = """
import sys
from genrefusion.data.dataset import Dataset
from genrefusion.encoders.image import build_image_encoder
from genrefusion.encoders.text import MiniLMEncoder
from genrefusion.encoders.inputs import InputEncoders, build_inputs
ds = Dataset(sys.argv[1])
ts = ds.titles()
inp = build_inputs([ds.poster_path(t) if t.poster else None for t in ts], [t.plot for t in ts],
                   InputEncoders(build_image_encoder("efficientnet_lite0"), MiniLMEncoder()), sys.argv[2],
                   [t.id for t in ts], num_workers=2, progress=False)
print(int(inp.image_ok.sum()), "posters,", int(inp.text_ok.sum()), "plots encoded")
"""


def make_synthetic(out: Path, n: int, seed: int = 0) -> Path:
    """Write an N-title canonical dataset drawn (with replacement) from the shipped titles."""
    from PIL import Image

    out = Path(out)
    if (out / "titles.jsonl").is_file() and sum(1 for _ in open(out / "titles.jsonl")) == n:
        return out  # already generated (generation itself is not what is measured)
    pool = []
    for ds in (Dataset(p) for p in shipped_datasets()):
        pool += [(ds, t) for t in ds.iter_titles() if t.poster and t.plot]  # MM-IMDb titles have both
    rng = random.Random(seed)
    with DatasetWriter(out, name=f"synthetic{n}", source="benchmark", overwrite=True, max_side=384) as w:
        for i in range(n):
            ds, t = rng.choice(pool)
            with Image.open(ds.poster_path(t)) as im:
                im = im.convert("RGB")
                dx, dy = rng.randrange(0, 8), rng.randrange(0, 8)
                im = im.crop((dx, dy, im.width - (7 - dx), im.height - (7 - dy)))
                im.putpixel((0, 0), (i % 256, (i // 256) % 256, (i // 65536) % 256))
            plot = f"{t.plot} (variant {i})"
            w.add(Title(id=f"syn{i:06d}", imdb_id=None, title=t.title, year=t.year, kind=t.kind,
                        genres=list(t.genres), plot=plot, poster=None, source="synthetic"), poster=im)
    return out


# runs argv[2:] and writes {"rc", "maxrss_kib"} of it to argv[1]; a fresh ~10 MiB process, see the docstring
_LAUNCHER = ("import json, os, subprocess, sys\n"
             "p = subprocess.Popen(sys.argv[2:])\n"
             "_, status, usage = os.wait4(p.pid, 0)\n"
             "json.dump({'rc': os.waitstatus_to_exitcode(status), 'maxrss_kib': usage.ru_maxrss},"
             " open(sys.argv[1], 'w'))\n")


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; return wall seconds, peak RSS (MiB, the command and its children) and the exit code."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gf-measure-") as tmp:
        report = Path(tmp) / "usage.json"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *cmd],
                              env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        seconds = round(time.perf_counter() - t0, 2)
        if not report.is_file():
            return {"seconds": seconds, "peak_rss_mib": None, "rc": proc.returncode, "tail": proc.stdout[-800:]}
        usage = json.loads(report.read_text())
    res = {"seconds": seconds, "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1), "rc": usage["rc"]}
    if usage["rc"] != 0:
        res["tail"] = proc.stdout[-800:]
    return res


def run_scale(sizes=(2600, 26000), work: Path = ROOT / "benchmarks" / "out" / "scale", run_dir: Path | None = None,
              log=print) -> dict:
    work = Path(work)
    gf = [sys.executable, "-m", "genrefusion"]
    results: dict[str, dict] = {}
    for n in sizes:
        t0 = time.perf_counter()
        data = make_synthetic(work / f"data{n}", n)
        log(f"[scale] {n} titles generated in {time.perf_counter() - t0:.0f}s")
        cache = work / f"cache{n}"
        steps = {
            "validate": gf + ["validate", str(data)],
            "split": gf + ["split", str(data), "--out", str(work / f"split{n}.json"), "--force"],
            "feature_cache": [sys.executable, "-c", CACHE_SNIPPET, str(data), str(cache)],
        }
        if run_dir is not None:
            # Above PREDICT_FULL_MAX titles the batch is run as shard 1 of n/2600 (the whole input is still
            # streamed and skipped through; ~2.6k titles are encoded) to keep the benchmark under an hour on
            # 2 cores: memory flatness is what this step checks; its time is scaled by the shard count.
            shards = max(1, round(n / PREDICT_FULL_MAX)) if n > PREDICT_FULL_MAX else 1
            steps["predict_batch"] = gf + ["predict", str(run_dir), "--batch", str(data), "--out",
                                           str(work / f"pred{n}.jsonl"), "--no-progress"] + (
                ["--shard", f"1/{shards}"] if shards > 1 else [])
        r = {}
        for name, cmd in steps.items():
            if name == "feature_cache":
                import shutil

                shutil.rmtree(cache, ignore_errors=True)  # cold: the cache must be built, not read
            r[name] = measure(cmd)
            if name == "predict_batch" and "--shard" in cmd:
                k = int(cmd[-1].split("/")[1])
                r[name].update(shards=k, seconds_measured=r[name]["seconds"],
                               seconds=round(r[name]["seconds"] * k, 2))  # whole-input estimate
            log(f"[scale] {n:>6} {name:<14} {r[name]['seconds']:>8.1f}s  peak RSS {r[name]['peak_rss_mib']:>7.0f} MiB"
                + ("" if r[name]["rc"] == 0 else f"  FAILED rc={r[name]['rc']}: {r[name].get('tail', '')[-300:]}"))
        r["peak_rss_mib"] = max(v["peak_rss_mib"] for v in r.values())
        results[str(n)] = r
    if len(sizes) >= 2:
        a, b = str(min(sizes)), str(max(sizes))
        results["ratios"] = {
            "titles": max(sizes) / min(sizes),
            "time": {k: round(results[b][k]["seconds"] / max(results[a][k]["seconds"], 1e-9), 2)
                     for k in results[a] if isinstance(results[a][k], dict)},
            "peak_rss": {k: round(results[b][k]["peak_rss_mib"] / results[a][k]["peak_rss_mib"], 2)
                         for k in results[a] if isinstance(results[a][k], dict)},
        }
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2600, 26000])
    ap.add_argument("--run", type=Path, help="trained run dir for the predict --batch step")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "scale")
    args = ap.parse_args(argv)
    if args.run is not None:  # a bad run is found now, not after generating the data
        from genrefusion.bundle import read_bundle_config
        from genrefusion.errors import GenreFusionError

        try:
            read_bundle_config(args.run)
        except GenreFusionError as err:
            ap.error(f"--run: {err}")
    if min(args.sizes) < 1:
        ap.error(f"--sizes: must be >= 1, got {min(args.sizes)}")
    res = run_scale(tuple(args.sizes), args.work, args.run)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
