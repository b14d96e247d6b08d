"""POS tagging: a linear layer and softmax over PTB tags; accuracy."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F

from mtlheads.tasks.base import Task, sentence_words


class POS(Task):
    name, metric = "pos", "accuracy"
    order = 0
    columns, probe, paper_gate_lambda = ("xpos",), "centroid", 0.01

    @staticmethod
    def labels_of(sentence):
        return list(sentence["xpos"])

    @staticmethod
    def probe_items(sentence):
        return [(i + 1, i + 1, tag) for i, tag in enumerate(sentence["xpos"])]

    def __init__(self, hidden: int, labels: list[str]):
        super().__init__()
        self.labels = list(labels)
        self.index = {t: i for i, t in enumerate(self.labels)}
        self.classifier = nn.Linear(hidden, len(self.labels))

    @classmethod
    def build(cls, train: list[dict], hidden: int) -> "POS":
        return cls(hidden, sorted({t for s in train for t in s["xpos"]}))

    def targets(self, sentences, num_words):
        tags = torch.full((len(sentences), num_words), -100, dtype=torch.long)
        for b, s in enumerate(sentences):
            tags[b, : len(s["xpos"])] = torch.tensor([self.index.get(t, -100) for t in s["xpos"]])
        return {"tags": tags}

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        return self.classifier(words[:, 1:])  # (batch, words, tags)

    def loss(self, words, word_mask, targets):
        logits = self(words)
        tags = targets["tags"][:, : logits.shape[1]].masked_fill(~word_mask[:, 1:], -100)
        return F.cross_entropy(logits.flatten(0, 1), tags.flatten(), ignore_index=-100)

    def decode(self, words, word_mask):
        best = self(words).argmax(-1).tolist()
        return [[self.labels[i] for i in row[:n]] for row, n in zip(best, sentence_words(word_mask))]

    def gold(self, sentence):
        return list(sentence["xpos"])

    def blind(self, train, sentences):
        """The most frequent training tag for every word."""
        top = Counter(t for s in train for t in s["xpos"]).most_common(1)[0][0]
        return [[top] * len(s["tokens"]) for s in sentences]

    def score(self, predictions, golds, sentences=None):
        correct = sum(p == g for pred, gold in zip(predictions, golds) for p, g in zip(pred, gold))
        total = sum(len(g) for g in golds)
        return {"accuracy": 100 * correct / total if total else 0.0}
