"""Chapter 3's gate paths side by side: ``pruning.gate_paths`` with two one-thread workers against
the same paths one after the other with two threads, in this process.

The trained models the paths start from are trained first (not timed, into the same temporary
run cache); then each side runs every path into that cache (its paths removed in between), so
the times are those of the gated phases alone, with the workers' start-up included. Also prints
the largest difference between the two sides' gate values (thread counts sum some gradients in
another order).

    .venv/bin/python bench/bench_gate_paths.py [--sentences 240] [--tasks pos,ner,dep,con]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtlheads import cache, pruning
from mtlheads.data import ewt5
from mtlheads.pruning import GatePathConfig
from mtlheads.train import TrainConfig, train_many


def timed(configs, corpus, workers: int, store: Path):
    for entry in store.glob("gatepath-*"):
        shutil.rmtree(entry)
    start = time.perf_counter()
    paths = pruning.gate_paths(configs, corpus, workers=workers)
    return time.perf_counter() - start, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=240)
    parser.add_argument("--tasks", default="pos,ner,dep,con")
    args = parser.parse_args()
    corpus = ewt5.load()
    bases = [TrainConfig(tasks=(t,), epochs=1, train_sentences=args.sentences, dev_sentences=100, test_sentences=50,
                         evaluations=1, batch_size=8, freeze_word_embeddings=True, srl_unary_loss=1.0)
             for t in args.tasks.split(",")]
    configs = [GatePathConfig(b, lambdas=(1e-3, 0.1, 10.0), steps=20, lr_gates=0.06, dev_sentences=100) for b in bases]
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        os.environ[cache.CACHE_DIR_VARIABLE] = folder
        train_many(bases, corpus, workers=2)
        serial, one_by_one = timed(configs, corpus, 1, Path(folder))
        parallel, side_by_side = timed(configs, corpus, 2, Path(folder))
    largest = max(float(np.abs(a.records - b.records).max()) for a, b in zip(one_by_one, side_by_side))
    print(f"\n{len(configs)} gate paths of 3 x 20 gate updates (batch 8) and 4 dev evaluations of 100 sentences")
    print(f"one after the other, {threads} threads each: {serial:.1f} s")
    print(f"two at a time, {max(1, threads // 2)} thread(s) each:  {parallel:.1f} s ({serial / parallel:.2f}x)")
    print(f"largest gate difference between the two: {largest:.1e}")


if __name__ == "__main__":
    main()
