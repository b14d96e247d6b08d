"""Constituency parsing: the two-stage CRF parser of Zhang et al. (2020).

Stage one scores every span with a biaffine over its first and last word and trains a
tree-CRF over binary bracketings (loss: log Z by the inside algorithm minus the gold binarised
tree's score). Stage two labels the gold spans. Decoding: CKY for the best binary tree, then a
label per span; spans labelled null (binarisation, or single words outside any phrase) are
dropped and unary chains (``S+VP``) expanded. Metric: evalb-style labelled bracket F1 without
punctuation and TOP, ADVP and PRT counted as equal.

Spans in this module are fenceposts ``(i, j)``: words ``i..j-1``, unless said otherwise.
"""

from __future__ import annotations

from collections import Counter

import torch
from nltk import Tree
from torch.nn import functional as F

from mtlheads.tasks.base import MLP, Biaffine, Task, prf, sentence_words

NULL = "<null>"
EVALB_DELETED_TAGS = {",", ":", "``", "''", "."}  # evalb's COLLINS.prm punctuation
EVALB_EQUAL = {"PRT": "ADVP"}


def binarised_spans(tree: str | Tree) -> list[tuple[int, int, str]]:
    """Spans of the left-binarised tree, TOP removed, unary chains joined with ``+``.

    Every word and the whole sentence are spans; a binary tree over n words has 2n - 1.
    Spans that binarisation adds, and single words outside any phrase, are labelled NULL.
    """
    tree = Tree.fromstring(tree) if isinstance(tree, str) else tree
    spans: list[tuple[int, int, str]] = []

    def walk(node, start: int, label_prefix: str) -> int:
        if isinstance(node[0], str):  # preterminal: a word
            spans.append((start, start + 1, label_prefix or NULL))
            return start + 1
        label = f"{label_prefix}+{node.label()}" if label_prefix else node.label()
        if len(node) == 1:  # unary chain: carry the label down
            return walk(node[0], start, label)
        ends = []
        end = start
        for child in node:
            end = walk(child, end, "")
            ends.append(end)
        for inner_end in ends[1:-1]:  # left binarisation: ((c1 c2) c3) ...
            spans.append((start, inner_end, NULL))
        spans.append((start, end, label))
        return end

    if tree.label() == "TOP":  # TOP over several phrases leaves the sentence span unlabelled
        tree = tree[0] if len(tree) == 1 else Tree(NULL, list(tree))
    walk(tree, 0, "")
    return spans


