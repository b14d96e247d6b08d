"""Heads ablated or patched: the causal tools for chapters 3-5, after TransformerLens' patching
helpers.

A head's output here is its context vector: its attention-weighted values, the slice of the
attention output projection's input that belongs to it (where ``Encoder`` gates heads; the
projection then mixes the heads). ``ablated`` replaces chosen heads' outputs by zero or by
their mean over reference inputs (``head_means``); ``patched`` replaces them by the outputs
another run recorded on the same inputs (``record_heads``), another model's say: activation
patching. Both are context managers that hook the projections' inputs for their block only and
leave no hook behind; they act after the encoder's own head gates.

    heads = np.zeros((encoder.num_layers, encoder.num_heads), bool); heads[2, 5] = True
    with patching.ablated(encoder, heads):              # zero-ablate layer 2's head 5
        out = encoder(batch)
    out = patching.patch_run(mtl.encoder, stl.encoder, batch, heads)  # STL's head in MTL
    with patching.patched_from(mtl.encoder, stl.encoder, heads):  # the same, for every batch
        scores = evaluate(mtl, sentences)
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterable

import numpy as np
import torch

from mtlheads.encoder import Encoder, EncoderOutput, WordBatch

Replace = Callable[[int, torch.Tensor], torch.Tensor]  # (layer, context) -> context


def check_heads(encoder: Encoder, heads) -> torch.Tensor:
    """``heads`` as a boolean (layers, heads) tensor; a ValueError naming its shape otherwise."""
    mask = torch.as_tensor(np.asarray(heads)).bool()
    shape = (encoder.num_layers, encoder.num_heads)
    if tuple(mask.shape) != shape:
        raise ValueError(f"heads must be a boolean (layers, heads) = {shape} mask, got shape {tuple(mask.shape)}")
    return mask


def _on_context(replace: Replace, i: int, module, args):
    (context,) = args
    return (replace(i, context),)


@contextmanager
def _replacing(encoder: Encoder, replace: Replace):
    """Within the block, each layer's attention-output input ``context`` becomes ``replace(i, context)``."""
    handles = [encoder.layer_part(layer, "attention_output").register_forward_pre_hook(partial(_on_context, replace, i))
               for i, layer in enumerate(encoder.layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _by_head(encoder: Encoder, context: torch.Tensor) -> torch.Tensor:
    return context.view(*context.shape[:-1], encoder.num_heads, encoder.head_dim)


def _swap(encoder: Encoder, mask: torch.Tensor, i: int, context: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``context`` with the heads ``mask[i]`` chooses taken from ``new`` (broadcast to (..., heads, head_dim))."""
    if not mask[i].any():
        return context
    chosen = mask[i].to(context.device).view(-1, 1)
    return torch.where(chosen, new.to(context.dtype), _by_head(encoder, context)).flatten(-2)


@contextmanager
def ablated(encoder: Encoder, heads, means: torch.Tensor | None = None):
    """Within the block, the chosen heads (boolean (layers, heads)) output zero, or with ``means``
    ((layers, heads, head_dim), from ``head_means``) their mean output at every position."""
    mask = check_heads(encoder, heads)
    if means is not None and tuple(means.shape) != (*mask.shape, encoder.head_dim):
        raise ValueError(f"means must be (layers, heads, head_dim) = {(*mask.shape, encoder.head_dim)}, "
                         f"got shape {tuple(means.shape)}")

    def replace(i, context):
        new = means[i].to(context.device) if means is not None else torch.zeros((), device=context.device)
        return _swap(encoder, mask, i, context, new)

    with _replacing(encoder, replace):
        yield


@torch.no_grad()
def record_heads(encoder: Encoder, batch: WordBatch) -> list[torch.Tensor]:
    """Every layer's head outputs on ``batch``: per layer (batch, subwords, heads * head_dim), as
    the output projection receives them (after any gates, ablation or patching in force)."""
    recorded: list[torch.Tensor | None] = [None] * encoder.num_layers

    def keep(i, context):
        recorded[i] = context.detach()
        return context

    with _replacing(encoder, keep):
        encoder(batch)
    return recorded


@torch.no_grad()
def head_means(encoder: Encoder, batches: Iterable[WordBatch]) -> torch.Tensor:
    """Each head's mean output (layers, heads, head_dim) over the real subwords of ``batches``
    (padding left out): what mean-ablation puts in its place."""
    total, count = torch.zeros(encoder.num_layers, encoder.num_heads, encoder.head_dim), 0
    for batch in batches:
        real = batch.attention_mask.bool()
        for i, context in enumerate(record_heads(encoder, batch)):
            total[i] += _by_head(encoder, context)[real.to(context.device)].sum(0).cpu()
        count += int(real.sum())
    if not count:
        raise ValueError("head_means needs at least one batch with a real subword")
    return total / count


@contextmanager
def patched(encoder: Encoder, heads, source: list[torch.Tensor]):
    """Within the block, the chosen heads output what ``source`` (``record_heads`` of another run on
    the same batch) holds for them; the other heads compute as usual, from the patched states."""
    mask = check_heads(encoder, heads)
    if len(source) != encoder.num_layers:
        raise ValueError(f"source must hold the {encoder.num_layers} layers' head outputs, got {len(source)}")

    def replace(i, context):
        if tuple(source[i].shape) != tuple(context.shape):
            raise ValueError(f"layer {i}: the recorded head outputs are {tuple(source[i].shape)}, this run's "
                             f"{tuple(context.shape)}: patch a run on the same batch")
        return _swap(encoder, mask, i, context, _by_head(encoder, source[i]))

    with _replacing(encoder, replace):
        yield


@contextmanager
def patched_from(target: Encoder, source: Encoder, heads):
    """Within the block, every forward of ``target`` takes the chosen heads' outputs from
    ``source``'s run on the same batch, recorded just before (live activation patching: for loops,
    such as an evaluation, that call the encoder themselves)."""
    _check_same_shape(target, source)
    mask = check_heads(target, heads)
    recorded: dict[str, list[torch.Tensor]] = {}

    def record(module, args, kwargs):
        recorded["source"] = record_heads(source, args[0] if args else kwargs["batch"])

    def replace(i, context):
        return _swap(target, mask, i, context, _by_head(target, recorded["source"][i]))

    handle = target.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with _replacing(target, replace):
            yield
    finally:
        handle.remove()


def _check_same_shape(target: Encoder, source: Encoder) -> None:
    if (source.num_layers, source.num_heads, source.head_dim) != (target.num_layers, target.num_heads, target.head_dim):
        raise ValueError(f"source and target differ in shape: {(source.num_layers, source.num_heads, source.head_dim)} "
                         f"against {(target.num_layers, target.num_heads, target.head_dim)} (layers, heads, head_dim)")


@torch.no_grad()
def patch_run(target: Encoder, source: Encoder, batch: WordBatch, heads) -> EncoderOutput:
    """``target``'s output on ``batch`` with the chosen heads' outputs taken from ``source``'s run
    on the same batch (two encoders of one architecture: the same tokenizer and shape)."""
    _check_same_shape(target, source)
    recorded = record_heads(source, batch)
    with patched(target, heads, recorded):
        return target(batch)
