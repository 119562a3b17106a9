"""Plot words and occlusion units: the words of a plot (character spans), grouped into phrases when a plot is
too long to occlude word by word, and the plot with some of them removed."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence


WORD_BUDGET = 2400  # words encoded in total for one title (variants x length): bounds the cost of long plots
MIN_UNITS = 8  # a plot over an eighth of the budget still gets 8 phrases (at 8x its length encoded): two halves
# told a user nothing about a 1,500-word plot; 8 cost 2.7 s for it on 2 cores (0.9 s as two halves)
# CJK ideographs are words of one character each, as MiniLM's tokenizer splits them (a Chinese plot has no spaces:
# as runs of \w it was weighed by clause); kana and every other script keep runs of word characters
_IDEOGRAPH = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_LETTERS = rf"[^\W{_IDEOGRAPH}]+"
WORD = re.compile(rf"[{_IDEOGRAPH}]|{_LETTERS}(?:['\u2019\-]{_LETTERS})*")
CLAUSE_BREAK = re.compile(r"[,;:.!?\u2014\u2013()\"\u3001\u3002\uff0c\uff1b\uff1a\uff01\uff1f]|\s-\s")  # + CJK full stops


@dataclass
class PlotUnits:
    text: str
    words: list[tuple[int, int]]   # character spans of the words
    units: list[tuple[int, int]]   # occlusion units as word ranges [first, end)

    @property
    def granularity(self) -> str:
        return "word" if len(self.units) == len(self.words) else "phrase"

    def span(self, u: int) -> tuple[int, int]:
        """Characters deleted with unit ``u``: a word alone (its punctuation stays), or a phrase up to the next
        phrase (its trailing punctuation goes with it, so no stray commas are left behind)."""
        a, b = self.units[u]
        if self.granularity == "word":
            return self.words[a]
        return self.words[a][0], (self.words[b][0] if b < len(self.words) else len(self.text))

    def unit_text(self, u: int) -> str:
        a, b = self.units[u]
        return self.text[self.words[a][0]:self.words[b - 1][1]]


def plot_units(text: str, word_budget: int = WORD_BUDGET) -> PlotUnits:
    """Words of ``text``; a plot of n words gets ``min(n, max(MIN_UNITS, word_budget // n))`` units (phrases when fewer
    than its words). Explaining it encodes the plot and each variant without one unit: units x n words, so
    ``word_budget`` at most, or MIN_UNITS x n for a longer plot."""
    words = [m.span() for m in WORD.finditer(text)]
    n = len(words)  # 0 (punctuation only): the plot still counts as an input, with no word to weigh
    cap = min(n, max(MIN_UNITS, word_budget // max(n, 1)))
    units = [(i, i + 1) for i in range(n)] if cap >= n else _phrases(text, words, cap)
    return PlotUnits(text, words, units)


def _phrases(text: str, words: list[tuple[int, int]], cap: int) -> list[tuple[int, int]]:
    """At most ``cap`` contiguous runs of about n / cap words; a run may end early (from half its size) where
    the text has a clause break, so phrases read as phrases."""
    n = len(words)
    size = math.ceil(n / cap)
    while True:
        units, start = [], 0
        for i in range(n):
            length = i + 1 - start
            gap = text[words[i][1]:words[i + 1][0]] if i + 1 < n else ""
            if length >= size or (length >= max(1, size // 2) and CLAUSE_BREAK.search(gap)):
                units.append((start, i + 1))
                start = i + 1
        if start < n:
            units.append((start, n))
        if len(units) <= cap:
            return units
        size += 1


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the character ``spans`` (blank runs left behind collapse to one space)."""
    parts, pos = [], 0
    for s, e in sorted(spans):
        parts.append(text[pos:max(pos, s)])
        pos = max(pos, e)
    parts.append(text[pos:])
    return re.sub(r"[ \t]{2,}", " ", "".join(parts)).strip()
