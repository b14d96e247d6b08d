"""Parameter-free probes of every attention head (He & Choi, 2021, section 5).

Nothing is trained. Each head is read at the word level (``Encoder`` pools subwords: a word's
attention row is the mean over its subwords of the sum over the key word's subwords; a word's
context vector is the mean over its subwords) and scored against gold structure:

- DEP, attention: an arc (dependent d, head p, relation r) is found by a head when d's
  most-attended word is p, or p's most-attended word is d. ROOT is the [CLS] position.
- SRL, attention: (predicate p, argument span, role r) is found when some word of the span
  most-attends to p, or p most-attends to some word of the span.
- POS, NER, CON, values: an item is a word (POS), the mean over an entity span (NER) or the
  mean over a lowest phrase, i.e. a height-3 subtree (CON). One centroid per label and head;
  an item is labelled with its most cosine-similar centroid. Centroids are built either on the
  scored data itself (``same``, as the paper does) or on training sentences (``fit``).

Every probe is vectorised over the (layer, head) grid: one pass over the sentences gathers, per
gold item, whether each head finds it (attention probes) or its vector under each head
(centroid probes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from nltk import Tree
from tqdm.auto import tqdm

from mtlheads.data.stats import constituents
from mtlheads.encoder import Encoder
from mtlheads.tasks import TASK_CLASSES, TASKS, check_tasks

ATTENTION_TASKS = tuple(t for t in TASKS if TASK_CLASSES[t].probe in ("arc", "predicate span"))
CENTROID_TASKS = tuple(t for t in TASKS if TASK_CLASSES[t].probe == "centroid")
PROBED_TASKS = tuple(t for t in TASKS if TASK_CLASSES[t].probe is not None)
SAME, FIT = "same", "fit"  # centroids built on the scored data (the paper), or on training data


def lowest_phrases(tree: str | Tree) -> list[tuple[int, int, str]]:
    """``(start, end inclusive, label)`` of every height-3 subtree: phrases over preterminals only."""
    return constituents(tree, height=3)


def gold_items(sentence: dict, task: str) -> list[tuple]:
    """A sentence's probe items for ``task`` (``Task.probe_items``): word positions (+1: position
    0 is [CLS]), label last."""
    return TASK_CLASSES[check_tasks(task)[0]].probe_items(sentence)


@dataclass
class Items:
    """One task's gold items over a list of sentences: sentence index, positions, label."""

    sentence: np.ndarray  # (items,)
    positions: np.ndarray  # (items, 2) or (items, 3) for srl
    labels: list[str]  # the item labels as strings

    @classmethod
    def collect(cls, sentences: list[dict], task: str) -> "Items":
        kind = TASK_CLASSES[check_tasks(task)[0]]  # looked up once, not per sentence
        rows = [(i, *item) for i, s in enumerate(sentences) for item in kind.probe_items(s)]
        width = 3 if kind.probe == "predicate span" else 2
        if not rows:
            return cls(np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.int64), [])
        return cls(np.array([r[0] for r in rows]), np.array([r[1:-1] for r in rows], dtype=np.int64),
                   [r[-1] for r in rows])

    def by_sentence(self, num_sentences: int) -> list[np.ndarray]:
        order = np.argsort(self.sentence, kind="stable")
        bounds = np.searchsorted(self.sentence[order], np.arange(num_sentences + 1))
        return [order[bounds[i]:bounds[i + 1]] for i in range(num_sentences)]


# Per-batch head readings ---------------------------------------------------------------------

def most_attended(attentions: torch.Tensor) -> torch.Tensor:
    """(batch, layers, heads, q, k) word-level attention -> (batch, q, layers, heads) argmax key."""
    return attentions.argmax(-1).permute(0, 3, 1, 2)


