"""The ``genrefusion`` command: a thin argparse layer over the package.

Each subcommand lives in ``genrefusion/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import heavy libraries (torch, ...) inside ``run`` only, so
``genrefusion --help`` and ``validate`` start fast. Every ``GenreFusionError`` becomes one line on
stderr and a non-zero exit; no traceback reaches the user unless ``GENREFUSION_DEBUG=1``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .version import __version__
from .errors import GenreFusionError

# name -> (module, one-line help)
COMMANDS = {
    "import": ("import_", "import MM-IMDb / CSV / JSONL data into the canonical dataset layout"),
    "validate": ("validate", "check a dataset: counts and every problem by title id"),
    "split": ("split", "stratified train/dev/test split (multi-label, grouped by imdb_id)"),
    "collect": ("collect", "collect titles: saved IMDb pages, IMDb fetcher, TMDB API, IMDb genre files"),
    "train": ("train", "train the poster, plot and fused models on one or more datasets"),
    "evaluate": ("evaluate", "evaluate a trained run on its test split or another dataset"),
    "report": ("report", "write plots and report.html for a trained run"),
    "predict": ("predict", "predict genres for one title or a batch"),
    "serve": ("serve", "serve the REST API and web page"),
    "export": ("export", "export a trained model to ONNX"),
    "merge": ("merge", "merge sharded batch-prediction outputs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrefusion",
        description="Predict movie/TV genres from poster and plot (image + text fusion).",
    )
    parser.add_argument("--version", action="version", version=f"genrefusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(f".commands.{module}", __package__)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip())
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        rc = args._run(args)
        return int(rc or 0)
    except GenreFusionError as err:
        if os.environ.get("GENREFUSION_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
