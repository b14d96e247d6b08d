"""SQuAD v1.1 dev, split by article into a training part and an evaluation part.

Only the dev set is on the mirror. Its 48 articles are shuffled with a fixed seed and cut, so
that no article (and no passage) is in both parts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mtlheads.data import sources

FILE = "dev-v1.1.json"


class MalformedRecordError(ValueError):
    """A SQuAD record lacks a field: names the file and where in it."""


def _need(record, keys: tuple[str, ...], path, where: str):
    if not isinstance(record, dict):
        raise MalformedRecordError(f"{path}: {where} is a JSON {type(record).__name__}, not an object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise MalformedRecordError(f"{path}: {where} has no {missing[0]!r} (SQuAD v1.1 gives it {', '.join(keys)})")
    return record


def read(path) -> list[dict]:
    """The questions of a SQuAD v1.1 file (see ``load``); a missing field is a
    ``MalformedRecordError`` naming the file and the record's place in it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        top = json.loads(text)
    except UnicodeDecodeError as err:
        raise MalformedRecordError(f"{path}: byte {err.start} is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise MalformedRecordError(f"{path}:{err.lineno}: not JSON ({err.msg} at column {err.colno})") from None
    questions = []
    for i, article in enumerate(_need(top, ("data",), path, "the top level")["data"]):
        where = f"data[{i}]"
        for j, paragraph in enumerate(_need(article, ("title", "paragraphs"), path, where)["paragraphs"]):
            here = f"{where}.paragraphs[{j}]"
            for k, qa in enumerate(_need(paragraph, ("context", "qas"), path, here)["qas"]):
                _need(qa, ("id", "question", "answers"), path, f"{here}.qas[{k}]")
                if not qa["answers"]:
                    raise MalformedRecordError(f"{path}: {here}.qas[{k}] has no answer")
                for a, answer in enumerate(qa["answers"]):
                    _need(answer, ("text", "answer_start"), path, f"{here}.qas[{k}].answers[{a}]")
                questions.append({
                    "id": qa["id"], "title": article["title"], "context": paragraph["context"],
                    "question": qa["question"].strip(), "answers": [a["text"] for a in qa["answers"]],
                    "answer_start": qa["answers"][0]["answer_start"],
                })
    return questions


def load(root=None) -> list[dict]:
    """Every question: ``id``, ``title``, ``context``, ``question``, ``answers`` (texts, as
    annotated, duplicates kept), ``answer_start`` (character offset of the first answer)."""
    return read(sources.source_path("SQuAD", FILE, root))


def split_by_article(questions: list[dict], eval_share: float = 0.3, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, evaluation): whole articles, shuffled with ``seed``; ``eval_share`` of the articles
    go to evaluation."""
    if not 0.0 < eval_share < 1.0:
        raise ValueError(f"eval_share must be between 0 and 1, not {eval_share!r}")
    titles = sorted({q["title"] for q in questions})
    random.Random(seed).shuffle(titles)
    held_out = set(titles[:max(1, round(eval_share * len(titles)))])
    return ([q for q in questions if q["title"] not in held_out], [q for q in questions if q["title"] in held_out])
