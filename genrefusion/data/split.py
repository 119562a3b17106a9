"""Train/dev/test split: multi-label iterative stratification over *groups* of titles.

Titles sharing an ``imdb_id`` (within or across datasets) form one group whose label vector is the
union of their genres, so one film never sits in train through one dataset and in test through
another. Groups are stratified in one pass into three folds with ``iterstrat``'s implementation of
Sechidis et al.'s iterative stratification. That algorithm serves the rarest labels first but can
still leave a genre with a handful of titles absent from the small dev part; a repair step then
moves whole groups so that each genre with at least ``MIN_PRESENT`` titles appears in every part.

``split.json``: ``{"seed", "dev", "test", "datasets": [names], "parts": {"train": [...], "dev": [...],
"test": [...]}}`` (seed and fractions null for an imported split); entries are title ids for one dataset,
``"<dataset name>/<id>"`` for several.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import ConfigError, DatasetError
from ..io import read_json, write_json
from .dataset import Dataset
from .records import Title

PARTS = ("train", "dev", "test")
MIN_PRESENT = 5


def split_key(dataset_name: str, title_id: str, qualified: bool) -> str:
    """A title's entry in a split: ``<dataset>/<id>`` when several datasets are split together, else its id."""
    return f"{dataset_name}/{title_id}" if qualified else str(title_id)