def expand_labels(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Predicted fencepost spans -> inclusive constituents; NULL dropped, chains expanded."""
    out = []
    for i, j, label in spans:
        if label == NULL:
            continue
        out.extend((i, j - 1, part) for part in label.split("+") if part and part != NULL)
    return out


def evalb_counts(spans: list[tuple[int, int, str]], tags: list[str]) -> Counter:
    """Inclusive spans as evalb counts them: punctuation words deleted, PRT read as ADVP."""
    kept_index, new = [], 0
    for tag in tags:
        kept_index.append(None if tag in EVALB_DELETED_TAGS else new)
        new += tag not in EVALB_DELETED_TAGS
    counts: Counter = Counter()
    for start, end, label in spans:
        if label == "TOP":
            continue
        inside = [kept_index[k] for k in range(start, end + 1) if kept_index[k] is not None]
        if inside:
            counts[(inside[0], inside[-1], EVALB_EQUAL.get(label, label))] += 1
    return counts


def bracket_f1(predictions, golds, sentences) -> dict[str, float]:
    """Labelled bracket P/R/F1 (evalb style) over inclusive constituents, using gold tags."""
    correct = predicted = gold = 0
    for pred, ref, sentence in zip(predictions, golds, sentences):
        tags = [t for _, t in Tree.fromstring(sentence["tree"]).pos()]
        p, g = evalb_counts(pred, tags), evalb_counts(ref, tags)
        correct += sum((p & g).values())
        predicted += sum(p.values())
        gold += sum(g.values())
    return prf(correct, predicted, gold)


def stripe(x: torch.Tensor, n: int, w: int, offset: tuple[int, int] = (0, 0), dim: int = 1) -> torch.Tensor:
    """A (n, w, ...) view of diagonal stripes of a (seq, seq, ...) tensor (as in supar)."""
    seq_len = x.size(1)
    stride, numel = list(x.stride()), x[0, 0].numel()
    stride[0] = (seq_len + 1) * numel
    stride[1] = (1 if dim == 1 else seq_len) * numel
    return x.as_strided(size=(n, w, *x.shape[2:]), stride=stride,
                        storage_offset=(offset[0] * seq_len + offset[1]) * numel)


def _fill_chart(scores: torch.Tensor, combine) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill a span chart bottom-up over binary splits.

    ``combine(splits)`` reduces (batch, spans, splits) to the spans' values and best split (or
    None): logsumexp for the inside algorithm, max for CKY. Returns the chart and the back
    pointers, both (n+1, n+1, batch).
    """
    seq_len = scores.shape[1]
    scores = scores.permute(1, 2, 0).contiguous()
    chart = torch.full_like(scores, float("-inf"))
    back = torch.zeros_like(scores, dtype=torch.long)
    for w in range(1, seq_len):
        n = seq_len - w
        if w == 1:
            chart.diagonal(w).copy_(scores.diagonal(w))
            continue
        splits = stripe(chart, n, w - 1, (0, 1)) + stripe(chart, n, w - 1, (1, w), 0)
        value, where = combine(splits.permute(2, 0, 1))
        chart.diagonal(w).copy_(value + scores.diagonal(w))
        if where is not None:
            back.diagonal(w).copy_(where + torch.arange(n, device=where.device).unsqueeze(0) + 1)
    return chart, back


def inside(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """log Z of a tree-CRF over binary bracketings. scores: (batch, n+1, n+1) fencepost spans."""
    chart, _ = _fill_chart(scores, lambda splits: (splits.logsumexp(-1), None))
    return chart[0].gather(0, lengths.unsqueeze(0)).squeeze(0)


@torch.no_grad()
def cky(scores: torch.Tensor, lengths: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Best binary bracketing per sentence: lists of fencepost spans (2n - 1 each)."""
    _, back = _fill_chart(scores, lambda splits: splits.max(-1))
    back = back.permute(2, 0, 1).tolist()

    def spans(b: int, i: int, j: int) -> list[tuple[int, int]]:
        if j == i + 1:
            return [(i, j)]
        k = back[b][i][j]
        return [(i, j)] + spans(b, i, k) + spans(b, k, j)

    return [spans(b, 0, n) for b, n in enumerate(lengths.tolist())]


class CON(Task):
    name, metric = "con", "f1"
    order = 3
    columns, probe, paper_gate_lambda = ("tree",), "centroid", 0.01

    @staticmethod
    def labels_of(sentence):
        from mtlheads.data.stats import constituents

        return [label for _, _, label in constituents(sentence["tree"])]

    @staticmethod
    def probe_items(sentence):
        """The lowest phrases (over preterminals only), as the paper probes constituents."""
        from mtlheads.data.stats import constituents

        return [(s + 1, e + 1, label) for s, e, label in constituents(sentence["tree"], height=3)]

    def __init__(self, hidden: int, labels: list[str], span_mlp: int = 500, label_mlp: int = 100):
        super().__init__()
        self.labels = [NULL, *[l for l in labels if l != NULL]]
        self.index = {t: i for i, t in enumerate(self.labels)}
        self.span_l, self.span_r = MLP(hidden, span_mlp), MLP(hidden, span_mlp)
        self.label_l, self.label_r = MLP(hidden, label_mlp), MLP(hidden, label_mlp)
        self.span = Biaffine(span_mlp, 1)
        self.label = Biaffine(label_mlp, len(self.labels))

    @classmethod
    def build(cls, train, hidden):
        return cls(hidden, sorted({label for s in train for _, _, label in binarised_spans(s["tree"])}))

    def targets(self, sentences, num_words):
        # gold[b, i, j] = label index + 1 on the gold binarised tree's fencepost spans, 0 elsewhere
        gold = torch.zeros(len(sentences), num_words + 1, num_words + 1, dtype=torch.long)
        for b, s in enumerate(sentences):
            for i, j, label in binarised_spans(s["tree"]):
                gold[b, i, j] = self.index.get(label, 0) + 1
        return {"spans": gold}

    def forward(self, words):
        """Span scores (batch, n+1, n+1) and label scores (batch, n+1, n+1, labels) on fenceposts."""
        h = words[:, 1:]
        batch, n, _ = h.shape
        first_last = self.span(self.span_l(h), self.span_r(h)).squeeze(1)  # (batch, first, last)
        spans = first_last.new_zeros(batch, n + 1, n + 1)
        spans[:, :n, 1:] = first_last
        labels_fl = self.label(self.label_l(h), self.label_r(h)).permute(0, 2, 3, 1)
        labels = labels_fl.new_zeros(batch, n + 1, n + 1, len(self.labels))
        labels[:, :n, 1:] = labels_fl
        return spans, labels

    def loss(self, words, word_mask, targets):
        spans, labels = self(words)
        n = spans.shape[1] - 1
        lengths = word_mask.sum(-1) - 1  # words per sentence, kept on the device
        gold = targets["spans"][:, : n + 1, : n + 1]
        gold_tree = gold > 0
        log_z = inside(spans, lengths)
        gold_score = (spans * gold_tree).flatten(1).sum(-1)
        span_loss = (log_z - gold_score).sum() / lengths.sum()
        label_loss = F.cross_entropy(labels[gold_tree], gold[gold_tree] - 1)
        return span_loss + label_loss

    def decode(self, words, word_mask):
        spans, labels = self(words)
        lengths = torch.tensor(sentence_words(word_mask), device=spans.device)
        trees = cky(spans, lengths)
        best = labels.argmax(-1).tolist()
        return [expand_labels([(i, j, self.labels[best[b][i][j]]) for i, j in tree]) for b, tree in enumerate(trees)]

    def gold(self, sentence):
        from mtlheads.data.stats import constituents

        return constituents(sentence["tree"])

    def blind(self, train, sentences):
        """One constituent over the whole sentence, with the most frequent label of whole-sentence phrases."""
        from mtlheads.data.stats import constituents

        top = Counter(label for s in train for i, j, label in constituents(s["tree"])
                      if i == 0 and j == len(s["tokens"]) - 1).most_common(1)[0][0]
        return [[(0, len(s["tokens"]) - 1, top)] for s in sentences]

    def score(self, predictions, golds, sentences):
        return bracket_f1(predictions, golds, sentences)
