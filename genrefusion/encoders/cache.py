"""On-disk feature cache: frozen-backbone features computed once per (backbone weights, content).

Layout of one namespace folder (``<root>/<namespace>/``)::

    meta.json    {"dim": D, "dtype": "float32", "format": 1}
    data.f32     raw float32 rows, appended; row r lives at byte r*D*4
    index.log    append-only JSON lines {"k": key, "r": row, "id": title id, "c": crc32 of the row bytes}
    lock         flock()ed by the single writer

Appends write + fsync the rows first, then their index lines, so a crash leaves at worst rows nobody points to or a
torn last index line. Every open re-checks index lines against the data (row present, checksum equal) by streaming
the data file in chunks; an entry that fails is simply forgotten, so only the damaged rows are recomputed and
re-appended. Reads go through ``np.memmap``: the matrix is never loaded whole.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import GenreFusionError
from ..io import write_json

FORMAT = 1
_CHUNK_ROWS = 2048


def content_key(data: bytes | str) -> str:
    """The cache key of a poster (its file bytes) or a plot (its text): sha1 hex."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha1(data).hexdigest()


def _safe_namespace(ns: str) -> str:
    if not ns or any(c in ns for c in "/\\\0") or ns in (".", ".."):
        raise GenreFusionError(f"feature cache: invalid namespace {ns!r}")
    return ns


