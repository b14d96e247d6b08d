"""Training and evaluation throughput of mtlheads' trainer against a plain transformers baseline.

Both run in this process on the same POS data (PTB tags of EWT5), the same encoder and the same
batch size. The baseline is what a user would otherwise write: AutoModelForTokenClassification
(labels on each word's first subword) with transformers' Trainer and its defaults (random batch
order, padding to the longest in each batch). Also prints the achieved FLOP/s of our training
steps as a fraction of a float32 matrix multiply measured in the same run, and what freezing
the word embeddings (the `default` profile's ``freeze_word_embeddings``) saves in our trainer.

    .venv/bin/python bench/bench_train.py [--sentences 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer,
                          TrainingArguments)
from transformers import logging as hf_logging

from machine import matmul_flops  # bench/ is on the path when a benchmark runs
from mtlheads.data import ewt5
from mtlheads.encoder import resolve_encoder
from mtlheads.train import TrainConfig, build_model, evaluate, train


def training_flops(model, subwords: int, attention_subwords_sq: int) -> float:
    """6 x non-embedding encoder parameters per subword, plus attention's score and mix products."""
    enc = model.encoder.model
    params = sum(p.numel() for n, p in enc.named_parameters() if not n.startswith("embeddings"))
    cfg = enc.config
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * attention_subwords_sq  # QK^T and AV, forward
    return 6 * params * subwords + 3 * attention


def ours(corpus, n: int, batch_size: int, freeze_word_embeddings: bool = False):
    config = TrainConfig(tasks=("pos",), epochs=1, train_sentences=n, dev_sentences=8, test_sentences=8,
                         evaluations=1, batch_size=batch_size, freeze_word_embeddings=freeze_word_embeddings)
    result = train(config, corpus, progress=True)
    train_set = list(corpus["train"].select(range(n)))
    model = build_model(config, train_set)
    model.load_state_dict(result.state_dict)
    start = time.perf_counter()
    evaluate(model, train_set)
    eval_seconds = time.perf_counter() - start
    lengths = [len(model.encoder.tokenizer(s["tokens"], is_split_into_words=True)["input_ids"]) for s in train_set]
    flops = training_flops(model, sum(lengths), sum(l * l for l in lengths))
    return {"train sentences/s": n / result.train_seconds, "train subwords/s": sum(lengths) / result.train_seconds,
            "eval sentences/s": n / eval_seconds, "train FLOP/s": flops / result.train_seconds}


def baseline(corpus, n: int, batch_size: int):
    hf_logging.set_verbosity_error()
    path = resolve_encoder("minilm")
    train_set = corpus["train"].select(range(n))
    labels = sorted({t for s in corpus["train"] for t in s["xpos"]})
    index = {t: i for i, t in enumerate(labels)}
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels), attn_implementation="eager")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(example):
        enc = tokenizer(example["tokens"], is_split_into_words=True, truncation=True)
        previous, tags = None, []
        for w in enc.word_ids():
            tags.append(-100 if w is None or w == previous else index[example["xpos"][w]])
            previous = w
        enc["labels"] = tags
        return enc

    data = train_set.map(encode, remove_columns=train_set.column_names, keep_in_memory=True)  # no cache file in the EWT5 build
    subwords = sum(len(x) for x in data["input_ids"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size,
                                 per_device_eval_batch_size=64, num_train_epochs=1, learning_rate=5e-5,
                                 report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                                 disable_tqdm=False, seed=1)
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        trainer.predict(data)
        eval_seconds = time.perf_counter() - start
    return {"train sentences/s": n / train_seconds, "train subwords/s": subwords / train_seconds,
            "eval sentences/s": n / eval_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    corpus = ewt5.load()
    peak = matmul_flops()
    base = baseline(corpus, args.sentences, args.batch_size)
    mine = ours(corpus, args.sentences, args.batch_size)
    frozen = ours(corpus, args.sentences, args.batch_size, freeze_word_embeddings=True)
    print(f"\nPOS, {args.sentences} sentences, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(f"{'':22}{'baseline':>12}{'mtlheads':>12}{'ratio':>8}")
    for key in ("train sentences/s", "train subwords/s", "eval sentences/s"):
        print(f"{key:22}{base[key]:12.1f}{mine[key]:12.1f}{mine[key] / base[key]:8.2f}x")
    print(f"word embeddings frozen: {frozen['train sentences/s']:.1f} train sentences/s, "
          f"{frozen['train sentences/s'] / mine['train sentences/s']:.2f}x our trainer's, "
          f"{frozen['train sentences/s'] / base['train sentences/s']:.2f}x the baseline's")
    print(f"float32 matmul: {peak / 1e9:.1f} GFLOP/s; our training steps: {mine['train FLOP/s'] / 1e9:.1f} GFLOP/s "
          f"({100 * mine['train FLOP/s'] / peak:.0f}% of it)")


if __name__ == "__main__":
    main()
