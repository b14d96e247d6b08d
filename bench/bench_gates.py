"""Overhead of gated training over ungated training, in the same process on the same batches.

Times full training steps (forward, backward, optimiser) of an STL POS model with and without
Hard-Concrete head gates; the target is an overhead under 15%.

    .venv/bin/python bench/bench_gates.py [--steps 30]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from mtlheads.data import ewt5
from mtlheads.train import TrainConfig, build_model, corpus_split


def time_steps(config: TrainConfig, train_set: list[dict], batches: list[list[int]]) -> float:
    torch.manual_seed(0)
    model = build_model(config, train_set)
    model.train()
    decoder = model.decoders["pos"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(idx):
        sentences = [train_set[i] for i in idx]
        out = model.encode(model.encoder.tokenize([s["tokens"] for s in sentences]))
        loss = decoder.loss(out.words, out.word_mask, decoder.targets(sentences, max(len(s["tokens"]) for s in sentences)))
        if model.gates is not None:
            loss = loss + 0.01 * model.gates.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for idx in batches:
        step(idx)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    train_set = corpus_split(ewt5.load(), "train", 2000)
    order = sorted(range(len(train_set)), key=lambda i: len(train_set[i]["tokens"]))
    batches = [order[i:i + 16] for i in range(0, len(order), 16)]
    batches = random.Random(0).sample(batches, args.steps)
    plain = time_steps(TrainConfig(tasks=("pos",)), train_set, batches)
    gated = time_steps(TrainConfig(tasks=("pos",), gate_lambda=0.01), train_set, batches)
    plain_again = time_steps(TrainConfig(tasks=("pos",)), train_set, batches)
    plain = min(plain, plain_again)
    print(f"{args.steps} training steps, batch 16: ungated {plain:.2f} s, gated {gated:.2f} s, "
          f"overhead {100 * (gated / plain - 1):+.1f}% (target < 15%)")


if __name__ == "__main__":
    main()
