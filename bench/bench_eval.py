"""Evaluation batches on the CPU: ``train.evaluate`` with batches of 64 sentences (its first
default) against 16 (``train.eval_batch_size`` on the CPU), on the same model and sentences.

Chapter 2's kind of evaluation, one thread as in a worker: an STL DEP model and an MTL-5 model
(the pretrained encoder, decoders fresh) on the `default` profile's dev sentences (200) and test
sentences (600), in length order either way. A batch costs its padded subwords, and batches of
16 pad less. Rounds alternate; the best of two each. Prints the padded subwords, the seconds,
the ratio and whether the scores agree (rounding in the matrix products differs with the batch's
shape, so a near-tie in an untrained decoder can fall the other way).

    .venv/bin/python bench/bench_eval.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlheads.data import ewt5
from mtlheads.train import TrainConfig, build_model, corpus_split, evaluate

SIZES = (64, 16)


def padded(lengths: list[int], batch_size: int) -> int:
    """Subwords the encoder computes on, batches of ``batch_size`` in length order."""
    ordered = sorted(lengths)
    return sum(max(ordered[i:i + batch_size]) * len(ordered[i:i + batch_size]) for i in range(0, len(ordered), batch_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = ewt5.load()
    train = corpus_split(corpus, "train", 200)
    for tasks in (("dep",), ("pos", "ner", "dep", "con", "srl")):
        model = build_model(TrainConfig(tasks=tasks), train)
        name = "STL DEP" if len(tasks) == 1 else "MTL-5"
        for split, n in (("dev", 200), ("test", 600)):
            sentences = corpus_split(corpus, split, n)
            lengths = model.encoder.subword_counts([s["tokens"] for s in sentences])
            evaluate(model, sentences[:16], batch_size=16)  # warm-up
            seconds, scores = {b: [] for b in SIZES}, {}
            for _ in range(2):
                for b in SIZES:
                    start = time.perf_counter()
                    scores[b] = evaluate(model, sentences, batch_size=b)
                    seconds[b].append(time.perf_counter() - start)
            base, fast = min(seconds[64]), min(seconds[16])
            same = "the same scores" if scores[64] == scores[16] else "scores differ at rounding level"
            print(f"{name}, {n} {split} sentences: padded subwords {padded(lengths, 64)} against "
                  f"{padded(lengths, 16)}; batches of 64 {base:.2f} s, of 16 {fast:.2f} s ({base / fast:.2f}x), {same}")


if __name__ == "__main__":
    main()
