"""Eisner decoding, width at once (``tasks.dep.eisner``) against span by span (the book's first
version, kept in the tests as the reference it must equal), on the same score matrices.

The matrices are what the DEP decoder builds: log-softmax arc scores of sentences of EWT's test
lengths, ROOT's column -1e9.

    .venv/bin/python bench/bench_eisner.py [--sentences 400]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mtlheads.data import ewt5
from mtlheads.tasks.dep import eisner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_tasks import loop_eisner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=400)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lengths = [len(s["tokens"]) for s in ewt5.load()["test"].select(range(args.sentences))]
    matrices = []
    for n in lengths:
        scores = np.full((n + 1, n + 1), -1e9)
        scores[:, 1:] = np.log(rng.dirichlet(np.ones(n + 1), size=n)).T
        matrices.append(scores)
    times = {}
    for decode in (loop_eisner, eisner, loop_eisner):
        start = time.perf_counter()
        heads = [decode(m) for m in matrices]
        times.setdefault(decode.__name__, []).append(time.perf_counter() - start)
        times.setdefault("heads", []).append(heads)
    assert all(h == times["heads"][0] for h in times["heads"])
    base, fast = min(times["loop_eisner"]), times["eisner"][0]
    print(f"{len(matrices)} sentences (mean {np.mean(lengths):.1f} words): span by span {base:.2f} s, "
          f"width at once {fast:.2f} s ({base / fast:.2f}x), the same heads")


if __name__ == "__main__":
    main()
