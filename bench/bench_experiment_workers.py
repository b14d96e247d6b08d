"""Multi-head models side by side: ``reader.train_many`` (chapter 8's two-head model and its
exposure control, two seeds) with two one-thread workers against the same models one after the
other with two threads, in this process, each into an empty run cache.

The scale is chapter 8's `default` recipe (128-subword windows, two layers frozen, batches of 8)
with fewer examples. The wall-clock times include the workers' start-up, and both sides end with
every result read from the cache. Also prints the largest weight difference between the two (one
thread or two sum some gradients in another order).

    .venv/bin/python bench/bench_experiment_workers.py [--span 240] [--pairs 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from mtlheads import cache, reader


def timed(configs, workers: int):
    with tempfile.TemporaryDirectory() as store:
        os.environ[cache.CACHE_DIR_VARIABLE] = store
        start = time.perf_counter()
        results = reader.train_many(configs, workers=workers)
        return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span", type=int, default=240)
    parser.add_argument("--pairs", type=int, default=40)
    args = parser.parse_args()
    configs = [reader.ReaderConfig(span_examples=args.span, yesno_examples=args.pairs, batch_size=8, max_source=128,
                                   frozen_layers=2, lr=3e-4, lr_new=3e-3, seed=seed, device="cpu", **setting)
               for seed in (1, 2) for setting in ({}, {"yesno_labels": "shuffled"})]
    threads = torch.get_num_threads()
    serial, one_by_one = timed(configs, workers=1)
    parallel, side_by_side = timed(configs, workers=2)
    largest = max(float((a.state_dict[k].float() - b.state_dict[k].float()).abs().max())
                  for a, b in zip(one_by_one, side_by_side) for k in a.state_dict)
    print(f"\n{len(configs)} chapter 8 models of {args.span} span questions and {args.pairs} yes/no pairs "
          f"({one_by_one[0].steps} steps), {threads} threads")
    print(f"one after the other, {threads} threads each: {serial:.1f} s")
    print(f"two at a time, {max(1, threads // 2)} thread(s) each:  {parallel:.1f} s ({serial / parallel:.2f}x)")
    print(f"largest weight difference between the two: {largest:.1e}")


if __name__ == "__main__":
    main()
