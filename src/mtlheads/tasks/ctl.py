"""The control task of chapter 3 (Hewitt and Liang, 2019): each word type gets a fixed random tag.

A tag is drawn for each lower-cased word form from the training set's PTB tag distribution, by
a hash of the form, so the same word always gets the same tag, in every split and run, and
nothing about the sentence decides it. A model can learn it only by memorising word identities.
Gated like a real task, it shows which heads any objective keeps (the selectivity baseline of
probing); it is not one of the book's tasks (``control``: not in ``TASKS``).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from itertools import accumulate

from mtlheads.tasks.pos import POS

SALT = b"mtlheads-control-v1"


def _uniform(word: str) -> float:
    """A number in [0, 1) fixed by the lower-cased word (the same on every machine)."""
    digest = hashlib.blake2b(word.lower().encode("utf-8"), digest_size=8, key=SALT).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def control_tags(tokens: list[str], tags: list[str], cumulative: list[float]) -> list[str]:
    """Each token's control tag: the inverse of the tag distribution (``tags``, ``cumulative``
    shares, the last 1.0) at the token's hash."""
    return [tags[min(bisect.bisect_right(cumulative, _uniform(t)), len(tags) - 1)] for t in tokens]


class Control(POS):
    """A tagger (POS's decoder and accuracy) on control tags."""

    name, metric = "ctl", "accuracy"
    order, control = 90, True
    columns, probe, paper_gate_lambda = ("tokens",), "centroid", None

    @staticmethod
    def labels_of(sentence):
        return list(sentence["tokens"])  # its items are the words (the tags are the model's)

    @staticmethod
    def probe_items(sentence):
        return [(i + 1, i + 1, t.lower()) for i, t in enumerate(sentence["tokens"])]

    def __init__(self, hidden: int, labels: list[str], shares: list[float]):
        super().__init__(hidden, labels)
        self.cumulative = list(accumulate(shares))
        self.cumulative[-1] = 1.0

    @classmethod
    def build(cls, train: list[dict], hidden: int) -> "Control":
        counts = Counter(t for s in train for t in s["xpos"])
        labels = sorted(counts)
        total = sum(counts.values())
        return cls(hidden, labels, [counts[t] / total for t in labels])

    def tags(self, sentence) -> list[str]:
        return control_tags(sentence["tokens"], self.labels, self.cumulative)

    def targets(self, sentences, num_words):
        return super().targets([{"xpos": self.tags(s)} for s in sentences], num_words)

    def gold(self, sentence):
        return self.tags(sentence)

    def blind(self, train, sentences):
        """The most frequent control tag for every word."""
        top = Counter(t for s in train for t in self.tags(s)).most_common(1)[0][0]
        return [[top] * len(s["tokens"]) for s in sentences]
