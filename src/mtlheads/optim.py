"""The optimiser, the learning-rate schedule and the step loop every trainer of the book uses.

``optimise`` is the one training loop: the Stem Cell trainer (``train.train``: sampled, joint
or gated batches of EWT5 sentences, with dev evaluations) and the multi-head trainer
(``multihead.fit``: mixed batches routed to their heads) differ only in how a step's loss is
made and what happens after a step.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from mtlheads import devices


def adamw(groups: list[dict]) -> torch.optim.AdamW:
    """AdamW over parameter ``groups`` (each with its ``lr``); fused: one kernel for all the
    parameters (about 20% faster a step on the CPU)."""
    return torch.optim.AdamW(groups, fused=True)


def split_parameters(model: nn.Module, exclude: tuple[nn.Parameter, ...] = ()) -> tuple[list, list, list]:
    """``model``'s trainable parameters as (pretrained, new, both), each in the model's order:
    ``new`` those of ``model.new_parameters()`` (the layers that start untrained, which the
    trainers give their own learning rate), ``pretrained`` the others; ``exclude`` (head gates,
    which have their own optimiser) in neither."""
    new_ids = {id(p) for p in model.new_parameters()}
    skip = {id(p) for p in exclude}
    both = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
    return [p for p in both if id(p) not in new_ids], [p for p in both if id(p) in new_ids], both


def warmup_then_decay(optimizer: torch.optim.Optimizer, total: int, warmup: float,
                      decay: bool = True) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's learning rate rises linearly over the first ``warmup`` share of ``total``
    steps (at least one), then falls linearly to zero at the last (``decay``) or stays (a
    constant rate, so that a checkpoint part-way is a shorter run's end)."""
    warm = max(1, int(warmup * total))
    if not decay:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))


def optimise(total: int, step_loss: Callable[[int], tuple[torch.Tensor, dict[str, torch.Tensor]]],
             optimizers: list[torch.optim.Optimizer], schedule, clipped: list[nn.Parameter], clip: float, device,
             desc: str, progress: bool = True, after_step: Callable[[int], bool] | None = None) -> int:
    """Run up to ``total`` steps; returns how many ran. Step ``s`` (1-based): ``step_loss(s)``
    gives the loss to minimise and the parts to show on the progress bar (0-dim tensors, read
    back every tenth step only, so a GPU is not made to wait); every optimiser's gradients are
    cleared, the loss back-propagated, the gradients of ``clipped`` clipped to norm ``clip``,
    every optimiser stepped, then ``schedule``. ``after_step(s)`` returning True stops early."""
    bar = tqdm(total=total, desc=desc, disable=not progress)
    step = 0
    for step in range(1, total + 1):
        loss, parts = step_loss(step)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(clipped, clip)
        for optimizer in optimizers:
            optimizer.step()
        schedule.step()
        bar.update(1)
        if progress and (step % 10 == 0 or step == total):
            bar.set_postfix({name: f"{float(value):.3f}" for name, value in parts.items()})
        if after_step is not None and after_step(step):
            break
    bar.close()
    devices.synchronize(device)
    return step
