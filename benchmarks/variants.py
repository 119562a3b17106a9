"""Model choices compared on the dev split: the README main job (every shipped dataset, the default split)
trained once per variant, all else equal, so each default in configs/default.toml is the dev winner.

    python benchmarks/variants.py                                  # every variant below, seed 0
    python benchmarks/variants.py default members_5 --seeds 0 1 2  # some of them, on three splits
    python benchmarks/variants.py default image_lite2 --seeds 0 1 2 --average  # and the two as one ensemble

Prints, per variant and seed, what the choice is made on, all on **dev**: the select metric (mAP by default) of
the poster, plot and fused models; the fused model's dev mAP per input combination of the dev titles (both,
poster only, plot only); and its micro-F1 with thresholds tuned by 5-fold cross-validation within dev
(``evaluate.cross_validated_f1``; 3 repetitions), over all dev titles and on those with both inputs. Beside them
test mAP (reported, never chosen on) and the seconds spent. ``--seeds``: the seed sets the split too, so each
seed is another split with its own dev titles (~120-140 with both inputs each, where one run's F1 moves by ~0.02):
with ``default`` among the variants, every other variant's mean difference from it over the same seeds is
printed, with the per-seed differences. Writes ``benchmarks/variants.json``. Runs go to
``benchmarks/out/variants/<name>`` (``<name>_seed<K>`` for seeds other than 0) and are reused when finished
(delete one to retrain it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

VARIANTS = {
    # the defaults (configs/default.toml): what every other variant is compared with
    "default": {},
    # one train/dev run, thresholds tuned on dev (the defaults before cross-fitting; train.crossfit = 5 is the default)
    "crossfit_0": {"train.crossfit": 0},
    # the fused model's join point (train.fusion_join; "heads" is the default)
    "join_features": {"train.fusion_join": "features"},
    # end-to-end fine-tuning of the poster backbone (train.finetune), with the default join
    "finetune_last_block": {"train.finetune": "last_block"},
    # the paper's text route (ULMFiT AWD-LSTM) against MiniLM, with the default join
    "text_lstm": {"text.encoder": "lstm"},
    # augmented poster views in training (train.poster_views; 0 is the default)
    "poster_views_1": {"train.poster_views": 1},
    "poster_views_3": {"train.poster_views": 3},
    # ensemble members per head (train.members; 3 is the default)
    "members_1": {"train.members": 1},
    "members_5": {"train.members": 5},
    # the fused stage's fusion (train.fusion; "concat" is the default); a gated unit joins one member only
    "fusion_gmu_members_1": {"train.fusion": "gmu", "train.members": 1},
    # the loss's positive weights (train.pos_weight; "sqrt" is the default)
    "pos_weight_none": {"train.pos_weight": "none"},
    "pos_weight_balanced": {"train.pos_weight": "balanced"},
    # the loss (train.loss; "bce" is the default)
    "loss_focal": {"train.loss": "focal"},
    "loss_asl": {"train.loss": "asl"},
    "label_smoothing_0.05": {"train.label_smoothing": 0.05},
    "label_smoothing_0.1": {"train.label_smoothing": 0.1},
    # sparsely labelled datasets' negatives down-weighted (train.negative_weight; "none" is the default)
    "negative_weight_density": {"train.negative_weight": "density"},
    # the fused stage's branch learning rate (train.branch_lr_factor; 0.1 is the default) and sampling
    "branch_lr_0": {"train.branch_lr_factor": 0.0},
    "branch_lr_0.3": {"train.branch_lr_factor": 0.3},
    "fused_balance_sqrt": {"train.fused_balance": "sqrt"},
    "fused_balance_none": {"train.fused_balance": "none"},
    "fused_balance_both": {"train.fused_balance": "both"},
    # the fused stage's modality dropout (train.modality_dropout; 0.3 is the default), now that "equal" sampling
    # already shows it poster-only and plot-only titles
    "modality_dropout_0": {"train.modality_dropout": 0.0},
    "modality_dropout_0.1": {"train.modality_dropout": 0.1},
    "modality_dropout_0.5": {"train.modality_dropout": 0.5},
    # the heads' dropout (train.dropout; 0.4 is the default)
    "dropout_0.2": {"train.dropout": 0.2},
    "dropout_0.6": {"train.dropout": 0.6},
    # the heads' size (train.hidden; the paper's [512, 256] is the default) and weight decay (1e-2 is the default)
    "hidden_256_128": {"train.hidden": [256, 128]},
    "weight_decay_0.05": {"train.weight_decay": 0.05},
    # the heads' input dropout, learning rate and batch size (0.2, 2e-3 and 256 are the defaults)
    "input_dropout_0.35": {"train.input_dropout": 0.35},
    "lr_1e-3": {"train.lr": 1e-3},
    "batch_128": {"train.batch_size": 128},
    # the poster backbone (image.encoder; EfficientNet-Lite0 at 224 px is the default): Lite1 at 240 px, Lite2 at 260
    "image_lite1": {"image.encoder": "efficientnet_lite1"},
    "image_lite2": {"image.encoder": "efficientnet_lite2"},
    # the lexical blend (text.lexical; "auto" is the default)
    "lexical_off": {"text.lexical": "off"},
}


def run_name(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}_seed{seed}"


def dev_figures(run: Path | list[Path], model: str = "fused") -> dict | None:
    """A model's (the fused one's by default) dev mAP per input combination and its cross-validated dev
    micro-/macro-F1, from the run's ``dev_scores.npz`` (None for a run trained before that file was written).
    A list of runs of one split: their scores averaged, as one ensemble of their models would score."""
    from genrefusion.config import Config
    from genrefusion.evaluate import cross_validated_f1
    from genrefusion.io import read_json
    from genrefusion.metrics import masked_map
    from genrefusion.thresholds import COMBINATIONS, inputs_of

    runs = [run] if isinstance(run, Path) else list(run)
    if not all((r / "dev_scores.npz").is_file() for r in runs):
        return None
    with np.load(runs[0] / "dev_scores.npz", allow_pickle=False) as z:
        Y, M, combo, genres, keys = z["Y"], z["M"], z["combination"], list(z["genres"]), z["keys"]
        scores = [z[f"S_{model}"]]
    for r in runs[1:]:
        with np.load(r / "dev_scores.npz", allow_pickle=False) as z:
            if not (np.array_equal(z["keys"], keys) and list(z["genres"]) == genres):
                raise SystemExit(f"{r}: not the split of {runs[0]} (other dev titles or genres); "
                                 "average runs of one seed")
            scores.append(z[f"S_{model}"])
    S = np.mean(scores, axis=0)
    rule = Config.from_dict(read_json(runs[0] / "config.json", "run config")["config"]).train.threshold_rule_spec
    cv = cross_validated_f1(model, Y, S, M, *inputs_of(combo), genres, rule)
    out = {f"mAP_{c}": round(masked_map(Y[combo == c], S[combo == c], M[combo == c]), 5)
           for c in COMBINATIONS if (combo == c).any()}
    out["cv"] = cv
    return out


def run_variant(name: str, overrides: dict, seed: int, data: list[Path], out: Path) -> dict:
    from genrefusion.config import load_config
    from genrefusion.train import main

    from genrefusion.errors import ConfigError

    run = out / run_name(name, seed)
    try:
        m = main(data, run, load_config(overrides={**overrides, "seed": seed}), resume=True, progress=False)
    except ConfigError as err:  # a run trained under other defaults (e.g. before train.crossfit = 5)
        raise SystemExit(f"{run}: trained with another config ({err}); delete the folder to retrain it") from None
    row = {"overrides": overrides, "seed": seed,
           "timings": {k: m["timings"].get(k) for k in ("features_s", "features_image_s", "training_s", "total_s")},
           "stage_seconds": {k: v.get("seconds") for k, v in m["training"].items()}}
    for model in ("poster", "plot", "fused"):
        if model in m["models"]:
            row[f"dev_{model}"] = m["models"][model].get("dev_score")
            row[f"test_mAP_{model}"] = m["models"][model].get("mAP")
    row["select_metric"] = m.get("select_metric")
    row["dev_fused_detail"] = dev_figures(run)
    return row


def _key_figures(r: dict) -> dict:
    """The figures a choice is made on, flat: dev mAP of the fused model, on the titles with both inputs, and its
    cross-validated micro-F1 over all dev titles and on those with both inputs."""
    d = r.get("dev_fused_detail") or {}
    cv = d.get("cv", {})
    return {"dev mAP": r.get("dev_fused"), "mAP both": d.get("mAP_both"),
            "CV micro-F1": cv.get("all", {}).get("micro_f1"), "CV micro-F1 both": cv.get("both", {}).get("micro_f1")}


def _fmt(v) -> str:
    return "  n/a " if v is None else f"{v:.4f}"


def print_row(name: str, r: dict) -> None:
    k = _key_figures(r)
    print(f"{run_name(name, r['seed']):26s} dev {r['select_metric']}: poster {_fmt(r.get('dev_poster'))} "
          f"plot {_fmt(r.get('dev_plot'))} fused {_fmt(k['dev mAP'])} | fused, both inputs: mAP {_fmt(k['mAP both'])} "
          f"CV micro-F1 {_fmt(k['CV micro-F1 both'])} | CV micro-F1 all {_fmt(k['CV micro-F1'])} | test mAP fused "
          f"{_fmt(r.get('test_mAP_fused'))} | features {r['timings']['features_s']} s, training "
          f"{r['timings']['training_s']} s", flush=True)


def against_default(rows: dict, seeds: list[int]) -> list[str]:
    """Per variant, the mean difference from ``default`` over the seeds both were run with, and each seed's."""
    lines = []
    base = {s: _key_figures(rows["default"][s]) for s in seeds if s in rows.get("default", {})}
    for name, per_seed in rows.items():
        if name == "default":
            continue
        common = [s for s in seeds if s in per_seed and s in base]
        if not common:
            continue
        parts = []
        for fig in ("dev mAP", "mAP both", "CV micro-F1 both", "CV micro-F1"):
            d = [_key_figures(per_seed[s])[fig] - base[s][fig] for s in common
                 if _key_figures(per_seed[s])[fig] is not None and base[s][fig] is not None]
            if d:
                parts.append(f"{fig} {np.mean(d):+.4f} ({' / '.join(f'{x:+.3f}' for x in d)})")
        lines.append(f"{name} - default, seeds {', '.join(map(str, common))}: " + "; ".join(parts))
    return lines


