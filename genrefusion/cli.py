"""The ``genrefusion`` command: a thin argparse layer over the package.

Each subcommand lives in ``genrefusion/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import heavy libraries (torch, ...) inside ``run`` only, so
``genrefusion --help`` and ``validate`` start fast. Every ``GenreFusionError`` becomes one line on
stderr and a non-zero exit; no traceback reaches the user unless ``GENREFUSION_DEBUG=1``. Log lines
(progress, training stages) go to stderr at INFO; ``-v`` adds debug lines, ``-q`` keeps warnings only
(``-qq``: errors only), before or after the command name.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import signal
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
    "explain": ("explain", "explain one prediction: which input, which plot words, which poster regions"),
    "serve": ("serve", "serve the REST API and web page"),
    "export": ("export", "export a trained model to ONNX"),
    "merge": ("merge", "merge sharded batch-prediction outputs"),
}


def _add_log_options(p, prefix: str = "") -> None:
    """-v/-q on ``p`` and on every sub-command below it. Sub-commands count into their own fields, added to
    the main parser's, so ``-q train ... -q`` is -qq."""
    g = p.add_argument_group("logging")
    g.add_argument("-v", "--verbose", action="count", default=0, dest=f"{prefix}verbose",
                   help="more log lines (debug)")
    g.add_argument("-q", "--quiet", action="count", default=0, dest=f"{prefix}quiet",
                   help="fewer log lines: -q warnings only (no progress lines), -qq errors only")
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                _add_log_options(sp, prefix + "sub_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrefusion",
        description="Predict movie/TV genres from poster and plot (image + text fusion).",
    )
    parser.add_argument("--version", action="version", version=f"genrefusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(f".commands.{module}", __package__)
        # raw: the command docstrings hold examples, one a line
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    _add_log_options(parser)
    return parser


def _count(args, name: str) -> int:
    """-v or -q given before the command, after it, and after a sub-command, added up."""
    return sum(v for k, v in vars(args).items() if re.fullmatch(rf"(sub_)*{name}", k))


def log_level(verbose: int, quiet: int) -> int:
    """INFO by default; each -v one step down (to DEBUG), each -q one step up (to ERROR)."""
    return min(logging.ERROR, max(logging.DEBUG, logging.INFO + 10 * (quiet - verbose)))


class _Console:
    """stderr log handler for one CLI call on the ``genrefusion`` logger (removed afterwards, so calling
    ``main`` again, as tests do, neither doubles lines nor keeps an old level)."""

    def __init__(self, level: int):
        self.logger = logging.getLogger("genrefusion")
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        self.handler.setLevel(level)
        self.old_level = self.logger.level

    def __enter__(self):
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.handler.level)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        return False


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit), raised where Ctrl-C would be: the same clean-up runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    old_sigterm = None
    try:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        with _Console(log_level(_count(args, "verbose"), _count(args, "quiet"))):
            rc = args._run(args)
        return int(rc or 0)
    except GenreFusionError as err:
        if os.environ.get("GENREFUSION_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(err, _Terminated) else 130
    except BrokenPipeError:
        return 0
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


if __name__ == "__main__":
    sys.exit(main())
