"""Importers: MM-IMDb, CSV/TSV (messy, wide, explicit columns), JSON lines; reports and refusals."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from genrefusion.cli import main
from genrefusion.data import Dataset
from genrefusion.data.importers import parse_field_map, parse_imdb_id, read_csv, sniff_delimiter
from genrefusion.data.split import Split
from genrefusion.data.validate import validate_dataset
from genrefusion.errors import ConfigError


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _titles(out: Path) -> dict[str, dict]:
    return {d["id"]: d for d in map(json.loads, (out / "titles.jsonl").read_text(encoding="utf-8").splitlines())}


def _assert_clean_errors(err: str, n_lines: int | None = None):
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if n_lines is not None:
        assert len(lines) == n_lines, err


# -- CSV --------------------------------------------------------------------------------------
def test_import_messy_csv(messy_csv, tmp_path, capsys):
    src, expected = messy_csv()
    before = _tree_digest(src.parent)
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["import", "csv", str(src), "--out", str(out), "--report", str(report)]) == 0
    stdout = capsys.readouterr().out
    assert _tree_digest(src.parent) == before, "the source must not be modified"

    titles = _titles(out)
    assert {k: v["genres"] for k, v in titles.items()} == expected["genres"]
    assert {k for k, v in titles.items() if v["poster"]} == expected["poster"]
    # posters are re-encoded JPEGs inside the dataset; the RGBA PNG was flattened to RGB
    for tid in expected["poster"]:
        with Image.open(out / titles[tid]["poster"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
    assert titles["tt0000001"]["year"] == 1999 and titles["tt0000003"]["year"] is None
    assert titles["tt0000010"]["plot"] == "A plot about somebody doing something."  # control char removed

    rep = json.loads(report.read_text())
    assert {d["id"]: d["reason"] for d in rep["dropped"]} == expected["dropped"]
    assert {d["id"]: d["reason"] for d in rep["notes"]} == expected["no_poster"]
    assert rep["imported"] == len(expected["genres"])
    # one line per dropped item / dropped poster, naming the id and the reason
    for tid, reason in {**expected["dropped"], **expected["no_poster"]}.items():
        assert any(tid in ln and reason in ln for ln in stdout.splitlines()), (tid, reason)

    # the result is a valid canonical dataset: no problem at all
    ds = Dataset(out)
    vr = validate_dataset(ds)
    assert vr.problems == [] and vr.titles == len(expected["genres"])
    assert ds.meta["genres"] == sorted({g for gs in expected["genres"].values() for g in gs})


def test_import_tsv_guessed_columns_and_images_dir(tmp_path, make_jpeg):
    imgs = tmp_path / "pics"
    make_jpeg(imgs / "tt0110912.jpg")
    make_jpeg(imgs / "nested" / "b.jpg")
    src = tmp_path / "data" / "films.tsv"
    src.parent.mkdir()
    src.write_text("tconst\tprimaryTitle\tstartYear\tgenres\tdescription\timage_path\n"
                   "tt0110912\tPulp Fiction\t1994\tCrime,Drama\tTwo hitmen.\t\n"
                   "tt0000099\tOther\t\\N\tcomedy\tA man.\tnested/b.jpg\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out), "--images", str(imgs)]) == 0
    t = _titles(out)
    assert t["tt0110912"]["genres"] == ["Crime", "Drama"] and t["tt0110912"]["poster"]  # found by id in --images
    assert t["tt0110912"]["title"] == "Pulp Fiction" and t["tt0110912"]["year"] == 1994
    assert t["tt0000099"]["poster"] and t["tt0000099"]["year"] is None


def test_import_csv_explicit_columns_and_semicolon(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("key;label;text;cats\n1;A;Story one.;Horror|Mystery\n2;B;Story two.;Drama\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out), "--id-col", "key", "--title-col", "label",
                 "--plot-col", "text", "--genres-col", "cats"]) == 0
    t = _titles(out)
    assert t["1"]["genres"] == ["Horror", "Mystery"] and t["2"]["title"] == "B" and t["1"]["poster"] is None


def test_genres_outside_imdbs_list_are_reported_with_their_counts(tmp_path, capsys):
    src = tmp_path / "x.csv"
    src.write_text("id,plot,genres\n1,Story one.,Dramma|Horror\n2,Story two.,Space Opera|Dramma\n"
                   "3,Story three.,science fiction\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out), "--report", str(tmp_path / "r.json")]) == 0
    said = capsys.readouterr().out
    assert "'Dramma' (2 titles), 'Space Opera' (1 title)" in said and "--genres" in said
    assert "Sci-Fi" not in said.split("IMDb's list")[1]  # a known synonym is not reported
    assert json.loads((tmp_path / "r.json").read_text())["custom_genres"] == {"Dramma": 2, "Space Opera": 1}
    out2 = tmp_path / "out2"  # a vocabulary given: nothing kept outside it, so nothing to report
    assert main(["import", "csv", str(src), "--out", str(out2), "--genres", "Horror,Sci-Fi"]) == 0
    assert "IMDb's list" not in capsys.readouterr().out


def test_absolute_poster_paths_inside_the_images_folder_are_read(tmp_path, make_jpeg):
    pics = tmp_path / "pics" / "sub"
    pics.mkdir(parents=True)
    make_jpeg(pics / "a.jpg")
    src = tmp_path / "csvdir" / "x.csv"
    src.parent.mkdir()
    src.write_text(f"id,genres,poster,plot\n1,Drama,{pics / 'a.jpg'},\n2,Drama,/abc.jpg,\n3,Drama,,A plot.\n",
                   encoding="utf-8")
    out, rep = tmp_path / "out", tmp_path / "r.json"
    # the images folder defaults to the CSV's: the absolute path lies outside it, and the note says how to allow it
    assert main(["import", "csv", str(src), "--out", str(out), "--report", str(rep)]) == 0
    why = {d["id"]: d["message"] for d in json.loads(rep.read_text())["dropped"]}
    assert "outside the images folder" in why["1"] and "--images" in why["1"]
    assert "poster file not found: /abc.jpg" in why["2"]  # TMDB-style, read inside the folder: just missing
    assert main(["import", "csv", str(src), "--out", str(out), "--force", "--images", str(tmp_path / "pics")]) == 0
    assert _titles(out)["1"]["poster"] and "2" not in _titles(out)


def test_import_csv_wide_genre_columns(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "Images" / "tt0000101.jpg")
    make_jpeg(tmp_path / "Images" / "tt0000102.jpg")
    src = tmp_path / "train.csv"
    src.write_text("Id,Genre,Action,Comedy,Drama,Sci-Fi,N/A\n"
                   "tt0000101,\"['Action', 'Drama']\",1,0,1,0,0\n"
                   "tt0000102,\"['Comedy']\",0,1,0,0,0\n"
                   "tt0000103,\"[]\",0,0,0,0,1\n", encoding="utf-8")
    out = tmp_path / "out"
    # the 'Genre' column here is a list cell; --genre-columns wide forces the 0/1 columns instead
    assert main(["import", "csv", str(src), "--out", str(out), "--genre-columns", "wide",
                 "--images", str(tmp_path / "Images")]) == 0
    t = _titles(out)
    assert t["tt0000101"]["genres"] == ["Action", "Drama"] and t["tt0000102"]["genres"] == ["Comedy"]
    assert "tt0000103" not in t and all(v["poster"] for v in t.values())


def test_wide_columns_auto_detected(tmp_path):
    src = tmp_path / "w.csv"
    src.write_text("id,plot,action,COMEDY,drama,western\na,Plot a.,1,0,1,0\nb,Plot b.,0,0,0,1\n", encoding="utf-8")
    raws, info = read_csv(src)
    assert info["wide_genre_columns"] == ["Action", "Comedy", "Drama", "Western"]
    assert [r.genres for r in raws] == [["Action", "Drama"], ["Western"]]


def test_sniffer_not_fooled_by_genre_separators():
    text = "id,genres,plot\n1,Action|Comedy|Drama,a\n2,Horror|Thriller,b\n3,War|Drama|History,c\n"
    assert sniff_delimiter(text) == ","
    assert sniff_delimiter("id\tgenres\tplot\n1\tAction, Comedy\ta\n2\tDrama; War\tb\n") == "\t"


def test_import_genres_flag_restricts_vocabulary(messy_csv, tmp_path):
    src, _ = messy_csv()
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out), "--genres", "Drama,Action,sci fi"]) == 0
    ds = Dataset(out)
    assert ds.meta["genres"] == ["Drama", "Action", "Sci-Fi"]
    assert {g for t in ds.titles() for g in t.genres} <= {"Drama", "Action", "Sci-Fi"}
    assert "tt0000005" not in {t.id for t in ds.titles()}  # Horror/Thriller only: nothing left


def test_parse_imdb_id():
    assert parse_imdb_id("tt0111161") == "tt0111161"
    assert parse_imdb_id("111161", digits_ok=True) == "tt0111161"
    assert parse_imdb_id("862") is None  # a TMDB id is not an IMDb id
    assert parse_imdb_id("https://www.imdb.com/title/tt0111161/") == "tt0111161"


# -- MM-IMDb ----------------------------------------------------------------------------------
def _mmimdb_tree(root: Path, make_jpeg) -> Path:
    ds = root / "dataset"
    recs = {
        "0000001": {"title": "One", "year": 1990, "kind": "movie", "genres": ["Drama", "Romance"],
                    "plot": ["First summary.", "Second, longer summary."]},
        "0000002": {"title": "Two", "year": "2001", "kind": "tv series", "genres": ["Sci-Fi", "Action"],
                    "plot": ["Space."]},
        "0000003": {"title": "Three", "genres": ["Comedy"], "plot": []},      # no plot, no poster -> dropped
        "0000004": {"title": "Four", "genres": [], "plot": ["Nothing."]},    # no genre -> dropped
        "0000005": {"title": "Five", "genres": ["Film-Noir", "Crime"], "plot": ["Dark."]},  # poster missing
        "0000006": {"title": "Six", "genres": ["Horror"], "plot": ["Scary."]},
    }
    for k, d in recs.items():
        (ds / f"{k}.json").parent.mkdir(parents=True, exist_ok=True)
        (ds / f"{k}.json").write_text(json.dumps(d), encoding="utf-8")
    for k in ("0000001", "0000002", "0000004", "0000006"):
        make_jpeg(ds / f"{k}.jpeg")
    (ds / "0000007.json").write_text("{not json", encoding="utf-8")
    (root / "split.json").write_text(json.dumps({"train": ["0000001", "0000003", "0000005"], "dev": ["0000002"],
                                                 "test": ["0000004", "0000006", "0000007"]}), encoding="utf-8")
    return root


def test_import_mmimdb(tmp_path, make_jpeg, capsys):
    src = _mmimdb_tree(tmp_path / "mmimdb", make_jpeg)
    before = _tree_digest(src)
    out = tmp_path / "out"
    assert main(["import", "mmimdb", str(src), "--out", str(out), "--name", "mm"]) == 0
    stdout = capsys.readouterr().out
    assert _tree_digest(src) == before
    t = _titles(out)
    assert set(t) == {"tt0000001", "tt0000002", "tt0000005", "tt0000006"}
    assert t["tt0000001"]["plot"] == "First summary. Second, longer summary."
    assert t["tt0000002"]["kind"] == "tv" and t["tt0000002"]["year"] == 2001
    assert t["tt0000005"]["poster"] is None and t["tt0000005"]["genres"] == ["Film-Noir", "Crime"]
    for tid, reason in (("tt0000003", "no-input"), ("tt0000004", "no-genre"), ("tt0000007", "bad-record"),
                        ("tt0000005", "missing-poster")):
        assert any(tid in ln and reason in ln for ln in stdout.splitlines()), (tid, reason)
    split = Split.load(out / "split.json")
    assert split.parts == {"train": ["tt0000001", "tt0000005"], "dev": ["tt0000002"], "test": ["tt0000006"]}
    assert split.part_of("mm", "tt0000002") == "dev"
    assert validate_dataset(Dataset(out)).problems == []


def test_import_mmimdb_missing_folder(tmp_path, capsys):
    assert main(["import", "mmimdb", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    _assert_clean_errors(capsys.readouterr().err, 1)


# -- JSON lines -------------------------------------------------------------------------------
def test_import_jsonl_with_field_map(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "src" / "img" / "a.jpg")
    src = tmp_path / "src" / "movies.jsonl"
    lines = [
        {"movie_id": 862, "name": "Toy Story", "overview": "Toys.", "genre_names": ["Animation", "Comedy", "Family"],
         "media": {"img": "img/a.jpg"}, "release_date": "1995-10-30", "ext": {"imdb": "tt0114709"}},
        {"movie_id": 863, "name": "No genre", "overview": "x", "genre_names": []},
        "{broken",
        {"movie_id": 864, "overview": "Plot.", "genre_names": "science fiction|adventure"},
    ]
    src.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n", encoding="utf-8")
    out, report = tmp_path / "out", tmp_path / "rep.json"
    assert main(["import", "jsonl", str(src), "--out", str(out), "--report", str(report),
                 "--map", "id=movie_id,title=name,plot=overview,genres=genre_names,poster=media.img,"
                          "year=release_date,imdb_id=ext.imdb"]) == 0
    t = _titles(out)
    assert t["tt0114709"]["genres"] == ["Animation", "Comedy", "Family"] and t["tt0114709"]["poster"]
    assert t["tt0114709"]["year"] == 1995 and t["tt0114709"]["title"] == "Toy Story"
    assert t["864"]["genres"] == ["Sci-Fi", "Adventure"]
    rep = json.loads(report.read_text())
    assert {d["id"]: d["reason"] for d in rep["dropped"]} == {"863": "no-genre", "line 3": "bad-record"}


def test_field_map_errors():
    assert parse_field_map("id=a, plot=b.c") == {"id": "a", "plot": "b.c"}
    with pytest.raises(ConfigError):
        parse_field_map("colour=x")
    with pytest.raises(ConfigError):
        parse_field_map("id")


# -- refusals ---------------------------------------------------------------------------------
def test_refuses_existing_dataset_without_force(messy_csv, tmp_path, capsys):
    src, _ = messy_csv()
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out)]) == 0
    (out / "posters" / "stale.jpg").write_bytes(b"old")
    capsys.readouterr()
    assert main(["import", "csv", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "--force" in err
    assert main(["import", "csv", str(src), "--out", str(out), "--force"]) == 0
    assert not (out / "posters" / "stale.jpg").exists()  # leftovers of the overwritten dataset removed
    assert validate_dataset(Dataset(out)).problems == []


def test_refuses_shipped_and_overlapping_out(shipped, messy_csv, capsys):
    src, _ = messy_csv()
    assert main(["import", "csv", str(src), "--out", str(shipped / "imdb_top250" / "new")]) == 2
    _assert_clean_errors(capsys.readouterr().err, 1)
    assert not (shipped / "imdb_top250" / "new").exists()
    # writing the dataset into the folder that holds the source would modify the source
    assert main(["import", "csv", str(src), "--out", str(src.parent)]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "overlaps the source" in err


def test_bad_csv_inputs_one_line_errors(tmp_path, capsys):
    nogenre = tmp_path / "a.csv"
    nogenre.write_text("id,plot\n1,x\n", encoding="utf-8")
    latin = tmp_path / "b.csv"
    latin.write_bytes("id,plot,genres\n1,caf\xe9,Drama\n".encode("latin-1"))
    for f in (nogenre, latin, tmp_path / "missing.csv"):
        assert main(["import", "csv", str(f), "--out", str(tmp_path / f"out_{f.stem}")]) == 2
        err = capsys.readouterr().err
        _assert_clean_errors(err, 1)
        assert f.name in err
    # the encoding hint works
    assert main(["import", "csv", str(latin), "--out", str(tmp_path / "latin"), "--encoding", "latin-1"]) == 0
    assert _titles(tmp_path / "latin")["1"]["plot"] == "café"
