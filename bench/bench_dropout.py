"""The cheap dropout mask (``mtlheads.dropout``) against torch's, in this process:

- the dropout op alone, on chapter 7's attention probabilities (8 x 12 heads x 192 x 192) and
  hidden states (8 x 192 x 384);
- training steps of chapter 7's QA + summarisation model (``readersum``, the ``default``
  profile's settings: 192-subword inputs, batches of 8, the bottom four layers frozen), the
  same model and batches with ``dropout.install(model, fast=False)`` (torch's dropout, eager
  attention) and with ``fast=True``;
- training steps of a chapter 2 STL run (POS and DEP, batches of 8 sentences, frozen word
  embeddings), both ways.

Rounds alternate between the two ways, so drifts of the machine's speed fall on both.

    .venv/bin/python bench/bench_dropout.py [--steps 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as F

from mtlheads import dropout, profiles, readersum
from mtlheads.data import ewt5
from mtlheads.train import TrainConfig, build_model, corpus_split, length_buckets


def per_call(f, repeats: int = 20) -> float:
    f()
    start = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - start) / repeats


def compare(model, step, batches, rounds: int) -> dict[bool, float]:
    """Seconds per training step with torch's dropout (False) and the cheap one (True)."""
    seconds = {False: 0.0, True: 0.0}
    for _ in range(rounds):
        for fast in (False, True):
            dropout.install(model, fast)
            step(batches[0])  # warm-up
            start = time.perf_counter()
            for batch in batches[1:]:
                step(batch)
            seconds[fast] += (time.perf_counter() - start) / (len(batches) - 1) / rounds
    return seconds


def readersum_step_seconds(knobs: dict, steps: int, rounds: int) -> dict[bool, float]:
    config = readersum.profile_configs(knobs)[0]
    model = readersum.build(config)
    examples = readersum.training_examples(config, model.tokenizer)[:(steps + 1) * config.batch_size]
    batches = [model.collate(examples[i:i + config.batch_size]) for i in range(0, len(examples), config.batch_size)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, fused=True)
    model.train()

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        sum(model.losses(batch).values()).backward()
        optimizer.step()

    return compare(model, step, batches, rounds)


def stl_step_seconds(task: str, corpus, steps: int, rounds: int) -> dict[bool, float]:
    config = TrainConfig(tasks=(task,), batch_size=8, freeze_word_embeddings=True, srl_unary_loss=1.0)
    sentences = corpus_split(corpus, "train", 400)
    model = build_model(config, sentences)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], fused=True)
    buckets = length_buckets([len(s["tokens"]) for s in sentences], config.batch_size, random.Random(0))
    batches = [[sentences[i] for i in idx] for idx in buckets[:steps + 1]]
    decoder = model.decoders[task]
    model.train()

    def step(batch):
        out = model.encode(model.encoder.tokenize([s["tokens"] for s in batch]))
        targets = decoder.targets(batch, max(len(s["tokens"]) for s in batch))
        optimizer.zero_grad(set_to_none=True)
        decoder.loss(out.words, out.word_mask, targets).backward()
        optimizer.step()

    return compare(model, step, batches, rounds)


def report(name: str, seconds: dict[bool, float]) -> None:
    print(f"{name}: torch's dropout {seconds[False] * 1e3:.0f} ms/step, ours {seconds[True] * 1e3:.0f} ms/step "
          f"({seconds[False] / seconds[True]:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads")
    for shape in [(8, 12, 192, 192), (8, 192, 384)]:
        x = torch.rand(shape)
        theirs = per_call(lambda: F.dropout(x, 0.1, True))
        ours = per_call(lambda: dropout.drop(x, 0.1))
        print(f"dropout of {tuple(shape)}: torch {theirs * 1e3:.2f} ms, ours {ours * 1e3:.2f} ms ({theirs / ours:.2f}x)")
    knobs = profiles.load("default")
    report("chapter 7 training step (QA + summarisation, default)", readersum_step_seconds(knobs, args.steps, args.rounds))
    corpus = ewt5.load()
    for task in ("pos", "dep"):
        report(f"chapter 2 training step (STL {task.upper()}, batch 8)",
               stl_step_seconds(task, corpus, 3 * args.steps, args.rounds))


if __name__ == "__main__":
    main()
