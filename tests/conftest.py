"""Shared fixtures. Unit tests use a tiny random-init encoder and small slices of the real data.

The data comes from the project's data folder, fetched from upstream or from the mirror named
by MTLHEADS_DATA_MIRROR (`make test` runs `make data` first).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub look-ups from tests: fail fast instead
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from mtlheads.data import sources


@pytest.fixture(scope="session")
def ud_dir() -> Path:
    return sources.fetch("UD_English-EWT")


@pytest.fixture(scope="session")
def uner_dir() -> Path:
    return sources.fetch("UNER_English-EWT")


@pytest.fixture(scope="session")
def propbank_dir() -> Path:
    return sources.fetch("propbank-release")


def head_lines(path: Path, sentences: int) -> str:
    """The first ``sentences`` blank-line-separated blocks of a file, as text."""
    out, seen = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            out.append(line)
            if not line.strip():
                seen += 1
                if seen == sentences:
                    break
    return "".join(out)


def block_containing(path: Path, needle: str) -> str:
    """The first blank-line-separated block of a file that contains ``needle``."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for block in text.split("\n\n"):
        if needle in block:
            return block.strip("\n") + "\n\n"
    raise AssertionError(f"{needle!r} not in {path}")


@pytest.fixture
def tiny():
    from mtlheads.encoder import tiny_encoder

    return tiny_encoder()


def fit_batch(model, batch: dict, head: str, steps: int, lr: float) -> tuple[float, float]:
    """Train ``model`` on one collated ``batch`` with Adam for ``steps`` steps of ``head``'s loss;
    the loss before the first step and after the last (a test that a head can fit a batch)."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = model.losses(batch)[head]
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, float(loss.detach())
