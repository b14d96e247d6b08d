"""Dropout with a cheap random mask, for every model of the book.

torch's CPU dropout draws its Bernoulli mask one element at a time (``bernoulli_``). On chapter
7's inputs (8 x 192 subwords) that was 37% of a training step, most of it on the attention
probabilities (batch x heads x subwords x subwords). Here a mask costs 16 random bits per
element, drawn in bulk from NumPy's PCG64 generator: an element is dropped when its bits fall
below ``round(p * 2**16)``, so with probability ``q = round(p * 2**16) / 2**16`` (p = 0.1:
q = 0.1000061), and kept elements are scaled by ``1 / (1 - q)``, which keeps the expectation.
Each mask's generator is seeded from torch's global generator, so ``torch.manual_seed`` fixes
the masks as it fixes torch's own.

``install(model)`` puts this dropout into a model: its ``nn.Dropout`` modules, and the dropout
on a transformers BERT's attention probabilities (an attention function registered under
``ATTENTION``: transformers' eager attention with this dropout, and eager's mask).
``install(model, fast=False)`` puts torch's back (the benchmark's baseline). On a GPU ``drop``
is torch's dropout: there it is fast, and a mask drawn on the host would have to be copied over.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import AttentionInterface, PretrainedConfig
from transformers.masking_utils import AttentionMaskInterface, eager_mask

RESOLUTION = 2 ** 16  # drop probabilities are multiples of 1 / RESOLUTION
ATTENTION = "mtlheads_eager"  # transformers' eager attention with this module's dropout


def drop_probability(p: float) -> float:
    """The probability with which ``drop`` zeroes an element: ``p`` rounded to 1 / 2**16."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    return round(p * RESOLUTION) / RESOLUTION


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``shape`` tensor: 0 where an element is dropped, ``1 / (1 - q)`` where it is kept."""
    q = drop_probability(p)
    n = int(np.prod(shape))
    seed = int(torch.randint(0, 2 ** 62, (1,)))
    raw = np.random.PCG64(seed).random_raw(-(-n // 4))  # 64 bits: four 16-bit draws
    bits = torch.from_numpy(raw.view(np.int16)[:n]).view(shape)  # uniform over [-2**15, 2**15)
    return (bits >= round(q * RESOLUTION) - RESOLUTION // 2).to(dtype).mul_(1.0 / (1.0 - q))


def drop(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x``: each element zeroed with probability ``drop_probability(p)``, the rest scaled."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":  # the mask is drawn on the host: elsewhere torch's own is fast
        return torch.nn.functional.dropout(x, p, training=True)
    if drop_probability(p) == 1.0:
        return x * 0.0
    return x * keep_mask(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask of ``drop`` (same ``p``, same place in a model)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop(input, self.p, self.training)


def eager_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention (query, key, value: (batch, heads, subwords, head_dim)), with
    ``drop`` on the attention probabilities. Returns the context (batch, subwords, heads,
    head_dim) and the probabilities (batch, heads, subwords, subwords)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    # scaled and masked in place: the same values as transformers' out-of-place ops, two fewer
    # passes over the (batch, heads, subwords, subwords) scores (the product's backward needs
    # only its inputs)
    weights = torch.matmul(query, key.transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:
        weights.add_(attention_mask)
    weights = drop(torch.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def always_eager_mask(*args, **kwargs) -> torch.Tensor:
    """transformers' eager mask, built even for a batch without padding: deciding to skip it reads
    the padding mask back to the host (``padding_mask.all()``), which on a GPU stalls every step.
    Adding the all-zero mask changes no score."""
    kwargs["allow_is_bidirectional_skip"] = False
    return eager_mask(*args, **kwargs)


AttentionInterface.register(ATTENTION, eager_attention)
AttentionMaskInterface.register(ATTENTION, always_eager_mask)


def install(model: nn.Module, fast: bool = True) -> nn.Module:
    """Give ``model`` (in place) this module's dropout everywhere, or torch's with ``fast=False``.
    Only eager attention is switched; a pass that asks for another kernel (``Encoder`` asks for
    SDPA in evaluation) still gets it."""
    old, new = (nn.Dropout, Dropout) if fast else (Dropout, nn.Dropout)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is old:
                setattr(parent, name, new(child.p).train(child.training))
        config = getattr(parent, "config", None)
        if isinstance(config, PretrainedConfig):
            if fast and config._attn_implementation == "eager":
                config._attn_implementation = ATTENTION
            elif not fast and config._attn_implementation == ATTENTION:
                config._attn_implementation = "eager"
    return model
