"""Property-based tests (hypothesis): the genre-cell parser, the multi-hot encoding round trip, and the dataset
writer -> reader round trip. Each test records how many examples it tried."""
from __future__ import annotations

import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from genrefusion.data.dataset import Dataset, DatasetWriter, poster_name
from genrefusion.data.records import GenreVocab, Title
from genrefusion.data.validate import validate_dataset
from genrefusion.errors import DatasetError
from genrefusion.genres import IMDB_GENRES, _SYNONYMS, canonical_genre, parse_genre_cell

# no example database (it would write .hypothesis/ into the repo); bounded, CI-friendly runs
SETTINGS = dict(database=None, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])

genre_lists = st.lists(st.sampled_from(IMDB_GENRES), min_size=0, max_size=6, unique=True)
spaces = st.text(alphabet=" \t", max_size=2)


def _recase(s: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if f else c for c, f in zip(s, flips + [False] * len(s)))


class Counted:
    """Counts the examples a @given test really ran (reported in the suite summary)."""

    def __init__(self):
        self.n = 0


@pytest.fixture
def seen(inputs):
    c = Counted()
    yield c
    inputs(c.n, "hypothesis examples")


# -- genre cells ------------------------------------------------------------------------------------------------
@settings(max_examples=300, **SETTINGS)
@given(genres=genre_lists, sep=st.sampled_from(["|", ",", ";", "/"]), pad=spaces, data=st.data())
def test_separated_cells_parse_back(seen, genres, sep, pad, data):
    seen.n += 1
    parts = [pad + _recase(g, data.draw(st.lists(st.booleans(), max_size=len(g)))) + pad for g in genres]
    assert parse_genre_cell((pad + sep + pad).join(parts)) == genres


@settings(max_examples=200, **SETTINGS)
@given(genres=genre_lists, form=st.sampled_from(["json", "python", "tmdb", "list", "tuple"]))
def test_structured_cells_parse_back(seen, genres, form):
    seen.n += 1
    cell = {"json": lambda: json.dumps(genres), "python": lambda: repr(genres),
            "tmdb": lambda: json.dumps([{"id": i, "name": g} for i, g in enumerate(genres)]),
            "list": lambda: list(genres), "tuple": lambda: tuple(genres)}[form]()
    assert parse_genre_cell(cell) == genres


@settings(max_examples=200, **SETTINGS)
@given(genres=st.lists(st.sampled_from(IMDB_GENRES), min_size=1, max_size=8))
def test_duplicates_dropped_first_kept(seen, genres):
    seen.n += 1
    assert parse_genre_cell("|".join(genres)) == list(dict.fromkeys(genres))


@settings(max_examples=100, **SETTINGS)
@given(name=st.sampled_from(sorted(k for k, v in _SYNONYMS.items() if v)))
def test_synonyms_map_to_imdb_spelling(seen, name):
    seen.n += 1
    assert canonical_genre(name) in IMDB_GENRES and canonical_genre(name.upper()) == canonical_genre(name)


@settings(max_examples=500, **SETTINGS)
@given(cell=st.one_of(st.text(max_size=60), st.text(alphabet="[]{}()'\",|;/ :abcAB-", max_size=40),
                      st.lists(st.one_of(st.text(max_size=10), st.none(), st.integers()), max_size=5)))
def test_any_cell_is_safe_and_idempotent(seen, cell):
    seen.n += 1
    out = parse_genre_cell(cell)  # never raises, whatever the text
    assert isinstance(out, list) and len(out) == len(set(out))
    assert all(isinstance(g, str) and g and g == g.strip() for g in out)
    assert [canonical_genre(g) for g in out] == out  # names are already canonical (found: 'A) "' -> 'A)')
    assert parse_genre_cell(out) == out  # parsing its own output changes nothing


# -- multi-hot ----------------------------------------------------------------------------------------------------
names = st.text(alphabet=string.ascii_letters + "- ", min_size=1, max_size=12).filter(str.strip)


