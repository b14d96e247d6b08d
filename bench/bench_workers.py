"""Runs side by side: ``train_many`` with two one-thread workers against the same runs one after
the other with two threads, in this process, each into an empty run cache.

The runs are chapter 2's kind at a smaller scale (STL, batches of 8 sentences, frozen word
embeddings, the `default` profile's recipe). The wall-clock times include the workers' start-up
(a fresh Python that imports torch and loads the data), and both sides end with every result
read from the cache. Also prints the largest weight difference between the two: one thread or
two sum some gradients in another order, and Adam's step can turn a rounding difference in a
tiny gradient into a weight difference of up to the learning rate.

    .venv/bin/python bench/bench_workers.py [--sentences 480] [--tasks pos,ner,dep,con]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from mtlheads import cache
from mtlheads.data import ewt5
from mtlheads.train import TrainConfig, train_many


def timed(configs, corpus, workers: int):
    with tempfile.TemporaryDirectory() as store:
        os.environ[cache.CACHE_DIR_VARIABLE] = store
        start = time.perf_counter()
        results = train_many(configs, corpus, workers=workers)
        return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=480)
    parser.add_argument("--tasks", default="pos,ner,dep,con")
    args = parser.parse_args()
    corpus = ewt5.load()
    configs = [TrainConfig(tasks=(t,), epochs=1, train_sentences=args.sentences, dev_sentences=100,
                           test_sentences=200, evaluations=2, batch_size=8, freeze_word_embeddings=True,
                           srl_unary_loss=1.0) for t in args.tasks.split(",")]
    threads = torch.get_num_threads()
    serial, one_by_one = timed(configs, corpus, workers=1)
    parallel, side_by_side = timed(configs, corpus, workers=2)
    largest = max(float((a.state_dict[k].float() - b.state_dict[k].float()).abs().max())
                  for a, b in zip(one_by_one, side_by_side) for k in a.state_dict)
    print(f"\n{len(configs)} STL runs of {args.sentences} sentences, batch 8, {threads} threads")
    print(f"one after the other, {threads} threads each: {serial:.1f} s")
    print(f"two at a time, {max(1, threads // 2)} thread(s) each:  {parallel:.1f} s ({serial / parallel:.2f}x)")
    print(f"largest weight difference between the two: {largest:.1e}")


if __name__ == "__main__":
    main()
