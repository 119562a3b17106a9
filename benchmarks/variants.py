"""Model choices compared on the dev split: the README main job (every shipped dataset, the default split)
trained once per variant, all else equal, so each default in configs/default.toml is the dev winner.

    python benchmarks/variants.py                          # every variant below
    python benchmarks/variants.py join_heads join_features # some of them

Prints, per variant, the dev score (the select metric, mAP by default, of the poster, plot and fused models:
the numbers the choice is made on) beside test mAP (reported, never chosen on) and the seconds spent on
features and training; writes ``benchmarks/variants.json``. Runs go to ``benchmarks/out/variants/<name>``
and are reused when finished (delete one to retrain it). Single runs of one seed: dev differences below
~0.005 mAP are within run-to-run noise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

VARIANTS = {
    # the fused model's join point (train.fusion_join)
    "join_heads": {"train.fusion_join": "heads"},
    "join_features": {"train.fusion_join": "features"},
    # end-to-end fine-tuning of the poster backbone (train.finetune), with the default join
    "finetune_last_block": {"train.finetune": "last_block"},
    # the paper's text route (ULMFiT AWD-LSTM) against MiniLM, with the default join
    "text_lstm": {"text.encoder": "lstm"},
    # augmented poster views in training (train.poster_views; 0 is the default)
    "poster_views_1": {"train.poster_views": 1},
    "poster_views_3": {"train.poster_views": 3},
}


def run_variant(name: str, overrides: dict, data: list[Path], out: Path) -> dict:
    from genrefusion.config import load_config
    from genrefusion.train import main

    m = main(data, out / name, load_config(overrides=overrides), resume=True, progress=False)
    row = {"overrides": overrides,
           "timings": {k: m["timings"].get(k) for k in ("features_s", "features_image_s", "training_s", "total_s")},
           "stage_seconds": {k: v.get("seconds") for k, v in m["training"].items()}}
    for model in ("poster", "plot", "fused"):
        if model in m["models"]:
            row[f"dev_{model}"] = m["models"][model].get("dev_score")
            row[f"test_mAP_{model}"] = m["models"][model].get("mAP")
    row["select_metric"] = m.get("select_metric")
    return row


def main(argv=None) -> int:
    from genrefusion.paths import shipped_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--out", type=Path, default=HERE / "out" / "variants")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    data = sorted(d for d in shipped_data_dir().iterdir() if (d / "titles.jsonl").is_file())
    results_path = HERE / "variants.json"
    for name in args.names or list(VARIANTS):
        r = run_variant(name, VARIANTS[name], data, args.out)
        # re-read before writing: another invocation may have added variants meanwhile
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        results[name] = r
        print(f"{name:22s} dev {r['select_metric']}: poster {r.get('dev_poster', float('nan')):.4f} "
              f"plot {r.get('dev_plot', float('nan')):.4f} fused {r.get('dev_fused', float('nan')):.4f} | "
              f"test mAP fused {r.get('test_mAP_fused', float('nan')):.4f} | features {r['timings']['features_s']} s, "
              f"training {r['timings']['training_s']} s", flush=True)
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, results_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
