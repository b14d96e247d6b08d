"""Dependency parsing: biaffine arc and relation scorers (Dozat & Manning, 2017), [CLS] as ROOT,
Eisner decoding with a single root at evaluation; UAS and LAS without punctuation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch.nn import functional as F

from mtlheads.tasks.base import MLP, Biaffine, Task, sentence_words


def eisner(scores: np.ndarray) -> list[int]:
    """Best projective tree with a single child of the root.

    ``scores[h, d]`` scores head ``h`` for dependent ``d`` over nodes 0..n (0 is ROOT).
    Returns ``heads`` for nodes 1..n (a list of n ints in 0..n).
    """
    return eisner_heads(*eisner_charts(scores))


def eisner_charts(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eisner's back-pointers (complete, incomplete), each (2, n + 1, n + 1): ``[d, s, t]`` is the
    best split of span s..t with its head at t (``d`` 0, left arcs) or at s (``d`` 1, right arcs).
    The spans of one width are filled at once (every start ``s``, every split as a matrix);
    ties go to the first split."""
    n = scores.shape[0] - 1
    neg = -np.inf
    complete = [np.full((n + 1, n + 1), neg), np.full((n + 1, n + 1), neg)]
    incomplete = [np.full((n + 1, n + 1), neg), np.full((n + 1, n + 1), neg)]
    complete_back = np.zeros((2, n + 1, n + 1), dtype=np.int64)
    incomplete_back = np.zeros((2, n + 1, n + 1), dtype=np.int64)
    diagonal = np.arange(n + 1)
    complete[0][diagonal, diagonal] = complete[1][diagonal, diagonal] = 0.0
    for width in range(1, n + 1):
        s = np.arange(n + 1 - width)
        t = s + width
        split = s[:, None] + np.arange(width)[None, :]  # r = s..t-1 for each span
        joined = complete[1][s[:, None], split] + complete[0][split + 1, t[:, None]]
        r = joined.argmax(1)
        best = joined[s, r]
        inner = s[1:]  # ROOT is never a dependent
        incomplete[0][inner, t[1:]] = best[1:] + scores[t[1:], inner]
        incomplete_back[0, inner, t[1:]] = s[1:] + r[1:]
        incomplete[1][s, t] = best + scores[s, t]
        incomplete_back[1, s, t] = s + r
        left = complete[0][s[:, None], split] + incomplete[0][split, t[:, None]]
        r = left.argmax(1)
        complete[0][s, t], complete_back[0, s, t] = left[s, r], s + r
        right = incomplete[1][s[:, None], split + 1] + complete[1][split + 1, t[:, None]]  # r = s+1..t
        r = right.argmax(1)
        complete[1][s, t], complete_back[1, s, t] = right[s, r], s + 1 + r
        if width < n:
            complete[1][0, width] = neg  # a single root: ROOT's right span must cover all words
    return complete_back, incomplete_back


def eisner_heads(complete_back: np.ndarray, incomplete_back: np.ndarray) -> list[int]:
    """The heads of nodes 1..n that Eisner's back-pointers (``eisner_charts``) lead to from ROOT's span."""
    n = complete_back.shape[1] - 1
    heads = [0] * (n + 1)

    def fill(s: int, t: int, d: int, is_complete: bool) -> None:
        if s == t:
            return
        if is_complete:
            r = int(complete_back[d, s, t])
            if d == 0:
                fill(s, r, 0, True)
                fill(r, t, 0, False)
            else:
                fill(s, r, 1, False)
                fill(r, t, 1, True)
        else:
            r = int(incomplete_back[d, s, t])
            if d == 0:
                heads[s] = t
            else:
                heads[t] = s
            fill(s, r, 1, True)
            fill(r + 1, t, 0, True)

    fill(0, n, 1, True)
    return heads[1:]


def is_tree(heads: list[int]) -> bool:
    """Every word reaches ROOT (0) by following heads, without a cycle."""
    n = len(heads)
    for d in range(1, n + 1):
        seen, node = set(), d
        while node != 0:
            if node in seen or not 0 <= heads[node - 1] <= n:
                return False
            seen.add(node)
            node = heads[node - 1]
    return True


def universal(relation: str) -> str:
    """A relation without its subtype (``nmod:poss`` is ``nmod``), as the CoNLL 2018 scorer compares them."""
    return relation.split(":", 1)[0]