class FeatureCache:
    """Memory-mapped float32 rows keyed by content hash. Safe against torn writes; one writer at a time."""

    def __init__(self, root: str | os.PathLike, namespace: str, dim: int):
        from ..paths import check_writable_target

        self.root = Path(root)
        self.namespace = _safe_namespace(namespace)
        self.dim = int(dim)
        self.dir = self.root / self.namespace
        check_writable_target(self.dir, "the feature cache")
        self._row_bytes = self.dim * 4
        self.data_path = self.dir / "data.f32"
        self.index_path = self.dir / "index.log"
        self.lock_path = self.dir / "lock"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GenreFusionError(f"{self.dir}: cannot create the feature cache ({err.strerror})") from None
        self._index: dict[str, int] = {}   # key -> row
        self._ids: dict[str, str] = {}     # key -> title id (diagnostics only)
        self._index_pos = 0                # byte offset of the index log already parsed
        self._mm: np.memmap | None = None
        self.dropped = 0                   # entries forgotten at open (torn / checksum mismatch)
        with self._locked():
            self._check_meta()
            self._repair_tails()
            self.dropped = self._load_index(verify=True)

    # -- public API --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """Row index of each key, or -1 when absent (int64 array)."""
        return np.fromiter((self._index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def read(self, rows: Iterable[int]) -> np.ndarray:
        """float32 [len(rows), dim] copy of the given rows (reads only those pages)."""
        rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, self.dim), np.float32)
        if rows.min() < 0:
            raise GenreFusionError(f"{self.dir}: read of a missing row (-1); call lookup() first")
        mm = self._map(int(rows.max()) + 1)
        return np.array(mm[rows], dtype=np.float32)

    def get(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(values [N,dim] with zeros where absent, found mask [N])."""
        rows = self.lookup(keys)
        found = rows >= 0
        out = np.zeros((len(keys), self.dim), np.float32)
        if found.any():
            out[found] = self.read(rows[found])
        return out, found

    def append(self, keys: Sequence[str], feats: np.ndarray, ids: Sequence[str | None] | None = None) -> None:
        """Append rows for ``keys`` (durably: rows fsynced before the index lines that point at them)."""
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim or feats.shape[0] != len(keys):
            raise GenreFusionError(
                f"{self.dir}: append of shape {feats.shape} for {len(keys)} keys, expected [N,{self.dim}]")
        if ids is not None and len(ids) != len(keys):
            raise GenreFusionError(f"{self.dir}: append got {len(ids)} ids for {len(keys)} keys")
        if not len(keys):
            return
        if not np.isfinite(feats).all():
            raise GenreFusionError(f"{self.dir}: refusing to cache non-finite features")
        try:
            with self._locked():
                self._repair_tails()
                self._load_index(verify=False)  # pick up rows other writers appended since we opened
                with open(self.data_path, "ab") as fh:
                    start = fh.seek(0, os.SEEK_END) // self._row_bytes
                    fh.write(feats.tobytes())
                    fh.flush()
                    os.fsync(fh.fileno())
                lines = []
                for i, k in enumerate(keys):
                    tid = None if ids is None else ids[i]
                    crc = zlib.crc32(feats[i].tobytes())
                    lines.append(json.dumps({"k": k, "r": start + i, "id": tid, "c": crc}) + "\n")
                with open(self.index_path, "ab") as fh:
                    fh.write("".join(lines).encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                self._load_index(verify=False)
        except OSError as err:
            raise GenreFusionError(f"{self.dir}: cannot write the feature cache ({err.strerror or err})") from None

    def title_id(self, key: str) -> str | None:
        return self._ids.get(key)

    def close(self) -> None:
        self._mm = None

    # -- internals ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise GenreFusionError(f"{self.dir}: cannot lock the feature cache ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _check_meta(self) -> None:
        meta_path = self.dir / "meta.json"
        want = {"dim": self.dim, "dtype": "float32", "format": FORMAT}
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
            except (OSError, ValueError):
                meta = None
            if meta != want:
                if meta is not None and meta.get("dim") != self.dim:
                    raise GenreFusionError(
                        f"{self.dir}: feature cache holds {meta.get('dim')}-d rows, expected {self.dim}-d; "
                        "delete the folder or use another namespace")
                # unreadable/foreign meta: the rows cannot be trusted, start afresh
                self._reset()
        elif self.data_path.exists() or self.index_path.exists():
            self._reset()  # rows without meta: half-created by a crashed first run
        if not meta_path.exists():
            write_json(meta_path, want)

    def _reset(self) -> None:
        for p in (self.data_path, self.index_path, self.dir / "meta.json"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _repair_tails(self) -> None:
        """Under the lock: cut a partial trailing row / index line so later appends start aligned."""
        if self.data_path.exists():
            size = self.data_path.stat().st_size
            if size % self._row_bytes:
                os.truncate(self.data_path, size - size % self._row_bytes)
        if self.index_path.exists():
            with open(self.index_path, "rb+") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size:
                    back = min(size, 1 << 16)
                    fh.seek(size - back)
                    tail = fh.read(back)
                    if not tail.endswith(b"\n"):
                        cut = tail.rfind(b"\n")
                        new_size = size - back + cut + 1 if cut >= 0 else (0 if back == size else None)
                        if new_size is None:  # a >64 KiB torn line: find its start by scanning
                            fh.seek(0)
                            whole = fh.read()
                            new_size = whole.rfind(b"\n") + 1
                        fh.truncate(new_size)
                        self._index_pos = min(self._index_pos, new_size)

    def _n_rows(self) -> int:
        try:
            return self.data_path.stat().st_size // self._row_bytes
        except FileNotFoundError:
            return 0

    def _map(self, need_rows: int) -> np.memmap:
        if self._mm is None or self._mm.shape[0] < need_rows:
            n = self._n_rows()
            if n < need_rows:
                raise GenreFusionError(f"{self.dir}: feature cache data file is shorter than its index")
            self._mm = np.memmap(self.data_path, dtype=np.float32, mode="r", shape=(n, self.dim))
        return self._mm

    def _load_index(self, verify: bool) -> int:
        """Parse index lines from ``_index_pos`` on; with ``verify`` check each row's checksum. Returns #dropped."""
        if not self.index_path.exists():
            return 0
        n_rows = self._n_rows()
        entries: list[tuple[str, int, str | None, int]] = []
        dropped = 0
        with open(self.index_path, "rb") as fh:
            fh.seek(self._index_pos)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn last line (a writer may also be mid-append): not ours to count yet
                self._index_pos += len(raw)
                try:
                    e = json.loads(raw)
                    k, r, c = e["k"], int(e["r"]), int(e["c"])
                    if not isinstance(k, str):
                        raise ValueError
                except (ValueError, KeyError, TypeError):
                    dropped += 1
                    continue
                if not 0 <= r < n_rows:
                    dropped += 1
                    continue
                entries.append((k, r, e.get("id"), c))
        if verify and entries:
            ok = self._verify(entries, n_rows)
            dropped += len(entries) - int(ok.sum())
            entries = [e for e, good in zip(entries, ok) if good]
        for k, r, tid, _ in entries:
            self._index[k] = r
            if tid is not None:
                self._ids[k] = str(tid)
        return dropped

    def _verify(self, entries, n_rows: int) -> np.ndarray:
        """Checksum every referenced row, streaming the data file in chunks (memory stays flat)."""
        mm = np.memmap(self.data_path, dtype=np.float32, mode="r", shape=(n_rows, self.dim))
        rows = np.array([e[1] for e in entries], dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ok = np.zeros(len(entries), dtype=bool)
        for s in range(0, len(order), _CHUNK_ROWS):
            idx = order[s:s + _CHUNK_ROWS]
            block = np.asarray(mm[rows[idx]])
            for j, i in enumerate(idx):
                ok[i] = zlib.crc32(block[j].tobytes()) == entries[i][3]
        del mm
        return ok
