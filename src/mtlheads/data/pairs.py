"""Texts and text pairs as subword ids, with where each subword came from.

A pair is ``first [SEP] second`` (a question and its context); truncation cuts the second text
only. Each subword keeps its ``part`` (0: the first text, 1: the second, None: a special or
padding token) and its character ``offsets`` within that part, so answers and numbers written as
character spans map to subword positions (``token_range``) and back (``char_span``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FIRST, SECOND = 0, 1


@dataclass(frozen=True)
class Encoded:
    """One input: ``input_ids``, each subword's ``parts`` and its ``offsets`` (start, end)."""

    input_ids: list[int]
    parts: list[int | None]
    offsets: list[tuple[int, int]]

    def mask(self, part: int | None = None) -> list[bool]:
        """True at the subwords of ``part`` (None: of either text, not special tokens)."""
        return [p is not None if part is None else p == part for p in self.parts]


@dataclass(frozen=True)
class Batch:
    """Padded ``input_ids`` and ``attention_mask`` (batch, subwords) and each row's ``Encoded``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: list[Encoded]

    def mask(self, part: int | None = None, device=None) -> torch.Tensor:
        """(batch, subwords) bool: each row's ``Encoded.mask(part)``."""
        return torch.tensor([row.mask(part) for row in self.rows], device=device)


def _tokenize(tokenizer, first, second, max_length: int, **options):
    if second is None:
        return tokenizer(first, truncation=True, max_length=max_length, return_offsets_mapping=True, **options)
    return tokenizer(first, second, truncation="only_second", max_length=max_length, return_offsets_mapping=True,
                     **options)


def encode(tokenizer, first: str, second: str | None, max_length: int) -> Encoded:
    """``first [SEP] second`` (or ``first`` alone), at most ``max_length`` subwords."""
    enc = _tokenize(tokenizer, first, second, max_length)
    return Encoded(enc["input_ids"], enc.sequence_ids(), [tuple(o) for o in enc["offset_mapping"]])


def encode_batch(tokenizer, firsts: list[str], seconds: list[str] | None, max_length: int) -> Batch:
    """``encode`` for each ``firsts[i]`` (and ``seconds[i]``), padded into one batch."""
    enc = _tokenize(tokenizer, firsts, seconds, max_length, padding=True, return_tensors="pt")
    offsets = enc["offset_mapping"].tolist()
    rows = [Encoded(ids, enc.sequence_ids(r), [tuple(o) for o in offsets[r]])
            for r, ids in enumerate(enc["input_ids"].tolist())]
    return Batch(enc["input_ids"], enc["attention_mask"].bool(), rows)


def token_range(encoded: Encoded, part: int, start: int, end: int) -> tuple[int, int] | None:
    """The inclusive subword positions covering characters [start, end) of ``part``; None if the
    range is (partly) cut off by truncation."""
    inside = [i for i, (p, (a, b)) in enumerate(zip(encoded.parts, encoded.offsets))
              if p == part and a < end and b > start]
    if not inside or encoded.offsets[inside[-1]][1] < end:
        return None
    return inside[0], inside[-1]


def char_span(encoded: Encoded, first: int, last: int) -> tuple[int, int]:
    """Characters [start, end) of subwords ``first`` to ``last`` (inclusive), in their part."""
    return encoded.offsets[first][0], encoded.offsets[last][1]


def word_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Characters [start, end) widened to whole whitespace-separated words, without the
    punctuation around them: a span on "1" of "1,200," becomes "1,200"."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    while start < end and text[start] in "\"'([{":
        start += 1
    while end > start and text[end - 1] in ".,;:!?\"')]}":
        end -= 1
    return start, end


def window(tokenizer, first: str, second: str, spans: list[tuple[int, int]], max_length: int) -> tuple[int, int] | None:
    """The character range ``(start, end)`` of ``second`` that ``first [SEP] second[start:end]``
    fits in ``max_length`` subwords with, holding every character span of ``spans`` and centred
    on them, cut at word boundaries; the whole text when it fits; None when the spans alone do not
    fit. Chapters 6-8 cut a passage to the window around what a question is about."""
    if not spans:
        raise ValueError("window needs at least one span to hold")
    room = max_length - len(tokenizer(first, add_special_tokens=False)["input_ids"]) - 3  # [CLS] first [SEP] ... [SEP]
    offsets = tokenizer(second, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= room:
        return 0, len(second)
    low, high = min(s for s, _ in spans), max(e for _, e in spans)
    inside = [i for i, (s, e) in enumerate(offsets) if s < high and e > low]
    if not inside or inside[-1] - inside[0] + 1 > room:
        return None
    begin = max(0, min(inside[0] - (room - (inside[-1] - inside[0] + 1)) // 2, len(offsets) - room))
    last = begin + room - 1
    start, end = offsets[begin][0], offsets[last][1]
    # whole words only: a window starting or ending inside a word gives it up
    while start > 0 and start < low and not second[start - 1].isspace():
        begin += 1
        start = offsets[begin][0]
    while end < len(second) and end > high and not second[end].isspace():
        last -= 1
        end = offsets[last][1]
    return start, end