def attachment_scores(predictions, golds, sentences) -> dict[str, float]:
    """UAS and LAS in percent, punctuation (UPOS PUNCT) left out: ``las`` compares full relations
    (``nmod:poss``), ``las_universal`` universal ones only (``nmod``, subtypes stripped)."""
    total = uas = las = las_universal = 0
    for (p_heads, p_rels), (g_heads, g_rels), s in zip(predictions, golds, sentences):
        for ph, pr, gh, gr, upos in zip(p_heads, p_rels, g_heads, g_rels, s["upos"]):
            if upos == "PUNCT":
                continue
            total += 1
            uas += ph == gh
            las += ph == gh and pr == gr
            las_universal += ph == gh and universal(pr) == universal(gr)
    return {name: 100 * count / total if total else 0.0
            for name, count in (("uas", uas), ("las", las), ("las_universal", las_universal))}


class DEP(Task):
    name, metric = "dep", "las"
    order = 2
    columns, probe, paper_gate_lambda = ("deprels",), "arc", 0.01

    @staticmethod
    def labels_of(sentence):
        return list(sentence["deprels"])

    @staticmethod
    def probe_items(sentence):
        return [(i + 1, h, r) for i, (h, r) in enumerate(zip(sentence["heads"], sentence["deprels"]))]

    def __init__(self, hidden: int, relations: list[str], arc_mlp: int = 500, rel_mlp: int = 100):
        super().__init__()
        self.relations = list(relations)
        self.index = {r: i for i, r in enumerate(self.relations)}
        self.arc_d, self.arc_h = MLP(hidden, arc_mlp), MLP(hidden, arc_mlp)
        self.rel_d, self.rel_h = MLP(hidden, rel_mlp), MLP(hidden, rel_mlp)
        self.arc = Biaffine(arc_mlp, 1, bias_x=True, bias_y=False)
        self.rel = Biaffine(rel_mlp, len(self.relations))

    @classmethod
    def build(cls, train, hidden):
        return cls(hidden, sorted({r for s in train for r in s["deprels"]}))

    def targets(self, sentences, num_words):
        heads = torch.full((len(sentences), num_words), -100, dtype=torch.long)
        rels = torch.full((len(sentences), num_words), -100, dtype=torch.long)
        for b, s in enumerate(sentences):
            heads[b, : len(s["heads"])] = torch.tensor(s["heads"])
            rels[b, : len(s["deprels"])] = torch.tensor([self.index.get(r, -100) for r in s["deprels"]])
        return {"heads": heads, "rels": rels}

    def forward(self, words, word_mask):
        """Arc scores (batch, dependents 1..n, heads 0..n) and relation scores (batch, dep, head, rels)."""
        arcs = self.arc(self.arc_d(words), self.arc_h(words)).squeeze(1)[:, 1:]
        arcs = arcs.masked_fill(~word_mask[:, None, :], float("-inf"))
        rels = self.rel(self.rel_d(words), self.rel_h(words)).permute(0, 2, 3, 1)[:, 1:]
        return arcs, rels

    def loss(self, words, word_mask, targets):
        arcs, rels = self(words, word_mask)
        n = arcs.shape[1]
        mask = word_mask[:, 1:]
        heads, gold_rels = targets["heads"][:, :n], targets["rels"][:, :n]
        # Words whose gold head lies past the encoder's limit have no score to learn from.
        mask = mask & (heads >= 0) & (heads < arcs.shape[2]) & torch.gather(word_mask, 1, heads.clamp(min=0))
        arc_loss = F.cross_entropy(arcs[mask], heads[mask])
        per_word = rels[mask]  # (items, heads, relations)
        rel_at_gold = per_word[torch.arange(len(per_word), device=per_word.device), heads[mask]]
        return arc_loss + F.cross_entropy(rel_at_gold, gold_rels[mask], ignore_index=-100)

    def decode(self, words, word_mask):
        arcs, rels = self(words, word_mask)
        arcs = arcs.log_softmax(-1).detach().cpu().numpy()
        out = []
        for b, n in enumerate(sentence_words(word_mask)):
            scores = np.full((n + 1, n + 1), -1e9)
            scores[:, 1:] = arcs[b, :n, : n + 1].T  # scores[h, d]
            heads = eisner(scores)
            labels = rels[b, torch.arange(n, device=rels.device), torch.tensor(heads, device=rels.device)].argmax(-1).tolist()
            out.append((heads, [self.relations[i] for i in labels]))
        return out

    def gold(self, sentence):
        return list(sentence["heads"]), list(sentence["deprels"])

    def blind(self, train, sentences):
        """Each word headed by the word before it (the first by ROOT), with the most frequent
        relation of the words LAS counts (punctuation left out)."""
        top = Counter(r for s in train for r, u in zip(s["deprels"], s["upos"]) if u != "PUNCT").most_common(1)[0][0]
        return [(list(range(len(s["tokens"]))), [top] * len(s["tokens"])) for s in sentences]

    def score(self, predictions, golds, sentences):
        return attachment_scores(predictions, golds, sentences)
