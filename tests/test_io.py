"""genrefusion.io: atomic writes that leave files with the mode a plain open() / mkdir would give them."""
from __future__ import annotations

import contextlib
import os
import stat

import pytest

from genrefusion.io import atomic_path, make_temp_dir, write_bytes, write_json, write_text


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def current_umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_new_files_and_folders_follow_the_umask(tmp_path, mask):
    with umask(mask):
        write_json(tmp_path / "a" / "m.json", {"x": 1})
        write_bytes(tmp_path / "b.bin", b"\0")
        with atomic_path(tmp_path / "c.onnx") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x")
        d = make_temp_dir(tmp_path, ".bundle.")
        with open(tmp_path / "plain.txt", "w") as fh:  # what the user would get without genrefusion
            fh.write("x")
    want = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == want
    for p in ("a/m.json", "b.bin", "c.onnx"):
        assert mode(tmp_path / p) == want, (p, oct(mode(tmp_path / p)))
    assert mode(tmp_path / "a") == mode(d) == 0o777 & ~mask
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewriting_a_file_keeps_its_mode(tmp_path):
    p = tmp_path / "private.json"
    with umask(0o022):
        write_text(p, "v1")
        os.chmod(p, 0o600)  # the user made it private: a rewrite must not open it up (nor would open())
        write_text(p, "v2")
        assert mode(p) == 0o600 and p.read_text() == "v2"
        os.chmod(p, 0o664)
        write_json(p, [1])
        assert mode(p) == 0o664


def test_a_trained_run_is_readable_as_the_umask_allows(tiny_run):
    # every file the run wrote (bundle, metrics.json, report.html, PNGs, split.json, checkpoints) and folder
    mask = current_umask()
    files = [p for p in tiny_run.rglob("*") if p.is_file()]
    assert {"metrics.json", "split.json", "config.json", "weights.safetensors"} <= {p.name for p in files}
    wrong = [(str(p.relative_to(tiny_run)), oct(mode(p))) for p in files if mode(p) != 0o666 & ~mask]
    wrong += [(str(p.relative_to(tiny_run)), oct(mode(p))) for p in [tiny_run, *tiny_run.rglob("*")]
              if p.is_dir() and mode(p) != 0o777 & ~mask]
    assert not wrong, wrong


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped), so nothing owns it now."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name == "nt", reason="no pid probe on Windows")
def test_atomic_dir_tidies_a_killed_writers_leftovers(tmp_path, caplog):
    from genrefusion.io import atomic_dir

    dead, live = _dead_pid(), os.getpid()
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "titles.jsonl").write_text("new\n")
    (tmp_path / f".ds.staging-{dead}-abc123").mkdir()  # killed while writing: garbage
    (tmp_path / f".ds.old-{dead}").mkdir()  # killed after the swap: garbage too
    (tmp_path / f".ds.staging-{live}-def456").mkdir()  # a live writer's (this process): left alone
    with atomic_dir(ds) as tmp:
        (tmp / "titles.jsonl").write_text("newer\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".ds.staging-{live}-def456", "ds"]
    assert (ds / "titles.jsonl").read_text() == "newer\n"

    # killed between its two renames: the dataset sits only in the moved-aside folder, and is put back
    gone = tmp_path / "gone"
    (tmp_path / f".gone.old-{dead}").mkdir()
    (tmp_path / f".gone.old-{dead}" / "titles.jsonl").write_text("kept\n")
    (tmp_path / f".gone.staging-{dead}-0a0b0c").mkdir()
    with pytest.raises(RuntimeError), atomic_dir(gone):
        raise RuntimeError("this writer fails too")
    assert (gone / "titles.jsonl").read_text() == "kept\n"
    assert not list(tmp_path.glob(".gone.*"))
    assert "restored" in caplog.text
