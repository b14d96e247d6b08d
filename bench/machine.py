"""The machine's float32 matrix-multiply throughput, so that times taken on different machines
can be compared (``.ci/run`` prints it before its stages; ``bench_train`` uses it as its peak).

    .venv/bin/python bench/machine.py [--threads 2] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import torch


def matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of ``repeats`` float32 products of two ``size`` x ``size`` matrices (after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    probe = 2 * 2048**3 / matmul_flops(repeats=1)  # seconds a product takes
    repeats = max(3, int(args.seconds / probe))
    best = max(matmul_flops(repeats=repeats) for _ in range(2))
    print(f"float32 matmul, {args.threads} threads: {best / 1e9:.0f} GFLOP/s ({torch.backends.cpu.get_cpu_capability()})")


if __name__ == "__main__":
    main()
