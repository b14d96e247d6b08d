"""Generation throughput of the summarisation head: greedy and beam search, with and without
cached keys/values, in the same run on the same SciTLDR-A test abstracts.

The head is chapter 7's (copying, restricted output vocabulary), freshly initialised from MiniLM
(GenBERT-style; speed does not depend on training).
Cached and recomputed decoding produce the same tokens (tests/test_heads.py), so each pair of
rows does the same work in a different way.

    .venv/bin/python bench/bench_generate.py [--documents 32] [--max-new 40]
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlheads import readersum
from mtlheads.data import scitldr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--max-new", type=int, default=40)
    args = parser.parse_args()
    config = readersum.ReaderSumConfig(max_summary=args.max_new + 2)
    model = readersum.build(config)
    model.eval()
    tok = model.tokenizer
    docs = [d["document"] for d in scitldr.load("test")[:args.documents]]
    enc = tok(docs, truncation=True, max_length=config.max_source, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model.subword_states(enc["input_ids"], enc["attention_mask"])
    mask = enc["attention_mask"].bool()
    # Decode the full length: without an end token, every setting runs max_new steps.
    never = tok.vocab_size + 1
    rows = {}
    for beams in (1, 4):
        for use_cache in (True, False):
            start = time.perf_counter()
            out = model.decoders["summ"].generate(states, mask, tok.cls_token_id, never, max_new=args.max_new,
                                                 beams=beams, use_cache=use_cache, source=enc["input_ids"])
            seconds = time.perf_counter() - start
            rows[(beams, use_cache)] = (seconds, sum(len(o) for o in out))
    print(f"{args.documents} abstracts, {args.max_new} tokens each, encoder pass excluded:")
    for (beams, use_cache), (seconds, tokens) in rows.items():
        print(f"  {'greedy' if beams == 1 else f'beam {beams}':7} {'cached' if use_cache else 'recomputed':10} "
              f"{args.documents / seconds:7.2f} summaries/s  {tokens / seconds:8.1f} tokens/s")
    for beams in (1, 4):
        ratio = rows[(beams, False)][0] / rows[(beams, True)][0]
        print(f"  {'greedy' if beams == 1 else f'beam {beams}'}: cached keys/values {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
