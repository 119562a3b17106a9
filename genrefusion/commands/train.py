"""Train the poster, plot and fused models on one or more datasets, evaluate them honestly, write a report.

  genrefusion train ../shared/datasets/* --out runs/demo
  genrefusion train DATA --out RUN --config my.toml --set train.epochs=20 --set text.encoder=lstm
  genrefusion train DATA --out RUN --resume          # continue an interrupted run (same arguments)

The run dir gets the split, per-stage checkpoints and weights, the model bundle (model/), metrics.json,
report.html and train.log. --resume continues after the last finished epoch; a finished run just reports.
--set takes TOML values (train.hidden=[256,128], text.encoder=lstm); every key is listed, with its
default, in configs/default.toml. Under torchrun every rank runs this same command (docs/distributed.md)."""
from __future__ import annotations

import argparse

MODEL_CHOICES = ("poster", "plot", "fused")


def parse_set(items) -> dict:
    """``["a.b=3", "c=[1,2]", "d=lstm"]`` -> ``{"a.b": 3, "c": [1, 2], "d": "lstm"}`` (TOML values, else text)."""
    import tomllib

    from ..errors import ConfigError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=10")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()  # a bare word such as lstm or cpu is meant as a string
    return out


def parse_models(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in MODEL_CHOICES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(MODEL_CHOICES)}, got {text!r}")
    return names


def dataset_args(paths) -> list[str]:
    """The DATA arguments minus plain files that a shell glob swept in (``datasets/*`` also matches the
    folder's README.md); said on stderr. Folders and missing paths go on, to fail with a clear error."""
    import sys
    from pathlib import Path

    keep = [p for p in paths if not Path(p).is_file()]
    skipped = [p for p in paths if Path(p).is_file()]
    if skipped and keep:
        print(f"skipping {', '.join(skipped)}: not a dataset folder", file=sys.stderr)
        return keep
    return list(paths)  # nothing but files: let the dataset loader say what is wrong


def add_arguments(p):
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("data", nargs="+", metavar="DATA", help="dataset folder(s) in the canonical layout")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create (or resume)")
    p.add_argument("--config", metavar="FILE.toml", help="config file (see configs/default.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config key (repeatable), e.g. --set train.epochs=10")
    p.add_argument("--models", type=parse_models, default=list(MODEL_CHOICES), metavar="LIST",
                   help="models to bundle: comma list of poster,plot,fused (default: all; fused also trains "
                        "the two single models it starts from)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN")
    p.add_argument("--split", metavar="FILE", help="train/dev/test split to use (a split.json from genrefusion split "
                        "or MM-IMDb's), or 'new' for a fresh stratified one. Default: each dataset's own split.json "
                        "when every DATA has one, else a new split; kept as RUN/split.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default auto: cuda when available)")


def summary_table(result: dict) -> str:
    """Test metrics of every model beside the baselines, micro-F1 per input combination and kind, and the
    verdict against the linear probes, as aligned text."""
    from ..metrics import verdict_lines
    from ..report import _LABEL, _ordered

    models = result.get("models") or {}
    groups = [(f"{by[3:]}:{part}", m) for by in ("by_combination", "by_kind")
              for part, m in (result.get(by) or {}).items()]
    cols = ("micro_f1", "macro_f1", "mAP", "samples_f1", "per_label_accuracy")
    names = _ordered(models)
    width = max([len(_LABEL.get(n, n)) for n in names] + [8])
    head = list(cols) + [f"F1 {g.split(':')[1]}" for g, _ in groups]
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>10}" for c in head)]
    for n in names:
        vals = [models[n].get(c) for c in cols] + [(m.get(n) or {}).get("micro_f1") for _, m in groups]
        lines.append(f"{_LABEL.get(n, n):<{width}}  " + "  ".join(f"{'–' if v is None else f'{v:.3f}':>10}"
                                                                 for v in vals))
    if groups:
        lines.append("(F1 <part>: micro-F1 on the titles with those inputs / of that kind)")
    main = next((n for n in names if n in ("fused", "plot", "poster")), None)
    cis = [(part, m[main]) for part, m in [("all", models)] + groups if main and (m.get(main) or {}).get("ci95")]
    if cis:
        lines.append(f"{main} micro-F1, 95% bootstrap interval: " + "; ".join(
            f"{part.split(':')[-1]} {m['micro_f1']:.3f} [{m['ci95']['micro_f1'][0]:.3f}-{m['ci95']['micro_f1'][1]:.3f}]"
            for part, m in cis if m["ci95"].get("micro_f1")))
    return "\n".join(lines + verdict_lines(result.get("probe_verdicts") or []))


def run(args) -> int:
    import logging
    from pathlib import Path

    from .. import distributed as dist
    from ..config import load_config
    from ..thresholds import tuned_on
    from ..train import main

    cfg = load_config(args.config, parse_set(args.overrides))
    data = dataset_args(args.data)
    models = list(args.models)
    if not dist.env_info().is_main:  # one rank's log lines on the console, not every rank's
        for h in logging.getLogger("genrefusion").handlers:
            h.setLevel(max(h.level, logging.WARNING))
    result = main(data, args.out, cfg, resume=args.resume, models=models,
                  progress=not args.no_progress, device=args.device, split=args.split)
    if not dist.env_info().is_main:
        return 0
    out = Path(args.out)
    split = result.get("split") or {}
    t = result.get("timings") or {}
    print()
    print(f"test metrics ({split.get('test', '?')} test titles; thresholds tuned on {tuned_on(result)}; "
          f"text route: {result.get('text_route')})")
    print(summary_table(result))
    if t.get("total_s") is not None:
        print(f"time: {t['total_s']:.0f}s (features {t.get('features_s', 0):.0f}s, "
              f"training {t.get('training_s', 0):.0f}s)")
    report = out / "report.html"
    print(f"report: {report if report.is_file() else '(not written)'}")
    return 0
