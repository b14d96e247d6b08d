"""Throughput of chapter 6's three-head model (span, generative, type heads on MiniLM), each
against a baseline run in the same process on the same SQuAD and arithmetic examples:

- training steps (examples/s): batches padded to their longest input, as ``MultiTaskModel.collate``
  does, against batches padded to the maximum input length (``padding="max_length"``, the
  default of transformers' QA examples);
- inference (questions/s): ``numreason.predict`` (inputs sorted by length, one encoder pass for
  all three heads) against one encoder pass per head over unsorted, max-length-padded batches;
- digit decoding of the generative head (answers/s) with and without cached keys/values.

The model is freshly initialised (speed does not depend on training), with chapter 6's
``default`` settings.

    .venv/bin/python bench/bench_numreason.py [--steps 12] [--questions 96]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from mtlheads import numreason


def padded_to(examples: list[dict], width: int, pad_id: int) -> list[dict]:
    """The examples with their ids padded to ``width`` (pad tokens, not attended, not tagged)."""
    return [{**e, "input_ids": e["input_ids"] + [pad_id] * (width - len(e["input_ids"])),
             "tag_mask": e["tag_mask"] + [False] * (width - len(e["tag_mask"]))} for e in examples]


def collate_max_length(model, examples: list[dict], pad_id: int, width: int) -> dict:
    lengths = [len(e["input_ids"]) for e in examples]
    batch = model.collate(padded_to(examples, width, pad_id))
    batch["attention_mask"] = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    return batch


def train_rate(model, examples, collate, steps: int, batch_size: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        chosen = examples[step * batch_size:(step + 1) * batch_size]
        loss = sum(model.losses(collate(chosen)).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return steps * batch_size / (time.perf_counter() - start)


@torch.no_grad()
def predict_per_head(model, items: list[dict], max_source: int, batch_size: int = 32) -> None:
    """The baseline: for each head, its own encoder pass over max-length-padded batches."""
    tok = model.tokenizer
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        enc = tok([c["question"] for c in chunk], [c["context"] for c in chunk], truncation="only_second",
                  max_length=max_source, padding="max_length", return_tensors="pt")
        mask = enc["attention_mask"].bool()
        generative = model.decoders["generation"]
        model.decoders["span"].decode(model.subword_states(enc["input_ids"], enc["attention_mask"]), mask)
        generative.generate(model.subword_states(enc["input_ids"], enc["attention_mask"]), mask, tok.cls_token_id,
                            tok.sep_token_id, max_new=generative.max_length - 1)
        model.decoders["answer_type"](model.subword_states(enc["input_ids"], enc["attention_mask"])).softmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--questions", type=int, default=96)
    args = parser.parse_args()
    config = numreason.NumReasonConfig(batch_size=8, max_source=192, frozen_layers=4)
    model = numreason.build(config)
    tok = model.tokenizer
    examples = numreason.training_examples(
        numreason.NumReasonConfig(span_examples=args.steps * 6, arithmetic_examples=args.steps * 2,
                                  max_source=config.max_source), tok)
    pad = tok.pad_token_id
    rates = {}
    train_rate(model, examples, model.collate, 1, config.batch_size)  # warm-up
    for name, collate in (("padded to the batch", model.collate),
                          ("padded to max length", lambda c: collate_max_length(model, c, pad, config.max_source))):
        torch.manual_seed(0)
        rates[name] = train_rate(model, examples, collate, args.steps, config.batch_size)
    print(f"training, {args.steps} steps of {config.batch_size} mixed span and arithmetic examples:")
    for name, rate in rates.items():
        print(f"  {name:22} {rate:7.1f} examples/s")
    print(f"  ratio: {rates['padded to the batch'] / rates['padded to max length']:.2f}x")

    _, held_out = numreason.squad_parts(config)
    items = numreason.arithmetic_items(held_out)[:args.questions // 2] + held_out[:args.questions // 2]
    random.Random(0).shuffle(items)
    start = time.perf_counter()
    numreason.predict(model, items, config.max_source, progress=False)
    ours = len(items) / (time.perf_counter() - start)
    start = time.perf_counter()
    predict_per_head(model, items, config.max_source)
    baseline = len(items) / (time.perf_counter() - start)
    print(f"inference, {len(items)} arithmetic and SQuAD questions, all three heads:")
    print(f"  one pass, sorted by length {ours:7.1f} questions/s")
    print(f"  a pass per head, max length {baseline:7.1f} questions/s")
    print(f"  ratio: {ours / baseline:.2f}x")

    enc = tok([i["question"] for i in items], [i["context"] for i in items], truncation="only_second",
              max_length=config.max_source, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model.subword_states(enc["input_ids"], enc["attention_mask"])
    never = tok.vocab_size + 1  # no end token: every answer runs the full length
    seconds = {}
    for use_cache in (True, False):
        start = time.perf_counter()
        model.decoders["generation"].generate(states, enc["attention_mask"].bool(), tok.cls_token_id, never,
                                              max_new=model.decoders["generation"].max_length - 1, use_cache=use_cache)
        seconds[use_cache] = time.perf_counter() - start
    digits = model.decoders["generation"].max_length - 1
    print(f"digit decoding, {len(items)} answers of {digits} digits, encoder pass excluded:")
    for use_cache in (True, False):
        print(f"  {'cached' if use_cache else 'recomputed':10} {len(items) / seconds[use_cache]:8.1f} answers/s")
    print(f"  ratio: {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    main()
