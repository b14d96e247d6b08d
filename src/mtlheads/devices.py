"""Where a model runs: the ``device`` knob, moving batches there, and bfloat16 autocast on CUDA.

Valid device names: ``auto`` (CUDA when this machine has it, else the CPU), ``cpu``, ``cuda`` (the
current GPU) and ``cuda:N``. A config stores its device after ``canonical``, so a run's cache key
says where it ran (a GPU run's numbers differ from a CPU run's in the last digits, and with
bfloat16 autocast in more); ``auto`` on a machine without CUDA is ``cpu``, the same run as
asking for ``cpu``.

Batches are built on the host (tokenising, padding, targets from Python lists) and moved to the
model's device in one call per batch (``move``); nothing in a training step reads a value back
to the host that the next step needs, except where a decoder's algorithm must (SRL's pruning).
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import nullcontext
from typing import Any

import torch

VALID = "'auto', 'cpu', 'cuda' or 'cuda:N' (N: a GPU index)"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def canonical(name: Any) -> str:
    """The device ``name`` means on this machine: ``auto`` resolved, the others checked. A bad
    name, or CUDA asked for on a machine without it, is a ``ValueError`` saying what is valid."""
    if not isinstance(name, str) or not _PATTERN.fullmatch(name):
        raise ValueError(f"device = {name!r} is not valid; valid: {VALID}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device = {name!r}, but this machine has no CUDA device; valid here: 'auto' or 'cpu'")
        index = int(name.split(":")[1]) if ":" in name else None
        if index is not None and index >= torch.cuda.device_count():
            raise ValueError(f"device = {name!r}, but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s): valid indices 0 to {torch.cuda.device_count() - 1}")
    return name


def settle(config) -> None:
    """For a frozen config's ``__post_init__``: its ``device`` resolved (``canonical``) and its
    ``bf16`` kept only where autocast applies (CUDA), so the stored config says how the run ran."""
    object.__setattr__(config, "device", canonical(config.device))
    object.__setattr__(config, "bf16", uses_bf16(config.device, config.bf16))


def resolve(name: str) -> torch.device:
    return torch.device(canonical(name))


def uses_bf16(device: str, bf16: bool) -> bool:
    """bfloat16 autocast is used on CUDA only: on the CPU it is slower and changes results."""
    return bool(bf16) and torch.device(device).type == "cuda"


def autocast(device: torch.device | str, bf16: bool):
    """The forward and loss of a step under bfloat16 autocast on CUDA when ``bf16``; elsewhere a
    no-op (so CPU results are those of float32)."""
    device = torch.device(device)
    if uses_bf16(str(device), bf16):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def move(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor in it on ``device``: tensors, dicts, lists, tuples and dataclasses
    (moved field by field); anything else is returned as it is. A tensor already there is not copied.
    From pinned host memory the copy does not wait for the device."""
    device = torch.device(device)
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=obj.is_pinned())
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        moved = [move(v, device) for v in obj]
        return moved if isinstance(obj, list) else tuple(moved)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: move(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def to_host(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict, for the run cache (a cached run loads on any machine)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (for timing); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
