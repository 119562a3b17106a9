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


def add_image_weights(p) -> None:
    """``--image-weights FILE``: the poster backbone's weights for a bundle that does not carry them."""
    p.add_argument("--image-weights", metavar="FILE", default=None,
                   help="poster backbone weights (e.g. the ImageNet ResNet-50 state dict) for a model bundle that "
                        "does not carry them; overrides the bundle's own copy")
