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
    capsys.readouterr()
    assert main(["import", "csv", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "--force" in err
    assert main(["import", "csv", str(src), "--out", str(out), "--force"]) == 0
    assert validate_dataset(Dataset(out)).problems == []


def test_report_naming_a_folder_is_refused_before_anything_is_written(messy_csv, tmp_path, capsys):
    src, _ = messy_csv()
    out = tmp_path / "out"
    assert main(["import", "csv", str(src), "--out", str(out), "--report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert f"--report {tmp_path}: is a folder" in err
    assert not out.exists()  # written first, it made the corrected rerun fail as "already holds a dataset"


def test_force_deletes_only_the_posters_of_the_overwritten_dataset(tmp_path, make_jpeg):
    out = tmp_path / "myproject"
    make_jpeg(out / "posters" / "my_own_poster.jpg")  # a folder that was never a dataset
    (out / "posters" / "notes.txt").write_text("notes")
    make_jpeg(tmp_path / "src" / "a.jpg")
    src = tmp_path / "src" / "t.jsonl"
    src.write_text(json.dumps({"id": "a1", "plot": "A plot.", "genres": ["Drama"], "poster": "a.jpg"}) + "\n")
    assert main(["import", "jsonl", str(src), "--out", str(out), "--force"]) == 0
    assert {p.name for p in (out / "posters").iterdir()} == {"my_own_poster.jpg", "notes.txt", "a1.jpg"}
    src.write_text(json.dumps({"id": "b1", "plot": "A plot.", "genres": ["Drama"]}) + "\n")
    assert main(["import", "jsonl", str(src), "--out", str(out), "--force"]) == 0
    # the overwritten dataset's poster goes; the files it did not name stay
    assert {p.name for p in (out / "posters").iterdir()} == {"my_own_poster.jpg", "notes.txt"}


def test_an_interrupted_force_keeps_the_old_dataset_whole(tmp_path, make_jpeg, monkeypatch):
    from genrefusion.data import importers

    src = tmp_path / "src"
    lines = [{"id": f"t{i}", "plot": "A plot.", "genres": ["Drama"], "poster": f"t{i}.jpg"} for i in range(3)]
    for i in range(3):
        make_jpeg(src / f"t{i}.jpg", color=(200, 30, 30))
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "ds"
    assert main(["import", "jsonl", str(src / "a.jsonl"), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "split.json").write_text(json.dumps({"train": ["t0", "t1"], "test": ["t2"]}))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for i in range(3):  # the same ids, other posters
        make_jpeg(src / f"t{i}.jpg", color=(30, 30, 200))

    def stopped(*a, **k):
        raise KeyboardInterrupt

    # stopped after every new poster is converted: the old dataset is as it was, posters included
    monkeypatch.setattr(importers, "_write_titles", stopped)
    assert main(["import", "jsonl", str(src / "a.jsonl"), "--out", str(out), "--force"]) == 130
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    # finished, with one title fewer: its poster and the old split go, the user's file stays
    (src / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines[:2]))
    assert main(["import", "jsonl", str(src / "a.jsonl"), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in (out / "posters").iterdir()) == ["t0.jpg", "t1.jpg"]
    assert (out / "notes.txt").read_text() == "mine" and not (out / "split.json").exists()
    assert (out / "posters" / "t0.jpg").read_bytes() != before[Path("posters/t0.jpg")]


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



def test_utf16_csv_is_read_and_a_bad_byte_is_located_by_line(tmp_path, capsys):
    rows = "id\tplot\tgenres\n1\tcafé au lait\tDrama\n"
    for enc in ("utf-16", "utf-16-be"):  # Excel's "Unicode text" export: UTF-16 with a BOM
        src = tmp_path / f"{enc}.tsv"
        src.write_bytes(("\ufeff" + rows).encode(enc))
        assert main(["import", "csv", str(src), "--out", str(tmp_path / enc)]) == 0
        assert _titles(tmp_path / enc)["1"]["plot"] == "café au lait"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,plot,genres\n1,plain,Drama\n2,caf\xe9,Drama\n".encode("latin-1"))
    capsys.readouterr()
    assert main(["import", "csv", str(latin), "--out", str(tmp_path / "latin")]) == 2
    assert "latin.csv: line 3: not valid utf-8 (byte 34)" in capsys.readouterr().err


def test_an_unbalanced_quote_is_refused_not_read_as_one_title(tmp_path, capsys):
    src = tmp_path / "q.csv"
    for tail, end in (('q3,Horror,"fog"\nq4,Drama,fine\n', 4), ("q3,Horror,fog\n", 4)):  # closed later / never
        src.write_text('id,genres,plot\nq1,Drama,"A plot with no closing quote\nq2,Comedy,ok\n' + tail, encoding="utf-8")
        assert main(["import", "csv", str(src), "--out", str(tmp_path / "out")]) == 2  # was: rc 0, q2 and q3 lost
        err = capsys.readouterr().err
        _assert_clean_errors(err, 1)
        assert "q.csv: line 2: unbalanced quote" in err and f"lines 2-{end} would be read as one title" in err
        assert not (tmp_path / "out").exists()
    src.write_text('id,genres,plot\nq1,Drama,"a plot\non two lines"\nq2,Comedy,"and\nthis, too"\n', encoding="utf-8")
    assert main(["import", "csv", str(src), "--out", str(tmp_path / "ok")]) == 0  # closed quotes spanning lines
    assert _titles(tmp_path / "ok")["q2"]["plot"] == "and\nthis, too"


def test_a_duplicate_id_names_the_row_it_was_imported_from(tmp_path, capsys):
    src = tmp_path / "d.csv"
    src.write_text("id,genres,plot\nm1,Drama,first\nm2,Drama,other\nm1,Comedy,second\n", encoding="utf-8")
    assert main(["import", "csv", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "dropped id m1: duplicate-id: row 4: id already imported from row 2" in capsys.readouterr().out
    assert _titles(tmp_path / "out")["m1"]["plot"] == "first"


def test_the_import_report_tells_a_numeric_id_from_a_count(tmp_path, capsys):
    # was "dropped 1: duplicate-id: ..." under "dropped 2 (...)": the id read as a count
    src = tmp_path / "n.csv"
    src.write_text("id,genres,plot\n1,Drama,first\n1,Comedy,second\n,Drama,no id\n2,Drama,x,extra\n",
                   encoding="utf-8")
    assert main(["import", "csv", str(src), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "dropped id 1: duplicate-id: row 3: id already imported from row 2" in out
    assert any(ln.startswith("dropped row 5: bad-record: ") for ln in out)  # no id: its row names it


def test_a_sep_of_several_characters_is_one_line_error(tmp_path, capsys):
    src = tmp_path / "a.csv"
    src.write_text("id||plot||genres\n1||x||Drama\n", encoding="utf-8")
    assert main(["import", "csv", str(src), "--out", str(tmp_path / "out"), "--sep", "||"]) == 2  # was a TypeError
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "--sep: must be one character (or '\\t' for a tab), got '||'" in err


# -- messy real-world sources -------------------------------------------------------------------
def _jsonl_file(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_mmimdb_split_ids_are_normalised_as_the_record_ids(tmp_path, capsys):
    src = tmp_path / "mm"
    for k in ("0000001", "0000002", "0000003", "0000004"):
        (src / "dataset").mkdir(parents=True, exist_ok=True)
        (src / "dataset" / f"{k}.json").write_text(json.dumps({"genres": ["Drama"], "plot": [f"Plot {k}."]}))
    # an integer, a tt-prefixed id, an id of no record, and one id listed in two parts; 0000004 in no part
    (src / "split.json").write_text(json.dumps({"train": [1, "tt0000002", "0000099"], "dev": ["0000003"],
                                                "test": ["0000001"]}))
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["import", "mmimdb", str(src), "--out", str(out), "--name", "mm", "--report", str(report)]) == 0
    said = capsys.readouterr().out
    assert "1 split ids match no record; 1 imported titles are in no part" in said
    assert "tt0000001" in said and "kept in train" in said
    split = Split.load(out / "split.json")
    assert split.parts == {"train": ["tt0000001", "tt0000002"], "dev": ["tt0000003"], "test": []}
    rep = json.loads(report.read_text())
    assert (rep["split_unmatched"], rep["split_unassigned"]) == (1, 1)
    assert {d["id"]: d["reason"] for d in rep["notes"]}["tt0000001"] == "split-duplicate"
    assert main(["split", str(out)]) == 0  # the kept split is one genrefusion accepts


def test_sigterm_ends_an_import_like_ctrl_c(tmp_path, make_jpeg):
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "mm" / "dataset"
    for i in range(80):  # enough posters for the process pool
        (src / f"{i:07d}.json").parent.mkdir(parents=True, exist_ok=True)
        (src / f"{i:07d}.json").write_text(json.dumps({"genres": ["Drama"], "plot": ["A plot."]}))
        make_jpeg(src / f"{i:07d}.jpeg", size=(8, 8))
    out = tmp_path / "out"
    script = tmp_path / "slow_import.py"  # each chunk of posters takes a while, so the signal comes mid-import
    script.write_text(
        "import sys, time\n"
        "import genrefusion.data.importers as imp\n"
        "fast = imp._convert_chunk\n"
        "def slow(items):\n    time.sleep(0.5)\n    return fast(items)\n"
        "slow.__module__, slow.__qualname__ = imp.__name__, '_convert_chunk'\n"
        "imp._convert_chunk = slow\n"
        "from genrefusion.cli import main\n"
        f"sys.exit(main(['import', 'mmimdb', {str(src.parent)!r}, '--out', {str(out)!r}, '--workers', '2']))\n")
    log = tmp_path / "stderr.txt"  # not a pipe: orphan workers would hold it open
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    children: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any((out / "posters").glob("*.jpg")) and time.monotonic() < deadline:
            time.sleep(0.05)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "the import should be running its pool"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(0.5)
        orphans = [c for c in children if Path(f"/proc/{c}").exists()]
    finally:  # end whatever this test started and is still running
        proc.kill()
        for c in children:
            if Path(f"/proc/{c}").exists():
                os.kill(int(c), signal.SIGKILL)
    err = log.read_text()
    assert proc.returncode == 143 and "interrupted" in err and "Traceback" not in err, err
    assert orphans == []  # the pool's workers ended with the import
    assert not out.exists()  # no half dataset: the posters converted so far are removed too


def test_placeholders_and_nulls_are_missing_values(tmp_path, capsys):
    src = _jsonl_file(tmp_path / "omdb.jsonl", [
        {"Title": "Obscure", "Genre": "N/A", "Plot": "N/A", "Poster": "N/A", "imdbID": "tt0222222"},
        {"Title": "Unknown", "Genre": "Comedy, N/A", "Plot": "n/a", "Poster": "N/A", "imdbID": "tt0333333"},
        {"Title": "-", "Genre": ["Crime", None], "Plot": "A detective hunts a killer.", "Poster": "-",
         "imdbID": "tt0444444"},
    ])
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["import", "jsonl", str(src), "--out", str(out), "--report", str(report)]) == 0
    assert "N/A" not in capsys.readouterr().out
    t = _titles(out)
    assert list(t) == ["tt0444444"] and t["tt0444444"]["genres"] == ["Crime"] and t["tt0444444"]["poster"] is None
    rep = json.loads(report.read_text())
    assert {d["id"]: d["reason"] for d in rep["dropped"]} == {"tt0222222": "no-genre", "tt0333333": "no-input"}
    assert rep["notes"] == [] and rep["genres"] == ["Crime"]


def test_jsonl_map_key_found_in_no_record_is_refused(tmp_path, capsys):
    src = _jsonl_file(tmp_path / "t.jsonl", [{"id": "m1", "overview": "A heist.", "genres": ["Crime"]}])
    out = tmp_path / "out"
    assert main(["import", "jsonl", str(src), "--out", str(out), "--map", "plot=overveiw"]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "'overveiw' found in no record" in err and "genres, id, overview" in err and not out.exists()
    # a key present but null in some records is fine
    _jsonl_file(src, [{"id": "m1", "overview": None, "genres": ["Crime"], "syn": "A heist."}])
    assert main(["import", "jsonl", str(src), "--out", str(out), "--map", "plot=overview"]) == 1  # nothing usable


def test_utf8_bom_keeps_the_first_record(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": "b1", "plot": "First.", "genres": ["Drama"]}\r\n'
                    b'{"id": "b2", "plot": "Second.", "genres": ["Drama"]}\r\n')
    assert main(["import", "jsonl", str(src), "--out", str(tmp_path / "o1")]) == 0
    assert set(_titles(tmp_path / "o1")) == {"b1", "b2"}
    mm = tmp_path / "mm" / "dataset"
    mm.mkdir(parents=True)
    (mm / "0000001.json").write_bytes(b'\xef\xbb\xbf' + json.dumps({"genres": ["Drama"], "plot": ["P."]}).encode())
    assert main(["import", "mmimdb", str(mm.parent), "--out", str(tmp_path / "o2")]) == 0
    assert set(_titles(tmp_path / "o2")) == {"tt0000001"}


def test_genres_typo_is_refused_with_the_closest_name(tmp_path, capsys):
    src = _jsonl_file(tmp_path / "t.jsonl", [{"id": "a", "plot": "P.", "genres": ["Drama", "Thriller"]},
                                             {"id": "b", "plot": "P.", "genres": ["Space Opera"]}])
    out = tmp_path / "out"
    assert main(["import", "jsonl", str(src), "--out", str(out), "--genres", "Drama,Thriler"]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert "'Thriler'" in err and "did you mean 'Thriller'?" in err and not out.exists()
    # a genre of the data outside IMDb's list is a genre the user may keep
    assert main(["import", "jsonl", str(src), "--out", str(out), "--genres", "Drama,Space Opera"]) == 0
    assert Dataset(out).meta["genres"] == ["Drama", "Space Opera"]


def test_parse_kind_matches_imdbs_kinds_first():
    from genrefusion.data.importers import parse_kind

    want = {"movie": "movie", "tv movie": "movie", "video movie": "movie", "tvMovie": "movie", "short": "movie",
            "tv series": "tv", "tv mini series": "tv", "episode": "tv", "tv short": "tv", "tvEpisode": "tv",
            "series": "tv", "video game": None, "videoGame": None, "feature film": "movie", None: None}
    assert {k: parse_kind(k) for k in want} == want


def test_mmimdb_quirks(tmp_path, make_jpeg, capsys):
    src = tmp_path / "download"
    ds = src / "mmimdb" / "dataset"
    ds.mkdir(parents=True)
    (ds / "0111161.json").write_text(json.dumps({
        "genres": ["Drama"], "kind": "tv movie",
        "plot": ["Two men bond in prison.::Jane Doe <jane@example.com>", "A banker is jailed.::jd"]}))
    make_jpeg(ds / "0111161.JPEG")                      # upper-case extension
    (ds / "._0111161.json").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork, not a record
    (ds / "._0111161.jpeg").write_bytes(b"\x00\x05\x16\x07")
    # the folder above mmimdb/: pointed at the right one
    assert main(["import", "mmimdb", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _assert_clean_errors(err, 1)
    assert f"pass {src / 'mmimdb'}" in err
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["import", "mmimdb", str(src / "mmimdb"), "--out", str(out), "--report", str(report)]) == 0
    t = _titles(out)["tt0111161"]
    assert t["plot"] == "Two men bond in prison. A banker is jailed." and t["poster"] and t["kind"] == "movie"
    rep = json.loads(report.read_text())
    assert rep["dropped"] == [] and rep["notes"] == []


def test_jsonl_quirks(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    assert main(["import", "jsonl", str(tmp_path / "dir"), "--out", str(tmp_path / "o")]) == 2
    assert "is a folder" in capsys.readouterr().err
    src = _jsonl_file(tmp_path / "in" / "t.jsonl", [
        {"id": "d1", "plot": {"en": "A plot.", "fr": "Une intrigue."}, "genres": ["Drama"]},
        {"id": 2016.0, "plot": "A plot.", "genres": ["Sci-Fi & Fantasy"]},
    ])
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["import", "jsonl", str(src), "--out", str(out), "--report", str(report)]) == 0
    t = _titles(out)
    assert list(t) == ["2016"] and t["2016"]["genres"] == ["Sci-Fi", "Fantasy"]
    dropped = json.loads(report.read_text())["dropped"]
    assert dropped[0]["id"] == "d1" and "plot is a JSON object" in dropped[0]["message"]


def test_a_file_without_one_json_object_is_one_error_not_a_drop_per_line(tmp_path, capsys):
    src = tmp_path / "titles.csv"
    src.write_text("id,plot,genres\n" + "".join(f"{i},plot,Drama\n" for i in range(50)), encoding="utf-8")
    assert main(["import", "jsonl", str(src), "--out", str(tmp_path / "out")]) == 2  # was 51 "dropped" lines, rc 1
    cap = capsys.readouterr()
    _assert_clean_errors(cap.err, 1)
    assert "titles.csv: not JSON lines: none of its 51 lines is a JSON object" in cap.err and cap.out == ""


def test_json_array_is_named_and_nothing_is_left_behind(tmp_path, capsys):
    recs = [{"id": "x1", "plot": "p", "genres": ["Drama"]}, {"id": "x2", "plot": "q", "genres": ["Comedy"]}]
    for name, text, what in (("a.json", json.dumps(recs, indent=2), "a JSON array"),
                             ("one.json", json.dumps(recs), "a JSON array"),
                             ("p.json", json.dumps(recs[0], indent=2), "pretty-printed JSON")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert main(["import", "jsonl", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        _assert_clean_errors(err, 1)
        assert f"looks like {what}, not JSON lines" in err and not (tmp_path / "out").exists()
    # nothing importable: no empty dataset that would block the rerun
    bad = _jsonl_file(tmp_path / "bad.jsonl", [{"id": "x1", "plot": "p"}])
    assert main(["import", "jsonl", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()
    assert main(["import", "jsonl", str(_jsonl_file(bad, recs)), "--out", str(tmp_path / "out")]) == 0


def test_windows_poster_paths(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "img" / "a.jpg")
    src = _jsonl_file(tmp_path / "t.jsonl", [{"id": "w1", "plot": "p", "genres": ["Drama"], "poster": "img\\a.jpg"},
                                             {"id": "w2", "plot": "p", "genres": ["Drama"],
                                              "poster": "C:\\data\\img\\a.jpg"}])
    assert main(["import", "jsonl", str(src), "--out", str(tmp_path / "o1")]) == 0
    assert _titles(tmp_path / "o1")["w1"]["poster"]
    # a drive path from another machine: its file name is looked for in the images folder
    assert main(["import", "jsonl", str(src), "--out", str(tmp_path / "o2"), "--images", str(tmp_path / "img")]) == 0
    assert all(t["poster"] for t in _titles(tmp_path / "o2").values())
