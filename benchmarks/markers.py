"""Refresh the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in a Markdown file (the prose
around it is kept): how the benchmarks put their latest figures into README.md and benchmarks/README.md."""
from __future__ import annotations

from pathlib import Path

from genrefusion.io import write_text


def replace_block(path: Path, name: str, body: str, required: bool = False) -> bool:
    """Put ``body`` between the ``name`` markers of ``path``; False (or SystemExit if ``required``) when the file
    has no such markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if start not in text or end not in text:
        if required:
            raise SystemExit(f"{path}: no {start} ... {end} block to refresh")
        return False
    head, rest = text.split(start, 1)
    write_text(path, head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])  # atomic: a kill keeps the prose
    return True
