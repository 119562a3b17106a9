"""FeatureCache: append/lookup/read, persistence, torn-write detection and recovery, safety checks."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from genrefusion.encoders.cache import FeatureCache, content_key
from genrefusion.errors import GenreFusionError

DIM = 8


def rows(n, start=0):
    return (np.arange(start, start + n, dtype=np.float32)[:, None] + np.linspace(0, 0.5, DIM, dtype=np.float32))


def keys(n, start=0):
    return [content_key(f"plot {i}") for i in range(start, start + n)]


def test_append_lookup_read_and_reopen(tmp_path):
    c = FeatureCache(tmp_path, "enc-abc-p1", DIM)
    assert len(c) == 0 and c.lookup(keys(2)).tolist() == [-1, -1]
    c.append(keys(3), rows(3), ids=["t0", "t1", "t2"])
    c.append(keys(2, 3), rows(2, 3))
    assert len(c) == 5
    r = c.lookup([keys(5)[4], "nope", keys(5)[0]])
    assert r.tolist() == [4, -1, 0]
    assert np.array_equal(c.read(r[[0, 2]]), rows(5)[[4, 0]])
    vals, found = c.get(keys(6))
    assert found.tolist() == [True] * 5 + [False] and np.array_equal(vals[:5], rows(5)) and not vals[5].any()
    assert c.title_id(keys(1)[0]) == "t0"

    again = FeatureCache(tmp_path, "enc-abc-p1", DIM)
    assert len(again) == 5 and again.dropped == 0
    assert np.array_equal(again.read(again.lookup(keys(5))), rows(5))
    # a second handle sees rows appended after it opened once it appends itself (shared row numbering)
    c.append(keys(1, 10), rows(1, 10))
    again.append(keys(1, 20), rows(1, 20))
    assert again.lookup(keys(1, 20)).tolist() == [6]
    assert np.array_equal(again.read(again.lookup(keys(1, 10))), rows(1, 10))


def test_memmap_read_is_not_whole_matrix(tmp_path):
    c = FeatureCache(tmp_path, "ns", DIM)
    c.append(keys(100), rows(100))
    out = c.read([99, 3])
    assert out.shape == (2, DIM) and out.dtype == np.float32 and not isinstance(out, np.memmap)
    assert np.array_equal(out, rows(100)[[99, 3]])


def test_torn_and_damaged_rows_detected_and_only_those_recomputed(tmp_path):
    c = FeatureCache(tmp_path, "ns", DIM)
    c.append(keys(4), rows(4))
    c.close()
    data, index = c.data_path, c.index_path
    # bit rot in row 1, then a crash mid-append: half a row written and half an index line
    with open(data, "r+b") as fh:
        fh.seek(1 * DIM * 4 + 5)
        fh.write(b"\xff")
    with open(data, "ab") as fh:
        fh.write(rows(1, 50).tobytes()[:13])
    with open(index, "ab") as fh:
        fh.write(json.dumps({"k": keys(1, 4)[0], "r": 4, "id": None, "c": 0})[:20].encode())

    d = FeatureCache(tmp_path, "ns", DIM)
    assert d.dropped == 1
    assert d.lookup(keys(5)).tolist() == [0, -1, 2, 3, -1]
    assert np.array_equal(d.read([0, 2, 3]), rows(4)[[0, 2, 3]])
    # the caller recomputes what lookup reported missing; appending repairs the torn tails first
    d.append([keys(4)[1], keys(1, 4)[0]], rows(2, 100))
    e = FeatureCache(tmp_path, "ns", DIM)
    assert e.dropped == 1  # only the old damaged entry remains unusable; nothing new is torn
    got = e.lookup(keys(5))
    assert got.tolist() == [0, 4, 2, 3, 5]
    assert np.array_equal(e.read(got), np.stack([rows(4)[0], rows(2, 100)[0], rows(4)[2], rows(4)[3],
                                                 rows(2, 100)[1]]))
    assert data.stat().st_size == 6 * DIM * 4


def test_index_pointing_past_data_is_ignored(tmp_path):
    c = FeatureCache(tmp_path, "ns", DIM)
    c.append(keys(2), rows(2))
    with open(c.data_path, "r+b") as fh:  # data lost its last row (e.g. reordered writes on power loss)
        fh.truncate(DIM * 4)
    d = FeatureCache(tmp_path, "ns", DIM)
    assert d.lookup(keys(2)).tolist() == [0, -1] and d.dropped == 1


def test_dim_mismatch_and_bad_namespace(tmp_path):
    FeatureCache(tmp_path, "ns", DIM).append(keys(1), rows(1))
    with pytest.raises(GenreFusionError, match="holds 8-d rows, expected 16-d"):
        FeatureCache(tmp_path, "ns", 16)
    with pytest.raises(GenreFusionError, match="invalid namespace"):
        FeatureCache(tmp_path, "../escape", DIM)
    c = FeatureCache(tmp_path, "ns", DIM)
    with pytest.raises(GenreFusionError, match=r"shape \(1, 3\)"):
        c.append(keys(1), np.zeros((1, 3), np.float32))
    with pytest.raises(GenreFusionError, match="non-finite"):
        c.append(keys(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(GenreFusionError, match="missing row"):
        c.read([-1])


def test_refuses_to_live_in_shipped_data(shipped):
    with pytest.raises(GenreFusionError, match="refusing to write the feature cache"):
        FeatureCache(shipped / "cornell_tmdb", "ns", DIM)


def _writer(root, start):
    c = FeatureCache(root, "ns", DIM)
    for j in range(10):
        c.append(keys(2, start + 2 * j), rows(2, start + 2 * j))


def test_concurrent_writers_do_not_interleave(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(tmp_path, s)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = FeatureCache(tmp_path, "ns", DIM)
    assert len(c) == 40 and c.dropped == 0
    for s in (0, 1000):
        assert np.array_equal(c.read(c.lookup(keys(20, s))), rows(20, s))
