"""Where a training step's time goes, for every model the book trains, against the step before
the throughput work (issue 18), both run in this process on the same data.

Models: STL runs of the five Stem Cell decoders and MTL-5 joint (chapter 2's ``default``
recipe: batches of 8 EWT5 sentences, frozen word embeddings), chapter 6's three-head model and
chapter 7's QA + summarisation model (192-subword inputs, batches of 8, bottom four layers
frozen). Each step is split into: data (tokenising, word dropout, targets; collating for
chapters 6-7), encoder forward, decoder (the heads' losses), backward, optimiser (clipping and
the fused AdamW step).

The baseline is the previous step: batches bucketed by word count (17% padding in subwords on
chapter 2's sentences, against 2% when bucketed by subwords, then words), and attention scores
scaled and masked out of place, as transformers' eager attention does
(``dropout.eager_attention`` does it in place; the heads' ``attention_probabilities`` too).
Stem Cell models are timed over the same sentences both ways (the bucketing decides which go
together); rounds alternate between the two ways, so drifts of the machine's speed fall on both.

    .venv/bin/python bench/bench_step.py [--sentences 240] [--rounds 2] [--models pos,srl,...]
"""

from __future__ import annotations

import argparse
import random
import time
from contextlib import contextmanager

import torch
from transformers import AttentionInterface

from mtlheads import dropout, heads, numreason, optim, profiles, readersum
from mtlheads.data import ewt5
from mtlheads.train import TrainConfig, build_model, corpus_split, length_buckets, word_dropout

PHASES = ("data", "encoder", "decoder", "backward", "optimiser")
STEM_CELL = {"pos": ("pos",), "ner": ("ner",), "dep": ("dep",), "con": ("con",), "srl": ("srl",),
             "mtl5": ("pos", "ner", "dep", "con", "srl")}
MULTIHEAD = {"ch6": numreason, "ch7": readersum}


drop = dropout.drop  # (the attention functions' argument ``dropout`` is the probability)


def plain_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The baseline: ``dropout.eager_attention`` with transformers' out-of-place scaling and mask."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = drop(torch.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


ours_probabilities = heads.attention_probabilities


def plain_probabilities(q, k, mask, causal):
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    if mask is None and causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


@contextmanager
def way(baseline: bool):
    """The baseline's attention functions in this block (``baseline``), else ours."""
    AttentionInterface.register(dropout.ATTENTION, plain_attention if baseline else dropout.eager_attention)
    heads.attention_probabilities = plain_probabilities if baseline else ours_probabilities
    try:
        yield
    finally:
        AttentionInterface.register(dropout.ATTENTION, dropout.eager_attention)
        heads.attention_probabilities = ours_probabilities


class Clock:
    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self.last
        self.last = now


def adamw_of(model):
    pretrained, new, trained = optim.split_parameters(model)
    return optim.adamw([{"params": pretrained, "lr": 1e-5}, {"params": new, "lr": 1e-4}]), trained


def phase_seconds(model, steps: dict[bool, list], forward, items: int, rounds: int) -> dict[bool, dict[str, float]]:
    """Seconds per item in each phase, baseline (True) and ours (False). ``steps[way]`` lists each
    step's input; ``forward(step, clock)`` makes its loss, lapping ``data``, ``encoder`` and
    ``decoder``; the backward pass, clipping and the fused AdamW step are timed here."""
    optimizer, trained = adamw_of(model)
    model.train()
    out = {True: dict.fromkeys(PHASES, 0.0), False: dict.fromkeys(PHASES, 0.0)}
    for r in range(rounds):
        for baseline in ((True, False) if r % 2 == 0 else (False, True)):
            with way(baseline):
                clock = Clock()
                for step in steps[baseline]:
                    loss = forward(step, clock)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    clock.lap("backward")
                    torch.nn.utils.clip_grad_norm_(trained, 1.0)
                    optimizer.step()
                    clock.lap("optimiser")
            for phase, seconds in clock.seconds.items():
                out[baseline][phase] += seconds / items / rounds
    return out