def dep_found(most: torch.Tensor, rows: torch.Tensor, dependents: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """(items, layers, heads) bool: d most-attends to p, or p to d."""
    return (most[rows, dependents] == heads[:, None, None]) | (most[rows, heads] == dependents[:, None, None])


def srl_found(most: torch.Tensor, rows: torch.Tensor, predicates: torch.Tensor, starts: torch.Tensor,
              ends: torch.Tensor) -> torch.Tensor:
    """(items, layers, heads) bool: a span word most-attends to p, or p most-attends into the span."""
    from_predicate = most[rows, predicates]  # (items, layers, heads)
    into_span = (from_predicate >= starts[:, None, None]) & (from_predicate <= ends[:, None, None])
    to_predicate = (most[rows] == predicates[:, None, None, None]).cumsum(1)  # (items, q, layers, heads)
    items = torch.arange(len(rows))
    hits = to_predicate[items, ends] - to_predicate[items, starts - 1]
    return into_span | (hits > 0)


def prefix_sums(contexts: torch.Tensor) -> torch.Tensor:
    """(batch, layers, heads, words, dim) contexts -> (batch, words, layers, heads, dim) running sums."""
    return contexts.permute(0, 3, 1, 2, 4).cumsum(1)


def span_means(summed: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Mean vector of words ``starts..ends`` (inclusive, >= 1) from ``prefix_sums``: (items, layers, heads, dim)."""
    total = summed[rows, ends] - summed[rows, starts - 1]
    return total / (ends - starts + 1).to(total.dtype)[:, None, None, None]


# Reading a model ------------------------------------------------------------------------------

@dataclass
class HeadReadings:
    """Per task: the items and, per item, what every head says (found flags or vectors)."""

    items: dict[str, Items]
    found: dict[str, np.ndarray]  # attention tasks: (items, layers, heads) bool
    vectors: dict[str, torch.Tensor]  # centroid tasks: (items, layers, heads, dim)


@torch.no_grad()
def read_heads(encoder: Encoder, sentences: list[dict], tasks=PROBED_TASKS, batch_size: int = 32,
               progress: bool = True, desc: str = "reading heads") -> HeadReadings:
    """One pass of the encoder over ``sentences`` (in length order), gathering every task's items."""
    for t in tasks:
        if t not in PROBED_TASKS:
            raise ValueError(f"unknown task {t!r}; valid tasks: {', '.join(PROBED_TASKS)}")
    encoder.eval()
    n = len(sentences)
    items = {t: Items.collect(sentences, t) for t in tasks}
    grouped = {t: items[t].by_sentence(n) for t in tasks}
    L, H, D = encoder.num_layers, encoder.num_heads, encoder.head_dim
    found = {t: np.zeros((len(items[t].labels), L, H), dtype=bool) for t in tasks if t in ATTENTION_TASKS}
    vectors = {t: torch.zeros(len(items[t].labels), L, H, D) for t in tasks if t in CENTROID_TASKS}
    order = np.array(encoder.length_order([s["tokens"] for s in sentences]), dtype=int)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        ids = order[start:start + batch_size]
        out = encoder.encode([sentences[i]["tokens"] for i in ids], capture=True)
        most = most_attended(out.attentions).cpu()  # the items are gathered on the host
        summed = prefix_sums(out.contexts.float()).cpu() if vectors else None
        row_of = {int(s): r for r, s in enumerate(ids)}
        for t in tasks:
            idx = np.concatenate([grouped[t][i] for i in ids])
            if len(idx) == 0:
                continue
            rows = torch.as_tensor([row_of[int(s)] for s in items[t].sentence[idx]])
            pos = torch.as_tensor(items[t].positions[idx])
            kind = TASK_CLASSES[t].probe
            if kind == "arc":
                found[t][idx] = dep_found(most, rows, pos[:, 0], pos[:, 1]).numpy()
            elif kind == "predicate span":
                found[t][idx] = srl_found(most, rows, pos[:, 0], pos[:, 1], pos[:, 2]).numpy()
            else:
                vectors[t][torch.as_tensor(idx)] = span_means(summed, rows, pos[:, 0], pos[:, 1])
    return HeadReadings(items, found, vectors)


# Scoring --------------------------------------------------------------------------------------

@dataclass
class LabelProbe:
    """One probe's result: per label and head, how many items the head gets right."""

    task: str
    variant: str  # "attention", SAME or FIT
    labels: list[str]
    counts: np.ndarray  # (labels,) items per label
    correct: np.ndarray  # (labels, layers, heads)
    # the same in each of BLOCKS interleaved blocks of the scored sentences (sentence i in block
    # i % BLOCKS): the halves of the held-out head choice (even and odd blocks, so even and odd
    # sentences) and the resampling unit of the bootstrap over sentences
    block_counts: np.ndarray | None = None  # (BLOCKS, labels)
    block_correct: np.ndarray | None = None  # (BLOCKS, labels, layers, heads)

    @property
    def half_counts(self) -> np.ndarray | None:
        """(2, labels): items per label among the even and the odd sentences."""
        return None if self.block_counts is None else np.stack([self.block_counts[h::2].sum(0) for h in (0, 1)])

    @property
    def half_correct(self) -> np.ndarray | None:
        """(2, labels, layers, heads): ``correct`` among the even and the odd sentences."""
        return None if self.block_correct is None else np.stack([self.block_correct[h::2].sum(0) for h in (0, 1)])

    def accuracy(self) -> np.ndarray:
        """(labels, layers, heads) accuracy in percent."""
        return 100 * self.correct / np.maximum(self.counts, 1)[:, None, None]

    def best_accuracy(self) -> np.ndarray:
        """(labels,) each label's best head's accuracy in percent (chosen and scored on the same items)."""
        return self.accuracy().reshape(len(self.labels), -1).max(1)

    def resampled_best(self, weights: np.ndarray) -> np.ndarray:
        """(resamples, labels) ``best_accuracy`` when sentence block b is drawn ``weights[r, b]``
        times (``bootstrap_weights``): the same statistic, the best head chosen anew, on each
        bootstrap resample of the scored sentences; NaN where a resample holds no item of a label."""
        if self.block_correct is None:
            raise ValueError(f"the {self.task} {self.variant} probe kept no sentence blocks: build it with probes.probe_all")
        if weights.ndim != 2 or weights.shape[1] != len(self.block_counts):
            raise ValueError(f"weights must be (resamples, {len(self.block_counts)}), got {weights.shape}")
        counts = weights @ self.block_counts  # (resamples, labels)
        correct = np.einsum("rb,blk->rlk", weights, self.block_correct.reshape(*self.block_correct.shape[:2], -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, 100 * correct.max(-1) / counts, np.nan)

    def head_accuracy(self) -> np.ndarray:
        """(layers, heads) accuracy over all items, in percent."""
        return 100 * self.correct.sum(0) / max(int(self.counts.sum()), 1)

    def best_heads(self, min_count: int = 1) -> pd.DataFrame:
        """Per label with at least ``min_count`` items: its best head and that head's accuracy."""
        acc = self.accuracy()
        rows = []
        for i, label in enumerate(self.labels):
            if self.counts[i] < min_count:
                continue
            layer, head = np.unravel_index(int(np.argmax(acc[i])), acc[i].shape)
            rows.append({"task": self.task, "label": label, "count": int(self.counts[i]), "layer": int(layer),
                         "head": int(head), "accuracy": float(acc[i, layer, head])})
        return pd.DataFrame(rows, columns=["task", "label", "count", "layer", "head", "accuracy"])

    def held_out_best_heads(self, min_count: int = 1) -> pd.DataFrame:
        """Per label with at least ``min_count`` items: the in-sample best head's accuracy (the
        paper's number: chosen and scored on the same items) beside the held-out one: the head
        chosen on one half of the sentences, scored on the other, and the reverse, averaged
        (NaN where a half has no item of the label); ``inflation`` is their difference."""
        if self.half_correct is None:
            raise ValueError(f"the {self.task} {self.variant} probe kept no sentence blocks: build it with probes.probe_all")
        acc = self.accuracy()
        with np.errstate(invalid="ignore", divide="ignore"):
            half_acc = 100 * self.half_correct / self.half_counts[:, :, None, None]
        rows = []
        for i, label in enumerate(self.labels):
            if self.counts[i] < min_count:
                continue
            held = [float(half_acc[1 - h, i].ravel()[int(np.argmax(half_acc[h, i]))])
                    if self.half_counts[h, i] and self.half_counts[1 - h, i] else np.nan for h in (0, 1)]
            held_out = float(np.mean(held)) if not np.isnan(held).any() else np.nan
            rows.append({"task": self.task, "label": label, "count": int(self.counts[i]),
                         "in-sample": float(acc[i].max()), "held-out": held_out,
                         "inflation": float(acc[i].max()) - held_out})
        return pd.DataFrame(rows, columns=["task", "label", "count", "in-sample", "held-out", "inflation"])


def label_index(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels by descending frequency (ties alphabetical) and each item's label id."""
    values, counts = np.unique(np.array(labels, dtype=object), return_counts=True)
    vocab = [str(v) for _, v in sorted(zip(-counts, values))]
    ids = {label: i for i, label in enumerate(vocab)}
    return vocab, np.array([ids[label] for label in labels], dtype=np.int64)


BLOCKS = 20  # interleaved sentence blocks a probe keeps its counts in (even: the halves are blocks' parity)


def bootstrap_weights(resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, BLOCKS): how often each sentence block is drawn in each of ``resamples``
    bootstrap resamples (BLOCKS draws with replacement), for ``LabelProbe.resampled_best``. The
    same weights for every model give paired resamples: a difference between models is resampled
    on the same sentences."""
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples!r}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(BLOCKS, np.full(BLOCKS, 1 / BLOCKS), size=resamples).astype(float)


def _blocks(items: Items, y: np.ndarray, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's sentence block (sentence index % BLOCKS) and the label counts per block."""
    block = items.sentence % BLOCKS
    return block, np.stack([np.bincount(y[block == b], minlength=num_labels) for b in range(BLOCKS)])


def attention_probe(task: str, items: Items, found: np.ndarray, variant: str = "attention") -> LabelProbe:
    labels, y = label_index(items.labels)
    block, block_counts = _blocks(items, y, len(labels))
    block_correct = np.zeros((BLOCKS, len(labels)) + found.shape[1:])
    np.add.at(block_correct, (block, y), found)
    return LabelProbe(task, variant, labels, np.bincount(y, minlength=len(labels)), block_correct.sum(0),
                      block_counts, block_correct)


def nearest_centroid(fit_x: torch.Tensor, fit_y: torch.Tensor, x: torch.Tensor, y: torch.Tensor, num_labels: int,
                     chunk: int = 4096, groups: torch.Tensor | None = None, num_groups: int = 1) -> np.ndarray:
    """Per label and head, how many of ``x`` are nearest (cosine) to their own label's centroid.

    Centroids are label means of ``fit_x`` (items, layers, heads, dim), one per head; a label
    absent from the fit items has no centroid and is never predicted. Returns (labels, layers,
    heads), or with ``groups`` (each item's group id) (num_groups, labels, layers, heads).
    """
    L, H, D = x.shape[1:]
    sums = torch.zeros(num_labels, L, H, D, dtype=x.dtype).index_add_(0, fit_y, fit_x)
    present = torch.bincount(fit_y, minlength=num_labels) > 0
    centroids = F.normalize(sums, dim=-1).permute(1, 2, 3, 0)  # (layers, heads, dim, labels)
    cells = y if groups is None else groups * num_labels + y  # (group, label) as one index
    correct = torch.zeros(num_groups * num_labels, L, H)
    for start in range(0, len(x), chunk):
        xs, ys = F.normalize(x[start:start + chunk], dim=-1), y[start:start + chunk]
        sims = (xs.permute(1, 2, 0, 3) @ centroids).permute(2, 0, 1, 3)  # (items, layers, heads, labels)
        sims[..., ~present] = -torch.inf
        hit = (sims.argmax(-1) == ys[:, None, None]).float()
        correct.index_add_(0, cells[start:start + chunk], hit)
    correct = correct.numpy()
    return correct if groups is None else correct.reshape(num_groups, num_labels, L, H)


def centroid_probe(task: str, test: tuple[Items, torch.Tensor], fit: tuple[Items, torch.Tensor] | None = None) -> LabelProbe:
    """Nearest-centroid probe scored on ``test``; centroids from ``fit`` or, if None, from ``test``."""
    test_items, test_x = test
    fit_items, fit_x = fit if fit is not None else test
    labels, y = label_index(test_items.labels)
    ids = {label: i for i, label in enumerate(labels)}
    known = np.array([label in ids for label in fit_items.labels], dtype=bool)
    fit_y = np.array([ids[label] for label in np.array(fit_items.labels, dtype=object)[known]], dtype=np.int64)
    block, block_counts = _blocks(test_items, y, len(labels))
    block_correct = nearest_centroid(fit_x[torch.as_tensor(known)], torch.as_tensor(fit_y), test_x, torch.as_tensor(y),
                                     len(labels), groups=torch.as_tensor(block), num_groups=BLOCKS)
    return LabelProbe(task, SAME if fit is None else FIT, labels, np.bincount(y, minlength=len(labels)),
                      block_correct.sum(0), block_counts, block_correct)


def probe_all(test: HeadReadings, fit: HeadReadings | None = None) -> dict[tuple[str, str], LabelProbe]:
    """Every probe: ``(task, "attention")`` for DEP and SRL; ``(task, SAME)`` and, with ``fit``,
    ``(task, FIT)`` for POS, NER and CON."""
    out = {}
    for task, items in test.items.items():
        if task in ATTENTION_TASKS:
            out[(task, "attention")] = attention_probe(task, items, test.found[task])
        else:
            out[(task, SAME)] = centroid_probe(task, (items, test.vectors[task]))
            if fit is not None and task in fit.items:
                out[(task, FIT)] = centroid_probe(task, (items, test.vectors[task]),
                                                  (fit.items[task], fit.vectors[task]))
    return out


POSITIONAL = ("previous word", "next word", "itself", "[CLS]")  # the attention baselines' heads


def positional_probe(task: str, sentences: list[dict]) -> LabelProbe:
    """The attention probe of ``task`` (DEP or SRL) scored for four heads that attend by position
    alone, each word to the word before it (``[CLS]`` for the first), the word after it (itself
    for the last), itself, and ``[CLS]`` (``POSITIONAL``, as 1 layer x 4 heads): what a head
    "finds" for free. Variant ``positional``; the halves as ``probe_all``'s."""
    if task not in ATTENTION_TASKS:
        raise ValueError(f"positional baselines are for the attention probes {ATTENTION_TASKS}, got {task!r}")
    items = Items.collect(sentences, task)
    width = 2 + max((len(s["tokens"]) for s in sentences), default=0)
    q = torch.arange(width)
    n = torch.tensor([len(s["tokens"]) for s in sentences], dtype=torch.long)[:, None]  # words at 1..n, [CLS] at 0
    most = torch.zeros(len(sentences), width, 1, len(POSITIONAL), dtype=torch.long)  # (sentences, q, 1, 4)
    most[:, :, 0, 0] = (q - 1).clamp(min=0)
    most[:, :, 0, 1] = torch.minimum(q + 1, n)
    most[:, :, 0, 2] = q
    rows, pos = torch.as_tensor(items.sentence), torch.as_tensor(items.positions)
    if TASK_CLASSES[task].probe == "arc":
        found = dep_found(most, rows, pos[:, 0], pos[:, 1])
    else:
        found = srl_found(most, rows, pos[:, 0], pos[:, 1], pos[:, 2])
    return attention_probe(task, items, found.numpy(), variant="positional")


def majority_accuracy(probe: LabelProbe) -> float:
    """The accuracy (percent, over all items) of always answering the probe's most frequent label:
    the value probes' free baseline."""
    return float(100 * probe.counts.max() / max(int(probe.counts.sum()), 1))


def main_variant(task: str) -> str:
    """The variant comparable with the paper: attention for DEP/SRL, same-data centroids otherwise."""
    return "attention" if task in ATTENTION_TASKS else SAME
