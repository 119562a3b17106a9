import pytest
from hypothesis import given, strategies as st

from genrefusion.data.records import GenreVocab
from genrefusion.genres import IMDB_GENRES, canonical_genre, parse_genre_cell


@pytest.mark.parametrize("cell,expected", [
    ("Action|Comedy", ["Action", "Comedy"]),
    ("Action, Comedy", ["Action", "Comedy"]),
    ('["Action", "Comedy"]', ["Action", "Comedy"]),
    ("['Action', 'Comedy']", ["Action", "Comedy"]),
    ("action;comedy", ["Action", "Comedy"]),
    ("  DRAMA |  crime ", ["Drama", "Crime"]),
    ("Science Fiction", ["Sci-Fi"]),
    ("Sci Fi, sci-fi", ["Sci-Fi"]),
    ("Film Noir", ["Film-Noir"]),
    ('[{"id": 18, "name": "Drama"}, {"id": 878, "name": "Science Fiction"}]', ["Drama", "Sci-Fi"]),
    ("", []), (None, []), ("nan", []),
    (["Horror", "thriller"], ["Horror", "Thriller"]),
    # placeholders are missing values, never genres "N" + "A"; a JSON null in a list is skipped
    ("N/A", []), ("n/a", []), ("NA", []), ("-", []), ("unknown", []), ("Drama, N/A", ["Drama"]),
    (["Crime", None], ["Crime"]), ([None, "N/A"], []), ("Action/Comedy", ["Action", "Comedy"]),
    # TMDB TV genres that merge two of IMDb's
    ("Sci-Fi & Fantasy, Action & Adventure", ["Sci-Fi", "Fantasy", "Action", "Adventure"]),
    ('[{"name": "War & Politics"}]', ["War"]),
])
def test_parse_genre_cell(cell, expected):
    assert parse_genre_cell(cell) == expected


def test_unknown_genre_is_kept_for_reporting():
    assert canonical_genre("cyberpunk") == "Cyberpunk"


_sep = st.sampled_from(["|", ",", ";", " | ", ", ", "/"])
_case = st.sampled_from([str, str.lower, str.upper])


@given(st.lists(st.sampled_from(IMDB_GENRES), min_size=0, max_size=6, unique=True), _sep, _case)
def test_parse_round_trip(genres, sep, case):
    cell = sep.join(case(g) for g in genres)
    assert parse_genre_cell(cell) == list(genres)


@given(st.lists(st.sampled_from(IMDB_GENRES), max_size=10))
def test_multi_hot_round_trip(genres):
    vocab = GenreVocab(IMDB_GENRES)
    y = vocab.encode(genres)
    assert sorted(vocab.decode(y)) == sorted(set(genres))
    assert y.sum() == len(set(genres))
