"""SQuAD v1.1 dev, split by article into a training part and an evaluation part.

Only the dev set is on the mirror. Its 48 articles are shuffled with a fixed seed and cut, so
that no article (and no passage) is in both parts.
"""

from __future__ import annotations

import json
import random

from mtlheads.data import sources

FILE = "dev-v1.1.json"


def load(root=None) -> list[dict]:
    """Every question: ``id``, ``title``, ``context``, ``question``, ``answers`` (texts, as
    annotated, duplicates kept), ``answer_start`` (character offset of the first answer)."""
    path = sources.source_path("SQuAD", FILE, root)
    with open(path, encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    questions = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                questions.append({
                    "id": qa["id"], "title": article["title"], "context": paragraph["context"],
                    "question": qa["question"].strip(), "answers": [a["text"] for a in qa["answers"]],
                    "answer_start": qa["answers"][0]["answer_start"],
                })
    return questions


def split_by_article(questions: list[dict], eval_share: float = 0.3, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, evaluation): whole articles, shuffled with ``seed``; ``eval_share`` of the articles
    go to evaluation."""
    if not 0.0 < eval_share < 1.0:
        raise ValueError(f"eval_share must be between 0 and 1, not {eval_share!r}")
    titles = sorted({q["title"] for q in questions})
    random.Random(seed).shuffle(titles)
    held_out = set(titles[:max(1, round(eval_share * len(titles)))])
    return ([q for q in questions if q["title"] not in held_out], [q for q in questions if q["title"] in held_out])
