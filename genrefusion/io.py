"""Atomic file writes and path safety.

Every file genrefusion writes goes through a temp file in the same folder + ``os.replace``,
so a crash or a full disk never leaves a half-written file behind the final name.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import IO, Iterator

from .errors import DatasetError, GenreFusionError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temp file name beside ``path``, for writers that need a name (exporters, quantisers): renamed over
    ``path`` when the block succeeds, deleted when it fails.

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces,
    else 0666 less the umask (``mkstemp``'s 0600 would make every model, report and dataset unreadable to
    another account, a web server or a container user)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quiet(tmp)
        raise GenreFusionError(f"{path}: cannot write ({err.strerror or err})") from err
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _create_temp(path: Path) -> str:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)  # an existing file keeps its mode, as with open()
    except OSError:
        mode = None
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as err:
            raise GenreFusionError(f"{path}: cannot write ({err.strerror or err})") from err
        try:
            if mode is not None:
                os.chmod(fd, mode)
        except OSError:
            pass  # not our file to chmod (another owner): it gets the umask's mode like a new file
        finally:
            os.close(fd)
        return tmp
    raise GenreFusionError(f"{path}: cannot create a temporary file beside it")


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named folder in ``parent`` with a plain ``mkdir``'s mode (0777 less the umask), for
    folders written whole and renamed into place (bundles); ``tempfile.mkdtemp`` would leave them 0700."""
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        d = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise GenreFusionError(f"{parent}: cannot create a temporary folder in it")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another account's process: alive, not ours to judge
    return True


def _recover_stale(path: Path) -> None:
    """Tidy what a killed ``atomic_dir`` writer (``kill -9``, power loss) left beside ``path``: its staging
    folder is deleted; its moved-aside original is put back when ``path`` is missing (killed between the two
    renames) and deleted otherwise. Folders of a writer still running are left alone."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return
    for leftover in sorted(path.parent.glob(f".{glob.escape(path.name)}.*-*")):
        kind, _, rest = leftover.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("staging", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not path.exists():
            os.replace(leftover, path)
            logging.getLogger("genrefusion").warning(
                "%s: restored from %s, left by a writer (pid %s) stopped between its two renames", path, leftover.name, pid)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write whole; on success it takes ``path``'s place (an existing folder
    is moved aside first, then deleted), on error it is deleted: readers see the old folder or the new one,
    never half of one."""
    path = Path(path)
    _recover_stale(path)
    # the writer's pid in both names lets a later writer tell a killed writer's leftovers from a live one's
    tmp = make_temp_dir(path.parent, f".{path.name}.staging-{os.getpid()}-")  # a mkdir's mode, not mkdtemp's 0700
    old = None
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync + rename over ``path``, on error delete it."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


class AtomicStream:
    """Base of writers that stream into one ``atomic_open`` file: ``_open`` it, ``close`` publishes it,
    ``abort`` (or an exception inside ``with``) discards it, so readers never see a half-written file."""

    def _open(self, path, mode: str = "w") -> IO:
        self._ctx = atomic_open(path, mode)
        self._fh = self._ctx.__enter__()
        return self._fh

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        exc = exc or RuntimeError("aborted")
        with contextlib.suppress(BaseException):  # the temp file is removed either way
            self._ctx.__exit__(type(exc), exc, None)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        else:
            self.abort(ev)
        return False


def _unlink_quiet(p: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)


def write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path, what: str = "file", error: type[GenreFusionError] = GenreFusionError):
    """Parse a JSON file; a missing or malformed file raises ``error`` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a hand-edited file may start with a BOM
            return json.load(fh)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: {what} is not valid JSON ({err})") from None


def resolve_inside(root: Path, rel: str) -> Path:
    """Resolve ``rel`` under ``root``; refuse absolute paths, ``..`` escapes and symlinks leaving root.

    Raises DatasetError with the reason; no file outside ``root`` is ever opened.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise DatasetError("empty path")
    if os.path.isabs(rel) or rel.startswith(("\\", "~")) or (len(rel) > 1 and rel[1] == ":"):
        raise DatasetError(f"absolute path refused: {rel!r}")
    if ".." in Path(rel.replace("\\", "/")).parts:
        raise DatasetError(f"path escapes the dataset folder: {rel!r}")
    root_real = Path(os.path.realpath(root))
    real = Path(os.path.realpath(root_real / rel))
    if root_real != real and root_real not in real.parents:
        raise DatasetError(f"path resolves outside the dataset folder (symlink?): {rel!r}")
    return real


def is_under(path: Path, maybe_parent: Path) -> bool:
    p, q = Path(os.path.realpath(path)), Path(os.path.realpath(maybe_parent))
    return p == q or q in p.parents
