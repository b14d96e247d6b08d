"""What every task decoder offers: build from training data, targets, loss, decode, score.

A decoder reads word-level encoder states ``words`` (batch, 1 + words, hidden), position 0
being [CLS], and ``word_mask`` (batch, 1 + words). Sentences are the EWT5 records.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn


class Task(nn.Module):
    """One task's decoder, loss, decoding and metric. Subclasses set ``name`` and ``metric``."""

    name: str = ""
    metric: str = ""  # the key of ``score``'s result used as the task's dev score
    order: int = 100  # the task's place in the book's tables (``TASKS``)
    # What the rest of the book asks of a task, so that a new task is one module:
    columns: tuple[str, ...] = ()  # the EWT5 fields ``labels_of`` reads (chapter 1's counts read only these)
    probe: Literal["arc", "predicate span", "centroid"] | None = None  # how chapter 4 probes a head for it
    paper_gate_lambda: float | None = None  # the L0 weight of the Stem Cell paper's gated STL run
    control: bool = False  # a control task (chapter 3's), trained and gated like a task but not in ``TASKS``

    @staticmethod
    def labels_of(sentence: dict) -> list[str]:
        """The labels a sentence carries: one per item (token, entity, arc, phrase or argument)."""
        raise NotImplementedError

    @staticmethod
    def probe_items(sentence: dict) -> list[tuple]:
        """The sentence's probe items in word positions (+1: position 0 is [CLS]), label last:
        ``arc``: (dependent, head, label); ``predicate span``: (predicate, start, end, label);
        ``centroid``: (start, end, label) of the words whose vectors are averaged."""
        raise NotImplementedError

    def targets(self, sentences: list[dict], num_words: int) -> dict[str, Any]:
        """Gold targets for a batch, padded to ``num_words`` words."""
        raise NotImplementedError

    def loss(self, words: torch.Tensor, word_mask: torch.Tensor, targets: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, words: torch.Tensor, word_mask: torch.Tensor) -> list[Any]:
        """One prediction per sentence, in the same form as ``gold`` returns."""
        raise NotImplementedError

    def gold(self, sentence: dict) -> Any:
        raise NotImplementedError

    def score(self, predictions: list[Any], golds: list[Any], sentences: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def blind(self, train: list[dict], sentences: list[dict]) -> list[Any]:
        """Predictions that ignore the words (only their number and the training labels' counts):
        the bar a model must clear to have learned the task at all."""
        raise NotImplementedError

    def blind_score(self, train: list[dict], sentences: list[dict]) -> float:
        """The task's metric for ``blind`` predictions on ``sentences``."""
        golds = [self.gold(s) for s in sentences]
        return self.score(self.blind(train, sentences), golds, sentences)[self.metric]


class MLP(nn.Sequential):
    """Linear, LeakyReLU, dropout: the projection before a biaffine scorer (Dozat & Manning)."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.33):
        super().__init__(nn.Linear(n_in, n_out), nn.LeakyReLU(0.1), nn.Dropout(dropout))


class Biaffine(nn.Module):
    """``s[b, o, i, j] = [x_i; 1]^T W_o [y_j; 1]``: (batch, n, d) x (batch, m, d) -> (batch, out, n, m)."""

    def __init__(self, n_in: int, n_out: int = 1, bias_x: bool = True, bias_y: bool = True):
        super().__init__()
        self.bias_x, self.bias_y = bias_x, bias_y
        self.weight = nn.Parameter(torch.zeros(n_out, n_in + bias_x, n_in + bias_y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bias_x:
            x = torch.cat([x, torch.ones_like(x[..., :1])], -1)
        if self.bias_y:
            y = torch.cat([y, torch.ones_like(y[..., :1])], -1)
        return torch.einsum("bxi,oij,byj->boxy", x, self.weight, y)


def sentence_words(word_mask: torch.Tensor) -> list[int]:
    """Words per sentence ([CLS] not counted) from a (batch, 1 + words) mask."""
    return (word_mask.sum(-1) - 1).tolist()


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 in percent from counts (0 where undefined)."""
    p = 100 * correct / predicted if predicted else 0.0
    r = 100 * correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}
