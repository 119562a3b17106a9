"""One module per CLI command: ``add_arguments(parser)`` and ``run(args)``; ``genrefusion/cli.py`` wires them."""
from __future__ import annotations


def in_range(kind, lo, hi, what: str):
    """An argparse ``type=``: ``kind(s)`` within [lo, hi], else a usage error naming ``what``."""
    def parse(s: str):
        import argparse

        try:
            v = kind(s)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
