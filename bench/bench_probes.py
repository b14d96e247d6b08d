"""Probe throughput: the vectorised probes against a naive per-head Python loop, same run.

Both read the same encoder outputs (one forward pass per batch, timed separately) and score all
five probes on all heads with centroids built on the scored data, and chapter 4's free baselines:
the four positional heads of the attention probes (previous word, next word, itself, [CLS]) and
the majority label of the value probes. The naive loop visits one head at a time and one item at
a time, as a direct transcription of the definitions would. The two must give the same counts,
which this script checks.

    .venv/bin/python bench/bench_probes.py [--sentences 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mtlheads import probes
from mtlheads.data import ewt5
from mtlheads.encoder import load_encoder
from mtlheads.train import corpus_split


def naive(encoder, sentences: list[dict]) -> dict[str, np.ndarray]:
    """Per head, per item, in Python: correct counts per (label, layer, head), labels as in ``probes``."""
    with torch.no_grad():
        outs = [encoder.encode([s["tokens"]], capture=True) for s in sentences]
    L, H = encoder.num_layers, encoder.num_heads
    counts = {}
    for task in ewt5.TASKS:
        items = [(i, item) for i, s in enumerate(sentences) for item in probes.gold_items(s, task)]
        labels, y = probes.label_index([item[-1] for _, item in items])
        correct = np.zeros((len(labels), L, H))
        for layer in range(L):
            for head in range(H):
                if task in probes.ATTENTION_TASKS:
                    most_of = [out.attentions[0, layer, head].argmax(-1).tolist() for out in outs]
                    for (i, item), label in zip(items, y):
                        most = most_of[i]
                        if task == "dep":
                            d, p = item[0], item[1]
                            hit = most[d] == p or most[p] == d
                        else:
                            p, s, e = item[0], item[1], item[2]
                            hit = any(most[w] == p for w in range(s, e + 1)) or s <= most[p] <= e
                        correct[label, layer, head] += hit
                else:
                    vectors = [outs[i].contexts[0, layer, head, item[0]:item[1] + 1].mean(0) for i, item in items]
                    centroids = []
                    for c in range(len(labels)):
                        members = [v for v, label in zip(vectors, y) if label == c]
                        centroids.append(torch.stack(members).mean(0))
                    for v, label in zip(vectors, y):
                        sims = [float(torch.cosine_similarity(v, c, dim=0)) for c in centroids]
                        correct[label, layer, head] += int(np.argmax(sims)) == label
        counts[task] = correct
        if task in probes.ATTENTION_TASKS:
            counts[task, "positional"] = naive_positional(task, sentences, items, y, len(labels))
        else:
            counts[task, "majority"] = 100 * max(np.bincount(y)) / len(y)
    return counts


def naive_positional(task: str, sentences: list[dict], items: list, y: np.ndarray, num_labels: int) -> np.ndarray:
    """Per positional head and item, in Python: (labels, 1, 4) counts, heads in ``probes.POSITIONAL`` order."""
    correct = np.zeros((num_labels, 1, len(probes.POSITIONAL)))
    for head in range(len(probes.POSITIONAL)):
        for (i, item), label in zip(items, y):
            n = len(sentences[i]["tokens"])

            def attends(q):  # the word a position attends to under this head ([CLS] at 0, words at 1..n)
                return [max(q - 1, 0), min(q + 1, n), q, 0][head]

            if task == "dep":
                d, p = item[0], item[1]
                hit = attends(d) == p or attends(p) == d
            else:
                p, s, e = item[0], item[1], item[2]
                hit = any(attends(w) == p for w in range(s, e + 1)) or s <= attends(p) <= e
            correct[label, 0, head] += hit
    return correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=100)
    args = parser.parse_args()
    sentences = corpus_split(ewt5.load(), "test", args.sentences)
    encoder = load_encoder("minilm")

    start = time.perf_counter()
    fast = probes.probe_all(probes.read_heads(encoder, sentences, progress=False))
    baselines = {(t, "positional"): probes.positional_probe(t, sentences).correct for t in probes.ATTENTION_TASKS}
    baselines |= {(t, "majority"): probes.majority_accuracy(fast[t, probes.SAME]) for t in probes.CENTROID_TASKS}
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive(encoder, sentences)
    looped = time.perf_counter() - start

    for (task, _), probe in fast.items():
        if not np.allclose(probe.correct, slow[task]):
            raise SystemExit(f"{task}: the vectorised and naive probes disagree")
    for key, value in baselines.items():
        if not np.allclose(value, slow[key]):
            raise SystemExit(f"{key}: the vectorised and naive baselines disagree")
    n = len(sentences)
    print(f"{n} test sentences, 5 probes, {encoder.num_layers * encoder.num_heads} heads and the free baselines "
          f"(encoder passes included): "
          f"vectorised {n / vectorised:.1f} sentences/s, naive per-head loop {n / looped:.2f} sentences/s, "
          f"ratio {looped / vectorised:.0f}x; counts identical")


if __name__ == "__main__":
    main()
