"""Hard-Concrete head gates (Louizos et al., 2018; Voita et al., 2019).

One gate per (layer, head) multiplies that head's context vector before the attention output
projection (through ``Encoder.head_gates``). Each gate has a ``log_alpha``. In training,
``u ~ U(eps, 1 - eps)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)`` with
``beta = 0.33``, and ``g = clamp(s (zeta - gamma) + gamma, 0, 1)`` with the stretch
``(gamma, zeta) = (-0.1, 1.1)``. At evaluation ``g = clamp(sigmoid(log_alpha) (zeta - gamma) +
gamma, 0, 1)``, deterministic; a head is open when ``g > 1e-3``. The L0 penalty is the
expected number of open gates, ``sigmoid(log_alpha - beta log(-gamma / zeta))``, summed over
heads, averaged over layers, times ``lambda``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETA, GAMMA, ZETA, EPS = 0.33, -0.1, 1.1, 1e-6
OPEN_THRESHOLD = 1e-3
INITS = ("constant", "xavier")


def stretch(s: torch.Tensor) -> torch.Tensor:
    """Stretch a (0, 1) sample to (gamma, zeta) and clamp it to [0, 1]: the gate value."""
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def evaluation_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deterministic gate values for given ``log_alpha`` (e.g. read from a saved state dict)."""
    return stretch(torch.sigmoid(log_alpha))


class HardConcreteGates(nn.Module):
    """Gates of shape (layers, heads); ``forward`` returns their values for one step."""

    def __init__(self, num_layers: int, num_heads: int, init_open: float = 0.9, init: str = "constant",
                 generator: torch.Generator | None = None):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"gate init {init!r} is not one of {', '.join(map(repr, INITS))}")
        # constant: most mass on open gates, P(g > 0) close to ``init_open`` (a common choice);
        # xavier: Glorot-uniform log_alpha, as the Stem Cell paper's code, so heads start unequal
        log_alpha = torch.full((num_layers, num_heads), math.log(init_open) - math.log(1 - init_open))
        if init == "xavier":
            bound = math.sqrt(6.0 / (num_layers + num_heads))
            log_alpha = torch.rand(num_layers, num_heads, generator=generator) * 2 * bound - bound
        self.log_alpha = nn.Parameter(log_alpha)

    def forward(self) -> torch.Tensor:
        if self.training:
            u = torch.empty_like(self.log_alpha).uniform_(EPS, 1 - EPS)
            s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + self.log_alpha) / BETA)
        else:
            s = torch.sigmoid(self.log_alpha)
        return stretch(s)

    def expected_open(self) -> torch.Tensor:
        """P(gate != 0) per head, (layers, heads)."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA))

    def penalty(self) -> torch.Tensor:
        """Mean over layers of the expected number of open heads in the layer."""
        return self.expected_open().sum(-1).mean()

    @torch.no_grad()
    def values(self) -> torch.Tensor:
        """Deterministic evaluation-time gate values, (layers, heads)."""
        return evaluation_gates(self.log_alpha)

    @torch.no_grad()
    def open_mask(self) -> torch.Tensor:
        return self.values() > OPEN_THRESHOLD


class FixedGates(nn.Module):
    """Fixed gate values (layers, heads), e.g. a 0/1 mask: a model with these as its ``gates``
    runs with those heads scaled (0: removed), in training and evaluation alike."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.register_buffer("fixed", values.float())

    def forward(self) -> torch.Tensor:
        return self.fixed