@dataclass
class Split:
    seed: int | None
    dev: float | None
    test: float | None
    datasets: list[str]
    parts: dict[str, list[str]] = field(default_factory=dict)
    source: str | None = None  # the split file(s) a run took its split from (``given_split``); None: made here

    def __post_init__(self):
        self._index: dict[str, str] = {}
        for part in PARTS:
            for key in self.parts.setdefault(part, []):
                prev = self._index.get(key)
                if prev is not None and prev != part:
                    raise DatasetError(f"split: {key!r} is in both {prev!r} and {part!r}")
                self._index[key] = part

    @property
    def qualified(self) -> bool:
        """Entries are ``<dataset>/<id>`` (several datasets split together)."""
        return len(self.datasets) > 1

    def part_of(self, dataset_name: str | None, title_id: str) -> str | None:
        """'train' | 'dev' | 'test' for a title, or None when the split does not cover it.

        For a one-dataset split, ``dataset_name`` must be that dataset (or None); a split without
        dataset names (e.g. an MM-IMDb ``split.json`` loaded as is) matches any dataset.
        """
        if self.qualified:
            return self._index.get(split_key(dataset_name, title_id, True)) if dataset_name is not None else None
        if self.datasets and dataset_name is not None and dataset_name != self.datasets[0]:
            return None
        return self._index.get(str(title_id))

    def ids(self, part: str) -> list[str]:
        if part not in PARTS:
            raise ConfigError(f"unknown split part {part!r} (train, dev, test)")
        return list(self.parts[part])

    def __len__(self) -> int:
        return len(self._index)

    def to_dict(self) -> dict:
        return {"seed": self.seed, "dev": self.dev, "test": self.test, "datasets": list(self.datasets),
                **({"source": self.source} if self.source else {}), "parts": {p: list(self.parts[p]) for p in PARTS}}

    def save(self, path: str | os.PathLike) -> Path:
        write_json(path, self.to_dict(), indent=1)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        """Read our ``split.json``; a bare ``{"train": [...], "dev": [...], "test": [...]}`` (MM-IMDb) is
        accepted too, with no seed or fractions (None). Malformed files raise DatasetError naming the file."""
        d = read_json(path, "split file", DatasetError)
        if not isinstance(d, dict):
            raise DatasetError(f"{path}: split file must be a JSON object")
        parts = d.get("parts") if "parts" in d else {k: d[k] for k in PARTS if k in d}
        if not isinstance(parts, dict) or not parts:
            raise DatasetError(f"{path}: split file has no 'parts' (train/dev/test lists)")
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise DatasetError(f"{path}: unknown split part(s) {', '.join(sorted(unknown))}")
        for p, ids in parts.items():
            if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
                raise DatasetError(f"{path}: part {p!r} must be a list of ids")
        names = d.get("datasets", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: 'datasets' must be a list of names")

        def made(key):  # seed and fractions come from our format only: a bare file's "dev"/"test" are id lists
            v = d.get(key) if "parts" in d else None  # (so are a run's split.json's, written from one before)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        try:
            return cls(seed=made("seed"), dev=made("dev"), test=made("test"), datasets=names,
                       parts={p: [str(i) for i in parts.get(p, [])] for p in PARTS},
                       source=d["source"] if isinstance(d.get("source"), str) else None)
        except DatasetError as err:
            raise DatasetError(f"{path}: {err}") from None

    def counts(self, datasets: Iterable[Dataset]) -> dict[str, dict[str, int]]:
        """Per part: number of titles (``"titles"``) and of titles per genre, over ``datasets``."""
        out: dict[str, Counter] = {p: Counter() for p in PARTS}
        for ds in datasets:
            for t in ds.titles():
                part = self.part_of(ds.name, t.id)
                if part is None:
                    continue
                out[part]["titles"] += 1
                out[part].update(set(t.genres))
        return {p: dict(c) for p, c in out.items()}


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """Table: one row per genre (most frequent first), one column per part, and a titles row."""
    genres = sorted({g for c in counts.values() for g in c if g != "titles"},
                    key=lambda g: (-sum(counts[p].get(g, 0) for p in PARTS), g))
    width = max([len(g) for g in genres] + [6])
    lines = [f"{'genre':<{width}}  " + "  ".join(f"{p:>6}" for p in PARTS)]
    for g in ["titles"] + genres:
        lines.append(f"{g:<{width}}  " + "  ".join(f"{counts[p].get(g, 0):>6}" for p in PARTS))
    return "\n".join(lines)


def _check_fractions(dev: float, test: float) -> None:
    # dev > 0: a run tunes its thresholds and stops early on dev titles; test 0 is for holdout's inner split
    # (its test part is the held-out dataset): `genrefusion split` and data.test refuse it
    for name, v, lo in (("dev", dev, "(0"), ("test", test, "[0")):
        if not isinstance(v, (int, float)) or not 0 <= v < 1 or (name == "dev" and v == 0):
            raise ConfigError(f"--{name}: must be a fraction in {lo}, 1), got {v!r}")
    if dev + test >= 1:
        raise ConfigError(f"--dev + --test must be < 1, got {dev} + {test}")


def make_split(datasets: list[Dataset], dev: float = 0.1, test: float = 0.2, seed: int = 0,
               exclude: Callable[[Title], bool] | None = None) -> Split:
    """Stratified, grouped, deterministic split of ``datasets`` (see the module docstring).

    Titles for which ``exclude(title)`` is true are in no part (so never trained on, tuned on or scored):
    leave-one-dataset-out uses it to drop the titles the held-out dataset shares (``data.holdout``)."""
    from iterstrat.ml_stratifiers import IterativeStratification
    from sklearn.utils import check_random_state

    _check_fractions(dev, test)
    rng = check_random_state(seed)
    skip = (lambda key, t: exclude(t)) if exclude is not None else None
    names, members, groups, labels = _stratification_groups(datasets, rng, skip)
    sizes = np.array([len(members[g]) for g in groups])
    ratios = np.array([1.0 - dev - test, dev, test])
    fold = IterativeStratification(labels=labels, r=ratios, random_state=rng)
    _repair(fold, labels, sizes, ratios)

    part_of_group = {grp: PARTS[f] for grp, f in zip(groups, fold)}
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for grp in members:  # file order in the output, whatever the shuffle
        parts[part_of_group[grp]].extend(members[grp])
    return Split(seed=seed, dev=dev, test=test, datasets=names, parts=parts)


def distinct_names(datasets) -> list[str]:
    """The datasets' names, which key their titles in a split of several: two alike would merge their titles."""
    names = [ds.name for ds in datasets]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise DatasetError(f"split: several datasets are named {dupes[0]!r}; give them distinct names in dataset.json")
    return names


def given_split(datasets: list[Dataset], path: str | os.PathLike | None = None
                ) -> tuple[Split | None, str, list[str]]:
    """The split a training run takes instead of making one, where it came from, and warnings to show.

    ``path``: that split file (``train --split FILE``; ``"new"`` asks for a fresh one). Without it, the
    datasets' own ``split.json`` (written by ``genrefusion split``, or MM-IMDb's kept by ``import mmimdb``)
    when every dataset carries one, so a published split is trained and scored as published. No split
    returned: make one. The split returned is keyed like ``make_split``'s over exactly these datasets; a title
    it does not place is in no part (warned), and titles sharing an imdb_id across parts are warned about."""
    if path == "new":
        return None, "", []
    names, several = distinct_names(datasets), len(datasets) > 1
    if path is not None:
        one = Split.load(path)
        if several and not one.qualified:
            raise DatasetError(f"{path}: holds the ids of one dataset; for several, make the split with "
                               "genrefusion split DIR ... --out FILE")
        sources, source = [one] * len(datasets), os.path.abspath(path)
    else:
        own = [ds for ds in datasets if ds.split_path.is_file()]
        if not own:
            return None, "", []
        if len(own) < len(datasets):
            return None, "", [f"not using {', '.join(str(ds.split_path) for ds in own)}: "
                              f"{', '.join(ds.name for ds in datasets if ds not in own)} without a split.json; a new "
                              "split is made for all (train --split FILE takes a combined one)"]
        sources = [Split.load(ds.split_path) for ds in datasets]
        source = ", ".join(os.path.abspath(ds.split_path) for ds in own)
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    part_of_group: dict[str, set] = defaultdict(set)
    total = 0
    for ds, sp in zip(datasets, sources):
        # a dataset's own unqualified split names no dataset that must match (the folder may have been renamed)
        name = ds.name if (sp.qualified or path is not None) else None
        for t in ds.titles():
            total += 1
            part = sp.part_of(name, t.id)
            if part is not None:
                parts[part].append(split_key(ds.name, t.id, several))
                part_of_group[t.group_key].add(part)
    placed = sum(len(v) for v in parts.values())
    if not placed:
        raise DatasetError(f"{source}: places none of the {total} titles (its ids match no title id)")
    warnings = [f"{total - placed} of {total} titles are in no part of {source} and are not used"] * (placed < total)
    leaks = sorted(g for g, ps in part_of_group.items() if len(ps) > 1)
    if leaks:
        warnings.append(f"{source} puts {len(leaks)} film(s) in several parts through titles sharing an imdb_id "
                        f"(e.g. {', '.join(leaks[:3])}): their test figures are not on unseen films")
    seed, dev, test = (None,) * 3 if several else (sources[0].seed, sources[0].dev, sources[0].test)
    return Split(seed, dev, test, names, parts, source), source, warnings


def _stratification_groups(datasets, rng, skip=None):
    """(dataset names, group -> member keys, the groups shuffled by ``rng``, [groups, genres] bool labels).

    A group is the titles sharing an ``imdb_id`` (else one title), labelled with the union of their genres;
    titles for which ``skip(key, title)`` is true are left out."""
    datasets = list(datasets)
    if not datasets:
        raise DatasetError("split: no dataset given")
    names = distinct_names(datasets)
    qualified = len(datasets) > 1

    # group -> member keys and union of genres; insertion order (file order) keeps this deterministic
    members: dict[str, list[str]] = {}
    genres_of: dict[str, set[str]] = {}
    seen: set[str] = set()
    for ds in datasets:
        for t in ds.titles():
            key = split_key(ds.name, t.id, qualified)
            if key in seen:
                continue  # duplicate id: validation reports it; the first copy decides
            if skip is not None and skip(key, t):
                continue
            seen.add(key)
            group = t.imdb_id or f"{ds.name}/{t.id}"
            members.setdefault(group, []).append(key)
            genres_of.setdefault(group, set()).update(t.genres)
    if not members:
        raise DatasetError(f"split: no title in {', '.join(names)}")

    # Seeded shuffle: iterstrat fills folds in index order, so file order (e.g. every cross-dataset
    # group coming from the first dataset) would otherwise pile into train.
    groups = list(members)
    groups = [groups[i] for i in rng.permutation(len(groups))]
    vocab = sorted({g for gs in genres_of.values() for g in gs})
    gidx = {g: i for i, g in enumerate(vocab)}
    labels = np.zeros((len(groups), len(vocab)), dtype=bool)  # bool: iterstrat indexes with the row as a mask
    for i, grp in enumerate(groups):
        for g in genres_of[grp]:
            labels[i, gidx[g]] = True
    return names, members, groups, labels


def make_folds(datasets, k: int, seed: int = 0, include: Callable[[str], bool] | None = None) -> list[list[str]]:
    """``k`` disjoint folds of the titles (split keys) for which ``include(key)`` is true (all by default),
    grouped by ``imdb_id`` and stratified over genres like ``make_split``: cross-fitting trains on ``k - 1``
    folds and scores the k-th, so every title gets an out-of-fold score."""
    from iterstrat.ml_stratifiers import IterativeStratification
    from sklearn.utils import check_random_state

    if k < 2:
        raise ConfigError(f"folds: need at least 2, got {k}")
    rng = check_random_state(seed)
    skip = (lambda key, t: not include(key)) if include is not None else None
    _, members, groups, labels = _stratification_groups(datasets, rng, skip)
    if len(groups) < k:
        raise DatasetError(f"folds: {len(groups)} title groups cannot fill {k} folds")
    sizes = np.array([len(members[g]) for g in groups])
    ratios = np.full(k, 1.0 / k)
    fold = IterativeStratification(labels=labels, r=ratios, random_state=rng)
    _repair(fold, labels, sizes, ratios)
    out: list[list[str]] = [[] for _ in range(k)]
    for grp, f in zip(groups, fold):
        out[f].extend(members[grp])
    return out


def _repair(fold: np.ndarray, labels: np.ndarray, sizes: np.ndarray, ratios: np.ndarray) -> None:
    """Move whole groups so that each genre with >= MIN_PRESENT titles is in every non-empty part.

    For a genre missing from a part, take a group carrying it from the part holding the most titles
    of that genre, preferring groups with few other genres, and only if the move does not empty that
    source part of any genre it needs to keep. Deterministic: ties go to the lowest group index.
    """
    weighted = labels * sizes[:, None]
    total = weighted.sum(axis=0)
    targets = [f for f in range(len(ratios)) if ratios[f] > 0]
    for _ in range(labels.shape[1] * len(ratios) * 4):  # bounded: each move fixes one (genre, part)
        counts = np.stack([weighted[fold == f].sum(axis=0) for f in range(len(ratios))])
        need = [(g, f) for g in np.flatnonzero(total >= MIN_PRESENT) for f in targets if counts[f, g] == 0]
        if not need:
            return
        moved = False
        for g, f in need:
            for src in np.argsort(-counts[:, g], kind="stable"):
                if src == f or counts[src, g] <= 1:
                    continue
                cands = np.flatnonzero((fold == src) & labels[:, g])
                # the move must leave src with every genre it currently has (that needs it)
                ok = [c for c in cands
                      if all(counts[src, h] - weighted[c, h] > 0 or total[h] < MIN_PRESENT
                             for h in np.flatnonzero(labels[c]))]
                if not ok:
                    continue
                best = min(ok, key=lambda c: (labels[c].sum(), sizes[c], c))
                fold[best] = f
                moved = True
                break
            if moved:
                break
        if not moved:
            return  # nothing can move without breaking another genre: leave it, the table shows it
