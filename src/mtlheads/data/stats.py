"""Descriptive statistics of EWT5 for the data chapter: sizes, label inventories, lengths."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pandas as pd
from nltk import Tree
from tqdm.auto import tqdm

from mtlheads.data.ewt5 import DROP_REASONS, SPLITS, spans_from_bio
from mtlheads.tasks import TASK_CLASSES, TASKS, check_tasks


def constituents(tree: str | Tree, keep_preterminals: bool = False, height: int | None = None) -> list[tuple[int, int, str]]:
    """Labelled spans ``(start, end inclusive, label)`` of a bracketed tree, TOP left out; with
    ``height``, only the subtrees of that height (nltk's: 2 for a preterminal, 3 for a phrase
    over preterminals only)."""
    tree = Tree.fromstring(tree) if isinstance(tree, str) else tree
    spans: list[tuple[int, int, str]] = []

    def walk(node, start: int) -> int:
        if isinstance(node, str):
            return start + 1
        end = start
        for child in node:
            end = walk(child, end)
        is_preterminal = len(node) == 1 and isinstance(node[0], str)
        if height is not None and node.height() != height:
            return end
        if node.label() != "TOP" and (keep_preterminals or not is_preterminal):
            spans.append((start, end - 1, node.label()))
        return end

    walk(tree, 0)
    return spans


def task_labels(example: dict, task: str) -> list[str]:
    """The labels one sentence carries for a task (``Task.labels_of``: one per token, entity,
    arc, phrase or argument)."""
    return TASK_CLASSES[check_tasks(task)[0]].labels_of(example)


def label_counts(split: datasets.Dataset, task: str) -> Counter:
    """How often each label of a task occurs in a split (items as in ``task_labels``)."""
    kind = TASK_CLASSES[check_tasks(task)[0]]  # looked up once, not per sentence
    counts: Counter = Counter()
    for values in zip(*(split[c] for c in kind.columns)):  # whole columns read: much faster than rows
        counts.update(kind.labels_of(dict(zip(kind.columns, values))))
    return counts


def all_label_counts(corpus: datasets.DatasetDict) -> dict[str, dict[str, Counter]]:
    """``{split: {task: label counts}}`` for every split and task."""
    return {name: {task: label_counts(corpus[name], task) for task in tqdm(TASKS, desc=f"count {name}", leave=False)}
            for name in SPLITS}


def split_sizes(corpus: datasets.DatasetDict, counts: dict[str, dict[str, Counter]]) -> pd.DataFrame:
    """Per split: sentences, tokens, the items each task labels, and SRL predicates."""
    rows = []
    for name in SPLITS:
        split = corpus[name]
        row = {"split": name, "sentences": len(split), "tokens": sum(len(t) for t in split["tokens"])}
        row.update({f"{task} items": sum(counts[name][task].values()) for task in TASKS})
        row["predicates"] = sum(len(f) for f in split["srl"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def inventory(counts: dict[str, Counter]) -> pd.DataFrame:
    """Per task: number of labels and the five most frequent, from one split's counts."""
    rows = []
    for task in TASKS:
        total = sum(counts[task].values())
        top = ", ".join(f"{label} {100 * n / total:.1f}%" for label, n in counts[task].most_common(5))
        rows.append({"task": task, "labels": len(counts[task]), "items": total, "most frequent": top})
    return pd.DataFrame(rows).set_index("task")


def drop_table(report: dict) -> pd.DataFrame:
    """Sentences dropped from EWT5, per reason and split, with UD's total and what was kept."""
    table = pd.DataFrame({s: [report["dropped"][s][r] for r in DROP_REASONS] for s in SPLITS}, index=list(DROP_REASONS))
    table.loc["dropped, all reasons"] = table.sum()
    table.loc["kept"] = [report["kept"][s] for s in SPLITS]
    table.loc["UD sentences"] = [report["ud_sentences"][s] for s in SPLITS]
    return table


def argument_lengths(split: datasets.Dataset) -> np.ndarray:
    return np.array([a["end"] - a["start"] + 1 for frames in split["srl"] for f in frames for a in f["arguments"]])


def sentence_lengths(split: datasets.Dataset) -> np.ndarray:
    return np.array([len(t) for t in split["tokens"]])


def pick_example(split: datasets.Dataset, min_words: int = 10, max_words: int = 16) -> dict:
    """The first sentence of moderate length with an entity, two predicates and a non-flat tree."""
    for example in split:
        n = len(example["tokens"])
        if (min_words <= n <= max_words and spans_from_bio(example["ner"]) and len(example["srl"]) >= 2
                and Tree.fromstring(example["tree"]).height() >= 5):
            return example
    raise ValueError(f"no sentence of {min_words}-{max_words} words with all five layers non-trivial")


def layers_table(example: dict) -> pd.DataFrame:
    """One sentence's word-level layers side by side; SRL as one BIO column per predicate."""
    table = pd.DataFrame({
        "word": example["tokens"], "xpos": example["xpos"], "head": example["heads"],
        "deprel": example["deprels"], "ner": example["ner"],
    })
    table.index.name = "i"
    for frame in example["srl"]:
        column = ["O"] * len(example["tokens"])
        column[frame["predicate"]] = "V"
        for arg in frame["arguments"]:
            for i in range(arg["start"], arg["end"] + 1):
                column[i] = ("B-" if i == arg["start"] else "I-") + arg["role"]
        table[frame["roleset"]] = column
    table["head"] = table["head"].astype(int)
    return table


def tokenizer_stats(tokenizer, corpus: datasets.DatasetDict, max_subwords: int,
                    sentences_per_split: int | None = None) -> pd.DataFrame:
    """Per split: subwords per word, share of words split, longest sentence in subwords, and how
    many sentences exceed the encoder's limit (``max_subwords`` including [CLS] and [SEP])."""
    rows = []
    for name in SPLITS:
        split = corpus[name]
        if sentences_per_split is not None:
            split = split.select(range(min(sentences_per_split, len(split))))
        pieces_per_word, lengths = [], []
        for tokens in tqdm(split["tokens"], desc=f"tokenize {name}", leave=False):
            pieces = [len(p) for p in tokenizer(tokens, add_special_tokens=False)["input_ids"]]
            pieces_per_word.extend(max(p, 1) for p in pieces)  # a word the tokenizer drops still gets one slot
            lengths.append(sum(pieces) + 2)
        pieces_per_word, lengths = np.array(pieces_per_word), np.array(lengths)
        rows.append({
            "split": name, "sentences": len(split),
            "subwords per word": pieces_per_word.mean(),
            "words split (%)": 100 * (pieces_per_word > 1).mean(),
            "longest (subwords)": int(lengths.max()),
            f"over {max_subwords} subwords": int((lengths > max_subwords).sum()),
        })
    return pd.DataFrame(rows).set_index("split")
