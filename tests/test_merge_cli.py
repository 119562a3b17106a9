"""genrefusion merge: a shard output that is not there is named as such (the shard checks are in test_batch.py)."""
from __future__ import annotations

from genrefusion.cli import main


def test_a_missing_shard_output_is_named_not_its_manifest(tmp_path, capsys):
    part = tmp_path / "part1.jsonl"
    assert main(["merge", str(part), "--out", str(tmp_path / "all.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {part}: shard output not found\n"  # was: "shard manifest ... not found"
    assert main(["merge", str(tmp_path), "--out", str(tmp_path / "all.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: shard output not found (a folder)\n"
    assert not (tmp_path / "all.jsonl").exists()