def stem_cell_seconds(tasks, sentences, rounds: int) -> dict[bool, dict[str, float]]:
    """Per sentence, over the same sentences both ways (bucketed by words for the baseline)."""
    config = TrainConfig(tasks=tasks, mtl_mode="joint", **profiles.section_knobs(profiles.load("default"), "stem_cell"))
    model = build_model(config, sentences)
    enc, tok = model.encoder, model.tokenizer
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    words = [len(s["tokens"]) for s in sentences]
    subwords = enc.subword_counts([s["tokens"] for s in sentences])
    steps = {True: length_buckets(words, config.batch_size, random.Random(0)),
             False: length_buckets(list(zip(subwords, words)), config.batch_size, random.Random(0))}
    generator = torch.Generator().manual_seed(0)

    def forward(idx, clock):
        chosen = [sentences[i] for i in idx]
        batch = word_dropout(enc.tokenize([s["tokens"] for s in chosen]), config.word_dropout, tok.mask_token_id,
                             special, generator)
        targets = {t: model.decoders[t].targets(chosen, max(words[i] for i in idx)) for t in tasks}
        clock.lap("data")
        states = model.encode(batch)
        clock.lap("encoder")
        loss = sum(model.decoders[t].loss(states.words, states.word_mask, targets[t]) for t in tasks)
        clock.lap("decoder")
        return loss

    return phase_seconds(model, steps, forward, len(sentences), rounds)


def multihead_seconds(module, steps: int, rounds: int) -> dict[bool, dict[str, float]]:
    """Per example, on the same batches both ways."""
    config = module.profile_configs(profiles.load("default"))[0]
    model = module.build(config)
    examples = module.training_examples(config, model.tokenizer)
    random.Random(0).shuffle(examples)
    chosen = [examples[i * config.batch_size:(i + 1) * config.batch_size] for i in range(steps)]

    def forward(step_examples, clock):
        batch = model.collate(step_examples)
        clock.lap("data")
        states = model.subword_states(batch["input_ids"], batch["attention_mask"])
        clock.lap("encoder")
        loss = sum(model.decoders[name].batch_loss(states, batch, targets) for name, targets in batch["targets"].items())
        clock.lap("decoder")
        return loss

    return phase_seconds(model, {True: chosen, False: chosen}, forward, steps * config.batch_size, rounds)


def report(name: str, seconds: dict[bool, dict[str, float]], unit: str) -> None:
    base, ours = sum(seconds[True].values()), sum(seconds[False].values())
    parts = "  ".join(f"{p} {1000 * seconds[False][p]:5.1f} ({1000 * seconds[True][p]:5.1f})" for p in PHASES)
    print(f"{name:5} ms/{unit}: {parts}")
    print(f"{'':5} total {1000 * ours:6.1f} against {1000 * base:6.1f}: {base / ours:.2f}x "
          f"({1 / ours:.1f} against {1 / base:.1f} {unit}s/s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=240, help="EWT5 training sentences per Stem Cell model")
    parser.add_argument("--steps", type=int, default=8, help="steps of 8 examples per chapter 6-7 model")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join([*STEM_CELL, *MULTIHEAD]),
                        help=f"comma-separated, of {', '.join([*STEM_CELL, *MULTIHEAD])}")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in STEM_CELL and m not in MULTIHEAD]
    if unknown:
        parser.error(f"unknown models {unknown}; valid: {', '.join([*STEM_CELL, *MULTIHEAD])}")
    torch.set_num_threads(2)
    print("per phase: ours (baseline)")
    sentences = corpus_split(ewt5.load(), "train", args.sentences) if set(models) & set(STEM_CELL) else []
    for name in models:
        if name in STEM_CELL:
            report(name, stem_cell_seconds(STEM_CELL[name], sentences, args.rounds), "sentence")
        else:
            report(name, multihead_seconds(MULTIHEAD[name], args.steps, args.rounds), "example")


if __name__ == "__main__":
    main()
