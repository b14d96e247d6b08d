"""Readers for the three EWT annotation layers: UD CoNLL-U, UNER IOB2, PropBank ``.gold_skel``.

Each reader validates as it goes and raises ``MalformedLineError`` naming the file and the
1-based line number of the first line it cannot read (a byte that is not UTF-8 included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mtlheads.data.sources import MalformedLineError, text_lines

__all__ = ["MalformedLineError", "read_conllu", "read_iob2", "read_gold_skel", "parse_arg_column"]


@dataclass
class UDSentence:
    """One UD sentence in syntactic words (multiword-token ranges and empty nodes left out)."""

    sent_id: str
    doc_id: str
    text: str
    tokens: list[str]
    upos: list[str]
    xpos: list[str]
    heads: list[int]  # 1-based head index per word, 0 for root
    deprels: list[str]


def read_conllu(path: Path | str) -> list[UDSentence]:
    sentences: list[UDSentence] = []
    doc_id, meta, rows = "", {}, []

    def close(lineno: int) -> None:
        nonlocal meta, rows
        if rows:
            if "sent_id" not in meta:
                raise MalformedLineError(path, lineno, "", "sentence without '# sent_id'")
            for word_lineno, word in zip(row_lines, rows):
                if int(word[6]) > len(rows):
                    raise MalformedLineError(path, word_lineno, "\t".join(word),
                                             f"head {word[6]} is out of range: the sentence has {len(rows)} words "
                                             f"(valid heads: 0 to {len(rows)})")
            cols = list(zip(*rows))
            sentences.append(
                UDSentence(meta["sent_id"], doc_id, meta.get("text", ""), list(cols[1]),
                           list(cols[3]), list(cols[4]), [int(h) for h in cols[6]], list(cols[7]))
            )
        meta, rows = {}, []
        row_lines.clear()

    row_lines: list[int] = []
    lineno = 0
    for lineno, line in text_lines(path):
        line = line.rstrip("\n")
        if not line.strip():
            close(lineno)
        elif line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep:
                key, value = key.strip(), value.strip()
                if key == "newdoc id":
                    doc_id = value
                meta[key] = value
        else:
            cols = line.split("\t")
            if len(cols) != 10:
                raise MalformedLineError(path, lineno, line, f"expected 10 tab-separated columns, got {len(cols)}")
            if "-" in cols[0] or "." in cols[0]:
                continue  # multiword-token range or empty node
            if not cols[0].isdigit() or int(cols[0]) != len(rows) + 1:
                raise MalformedLineError(path, lineno, line, f"word index {cols[0]!r} out of sequence")
            if not cols[6].isdigit():
                raise MalformedLineError(path, lineno, line, f"head {cols[6]!r} is not a number")
            rows.append(cols)
            row_lines.append(lineno)
    if rows:
        raise cut_short(path, lineno)
    return sentences


def cut_short(path: Path | str, lineno: int) -> MalformedLineError:
    """The error for a file that ends inside a sentence: every sentence ends with a blank line."""
    return MalformedLineError(path, lineno, "", "the file ends inside a sentence (no blank line after its last "
                                                "word): it was cut short")


# UNER tags outside PER/LOC/ORG, present in the train file of upstream's first commit.
UNER_TAG_MAP = {"B-OTH": "O", "I-OTH": "O", "B-O": "O"}
UNER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


@dataclass
class NERSentence:
    sent_id: str
    tokens: list[str]
    tags: list[str]  # BIO over PER, LOC, ORG


def read_iob2(path: Path | str) -> list[NERSentence]:
    sentences: list[NERSentence] = []
    sent_id, tokens, tags = None, [], []
    lineno = 0
    for lineno, line in text_lines(path):
        line = line.rstrip("\n")
        if line.startswith("# sent_id = "):
            sent_id = line[len("# sent_id = "):].strip()
        elif line.startswith("#"):
            continue
        elif not line.strip():
            if tokens:
                sentences.append(NERSentence(sent_id, tokens, tags))
            sent_id, tokens, tags = None, [], []
        else:
            cols = line.split("\t")
            if len(cols) < 3:
                raise MalformedLineError(path, lineno, line, "expected index, word and tag")
            if sent_id is None:
                raise MalformedLineError(path, lineno, line, "token before any '# sent_id'")
            tag = UNER_TAG_MAP.get(cols[2], cols[2])
            if tag not in UNER_TAGS:
                raise MalformedLineError(path, lineno, line, f"tag {cols[2]!r} is not one of {UNER_TAGS}")
            tokens.append(cols[1])
            tags.append(tag)
    if tokens:
        raise cut_short(path, lineno)
    return sentences


@dataclass
class SkelSentence:
    """One sentence of a PropBank ``.gold_skel`` file (CoNLL-2012 style, words masked)."""

    lineno: int  # line of its first word, for error messages
    xpos: list[str]
    tree_fragments: list[str]  # e.g. "(TOP(S(NP*)" per word
    rolesets: list[str]  # "-" where the word is no predicate
    arg_columns: list[list[str]]  # one column per predicate, one entry per word


def read_gold_skel(path: Path | str) -> list[SkelSentence]:
    sentences: list[SkelSentence] = []
    rows: list[list[str]] = []
    start = lineno = 0

    def close() -> None:
        if rows:
            sentences.append(SkelSentence(start, [r[4] for r in rows], [r[5] for r in rows],
                                          [r[7] for r in rows], [list(c) for c in zip(*(r[8:] for r in rows))]))
            rows.clear()

    for lineno, line in text_lines(path):
        cols = line.split()
        if not cols:
            close()
            continue
        if len(cols) < 8:
            raise MalformedLineError(path, lineno, line, f"expected at least 8 columns, got {len(cols)}")
        if rows and len(cols) != len(rows[0]):
            raise MalformedLineError(path, lineno, line, f"{len(cols)} columns where the sentence has {len(rows[0])}")
        if not cols[2].isdigit() or int(cols[2]) != len(rows):
            raise MalformedLineError(path, lineno, line, f"word index {cols[2]!r} out of sequence")
        if not rows:
            start = lineno
        rows.append(cols)
    if rows:
        raise cut_short(path, lineno)
    if not sentences:
        raise MalformedLineError(path, 1, "", "no sentence in the file (a PropBank document has at least one)")
    return sentences


_ARG_OPEN = re.compile(r"\(([^*()]+)\*")


def parse_arg_column(column: list[str]) -> list[tuple[int, int, str]]:
    """Spans ``(start, end inclusive, role)`` of one CoNLL-2012 argument column, V included."""
    spans, open_role, open_start = [], None, 0
    for i, cell in enumerate(column):
        m = _ARG_OPEN.search(cell)
        if m:
            if open_role is not None:
                raise ValueError(f"argument {m.group(1)} opens inside {open_role} at word {i}")
            open_role, open_start = m.group(1), i
        if cell.endswith(")"):
            if open_role is None:
                raise ValueError(f"argument closes at word {i} without opening")
            spans.append((open_start, i, open_role))
            open_role = None
    if open_role is not None:
        raise ValueError(f"argument {open_role} opened at word {open_start} never closes")
    return spans