def main(argv=None) -> int:
    from genrefusion.paths import shipped_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (each its own split); default 0")
    p.add_argument("--out", type=Path, default=HERE / "out" / "variants")
    p.add_argument("--average", action="store_true",
                   help="also score the named variants' fused models averaged (one ensemble of them), per seed")
    args = p.parse_args(argv)
    if args.average and len(args.names) < 2:
        p.error("--average needs at least two variants named")
    unknown = [n for n in args.names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    data = sorted(d for d in shipped_data_dir().iterdir() if (d / "titles.jsonl").is_file())
    results_path = HERE / "variants.json"
    rows: dict = {}
    for name in args.names or list(VARIANTS):
        for seed in args.seeds:
            r = run_variant(name, VARIANTS[name], seed, data, args.out)
            rows.setdefault(name, {})[seed] = r
            # re-read before writing: another invocation may have added variants meanwhile
            results = json.loads(results_path.read_text()) if results_path.is_file() else {}
            results[run_name(name, seed)] = r
            print_row(name, r)
            tmp = results_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            os.replace(tmp, results_path)
    if args.average:
        name = "+".join(args.names)
        for seed in args.seeds:
            d = dev_figures([args.out / run_name(n, seed) for n in args.names])
            cv = {c: v["micro_f1"] for c, v in d["cv"].items() if isinstance(v, dict) and "micro_f1" in v}
            rows.setdefault(name, {})[seed] = {"seed": seed, "dev_fused_detail": d, "dev_fused": None}
            print(f"{run_name(name, seed)}: fused scores averaged | mAP both {d['mAP_both']:.4f} | CV micro-F1 "
                  + " ".join(f"{c} {v:.4f}" for c, v in cv.items()), flush=True)
    for line in against_default(rows, args.seeds):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
