"""NER: a biaffine span classifier over all spans, with a null label (Yu et al., 2020), decoded
greedily into non-overlapping spans (flat NER); exact span F1."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mtlheads.data.ewt5 import spans_from_bio
from mtlheads.tasks.base import MLP, Biaffine, Task, prf, sentence_words

NULL = "<null>"


def greedy_flat_spans(scored: list[tuple[float, int, int, str]]) -> list[tuple[int, int, str]]:
    """Keep spans best-first, skipping any that overlaps one already kept; sorted by position."""
    kept: list[tuple[int, int, str]] = []
    taken: set[int] = set()
    for _, start, end, label in sorted(scored, key=lambda s: -s[0]):
        if not taken.intersection(range(start, end + 1)):
            kept.append((start, end, label))
            taken.update(range(start, end + 1))
    return sorted(kept)


def span_f1(predictions: list[list[tuple]], golds: list[list[tuple]]) -> dict[str, float]:
    """Micro P/R/F1 over exact spans (any hashable tuples), per sentence."""
    correct = sum(len(set(p) & set(g)) for p, g in zip(predictions, golds))
    return prf(correct, sum(len(set(p)) for p in predictions), sum(len(set(g)) for g in golds))


class NER(Task):
    name, metric = "ner", "f1"
    order = 1
    columns, probe, paper_gate_lambda = ("ner",), "centroid", 2e-4

    @staticmethod
    def labels_of(sentence):
        return [label for _, _, label in spans_from_bio(sentence["ner"])]

    @staticmethod
    def probe_items(sentence):
        return [(s + 1, e + 1, label) for s, e, label in spans_from_bio(sentence["ner"])]

    def __init__(self, hidden: int, labels: list[str], mlp: int = 150):
        super().__init__()
        self.labels = [NULL, *labels]
        self.index = {t: i for i, t in enumerate(self.labels)}
        self.start, self.end = MLP(hidden, mlp), MLP(hidden, mlp)
        self.biaffine = Biaffine(mlp, len(self.labels))

    @classmethod
    def build(cls, train, hidden):
        return cls(hidden, sorted({label for s in train for _, _, label in spans_from_bio(s["ner"])}))

    def targets(self, sentences, num_words):
        spans = torch.zeros(len(sentences), num_words, num_words, dtype=torch.long)
        for b, s in enumerate(sentences):
            for start, end, label in spans_from_bio(s["ner"]):
                spans[b, start, end] = self.index[label]
        return {"spans": spans}

    def forward(self, words):
        h = words[:, 1:]
        return self.biaffine(self.start(h), self.end(h)).permute(0, 2, 3, 1)  # (batch, start, end, labels)

    @staticmethod
    def _valid(word_mask):
        m = word_mask[:, 1:]
        n = m.shape[1]
        upper = torch.ones(n, n, dtype=torch.bool, device=m.device).triu()
        return upper & m[:, :, None] & m[:, None, :]  # (batch, start, end), start <= end

    def loss(self, words, word_mask, targets):
        logits = self(words)
        n = logits.shape[1]
        valid = self._valid(word_mask)
        return F.cross_entropy(logits[valid], targets["spans"][:, :n, :n][valid])

    def decode(self, words, word_mask):
        probs = self(words).softmax(-1)
        best_p, best = probs.max(-1)
        valid = self._valid(word_mask) & (best > 0)
        out = []
        for b, n in enumerate(sentence_words(word_mask)):
            idx = valid[b].nonzero().tolist()
            scored = [(best_p[b, i, j].item(), i, j, self.labels[best[b, i, j]]) for i, j in idx]
            out.append(greedy_flat_spans(scored))
        return out

    def gold(self, sentence):
        return spans_from_bio(sentence["ner"])

    def blind(self, train, sentences):
        """No entity: F1 0."""
        return [[] for _ in sentences]

    def score(self, predictions, golds, sentences=None):
        return span_f1(predictions, golds)