@settings(max_examples=300, **SETTINGS)
@given(vocab=st.lists(names, min_size=1, max_size=20, unique=True), data=st.data())
def test_multi_hot_round_trip(seen, vocab, data):
    seen.n += 1
    v = GenreVocab(vocab)
    assert v.genres == sorted(vocab) and len(v) == len(vocab)
    subset = data.draw(st.lists(st.sampled_from(vocab), unique=True))
    y = v.encode(subset)
    assert y.dtype == np.float32 and y.shape == (len(vocab),) and y.sum() == len(subset)
    assert v.decode(y) == sorted(subset)  # vocabulary order
    assert np.array_equal(v.encode(v.decode(y)), y)
    # any 0/1 vector decodes and re-encodes to itself
    bits = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(vocab), max_size=len(vocab))), np.float32)
    assert np.array_equal(v.encode(v.decode(bits)), bits)
    # per-genre thresholds: a score exactly at its threshold counts
    thr = np.asarray(data.draw(st.lists(st.floats(0.01, 0.99), min_size=len(vocab), max_size=len(vocab))))
    assert v.decode(thr, thr) == v.genres and v.decode(thr - 0.001, thr) == []


@settings(max_examples=200, **SETTINGS)
@given(vocab=st.lists(names, min_size=1, max_size=10, unique=True), extra=names)
def test_unknown_genres_ignored_or_refused(seen, vocab, extra):
    seen.n += 1
    assume(extra not in vocab)
    v = GenreVocab(vocab)
    assert np.array_equal(v.encode([vocab[0], extra]), v.encode([vocab[0]]))
    with pytest.raises(DatasetError, match="unknown genre"):
        v.encode([extra], strict=True)
    assert v.mask(None).sum() == len(vocab) and np.array_equal(v.mask([vocab[0]]), v.encode([vocab[0]]))


# -- dataset writer -> reader --------------------------------------------------------------------------------------
text = st.text(max_size=80)  # any Unicode except lone surrogates: quotes, newlines, U+2028, emoji, NULs...
ids = st.text(alphabet=string.ascii_letters + string.digits + "-_./ :\\é😀", min_size=1, max_size=12).filter(str.strip)
titles = st.builds(
    Title, id=ids, genres=st.lists(st.sampled_from(IMDB_GENRES), max_size=4, unique=True),
    plot=st.one_of(st.none(), text), title=st.one_of(st.none(), text), imdb_id=st.one_of(st.none(), text),
    year=st.one_of(st.none(), st.integers(1870, 2100)), kind=st.sampled_from([None, "movie", "tv"]),
    source=st.one_of(st.none(), text))


@settings(max_examples=60, **SETTINGS)
@given(ts=st.lists(titles, max_size=8, unique_by=lambda t: t.id), with_posters=st.booleans())
def test_writer_reader_round_trip(seen, tmp_path_factory, ts, with_posters):
    from PIL import Image

    seen.n += 1
    root = tmp_path_factory.mktemp("rt")
    colours = {}
    with DatasetWriter(root, name="rt", genres=list(IMDB_GENRES), overwrite=True) as w:
        for k, t in enumerate(ts):
            poster = None
            if with_posters:
                colours[t.id] = (k * 30 % 256, 255 - k * 30 % 256, 128)
                poster = Image.new("RGB", (8, 8), colours[t.id])
            w.add(t, poster=poster)
    ds = Dataset(root)
    got = ds.titles()
    assert ds.problems == [] and len(got) == len(ts)
    for a, b in zip(ts, got):
        want = a.replace(poster=poster_name(a.id) if with_posters else None)
        assert b == want
    if with_posters:  # every title gets its own poster file back (ids that sanitise alike must not collide)
        for t in got:
            px = ds.load_poster(t).getpixel((4, 4))
            assert max(abs(p - q) for p, q in zip(px, colours[t.id])) <= 8, (t.id, px, colours[t.id])
    # the validator reads the same records (it parses lines itself)
    rep = validate_dataset(ds, decode=False)
    assert rep.titles == len(ts) and not [p for p in rep.problems if p.kind == "bad-line"]


@settings(max_examples=200, **SETTINGS)
@given(a=ids, b=ids)
@example(a="0", b="0.").via("found by the round trip")
@example(a="a/b", b="a_b").via("sanitised alike")
def test_poster_names_are_distinct_and_inside(seen, a, b):
    seen.n += 1
    assume(a != b)
    pa, pb = poster_name(a), poster_name(b)
    assert pa != pb
    assert pa.startswith("posters/") and "/" not in pa[len("posters/"):] and ".." not in pa
