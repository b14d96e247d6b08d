"""What a Stem Cell run is, as a typed key, and every name the book gives it, derived in one place.

A ``RunKey`` says which tasks a run trains (none: the pretrained encoder), its seed, how MTL
batches are made and the gates' L0 weight. Chapters select runs by key, and tables name them by
the key's ``label`` (one model) or ``setting`` (the column a run fills: ``STL``, ``MTL-5``,
``MTL-5 joint``, ...); the label analysis asks a key for its ``role`` for one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtlheads.tasks import TASKS, check_tasks

PRETRAINED = "pretrained"


@dataclass(frozen=True)
class RunKey:
    """A Stem Cell run's identity: ``tasks`` (empty: the pretrained encoder, untrained), ``seed``,
    ``mtl_mode`` (``sample`` or ``joint``; one task: ``sample``) and ``gate_lambda`` (None: no gates)."""

    tasks: tuple[str, ...] = ()
    seed: int = 0
    mtl_mode: Literal["sample", "joint"] = "sample"
    gate_lambda: float | None = None
    updates: Literal["epochs", "stl"] = "epochs"  # sampled MTL: the paper's epochs per task, or STL's updates

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(check_tasks(self.tasks)) if self.tasks else ())
        if self.mtl_mode not in ("sample", "joint"):
            raise ValueError(f"mtl_mode {self.mtl_mode!r} is not one of 'sample', 'joint'")
        if self.updates not in ("epochs", "stl"):
            raise ValueError(f"updates {self.updates!r} is not one of 'epochs', 'stl'")
        if len(self.tasks) < 2:
            object.__setattr__(self, "mtl_mode", "sample")  # one task (or none) has no MTL batches
        if len(self.tasks) < 2 or self.mtl_mode == "joint":
            object.__setattr__(self, "updates", "epochs")  # as ``TrainConfig`` names the same run

    @classmethod
    def of(cls, config) -> "RunKey":
        """The key of a ``train.TrainConfig`` (or anything with its five fields)."""
        return cls(tuple(config.tasks), config.seed, config.mtl_mode, config.gate_lambda,
                   getattr(config, "updates", "epochs"))

    @classmethod
    def pretrained(cls) -> "RunKey":
        return cls()

    @classmethod
    def stl(cls, task: str, seed: int, gate_lambda: float | None = None) -> "RunKey":
        return cls((task,), seed, gate_lambda=gate_lambda)

    @classmethod
    def mtl(cls, seed: int, tasks: tuple[str, ...] = TASKS, mtl_mode: str = "sample",
            gate_lambda: float | None = None, updates: str = "epochs") -> "RunKey":
        return cls(tuple(tasks), seed, mtl_mode, gate_lambda, updates)

    @property
    def is_pretrained(self) -> bool:
        return not self.tasks

    @property
    def setting(self) -> str:
        """The column the run fills in a table over tasks: ``pretrained``, ``STL``, ``MTL-5``
        (every task), ``MTL-5 joint``, ``MTL-5 STL updates`` (sampled, as many encoder updates as
        an STL run), or ``MTL POS+NER`` (a subset)."""
        if self.is_pretrained:
            return PRETRAINED
        if len(self.tasks) == 1:
            return "STL"
        name = f"MTL-{len(self.tasks)}" if set(self.tasks) == set(TASKS) else "MTL " + "+".join(
            t.upper() for t in self.tasks)
        return name + (" joint" if self.mtl_mode == "joint" else " STL updates" if self.updates == "stl" else "")

    @property
    def label(self) -> str:
        """The model's name: ``STL POS``, ``MTL-5``, ``MTL-5 joint``, ``MTL POS+NER``, with
        ``gated (lambda)`` after it when the run has gates."""
        name = f"STL {self.tasks[0].upper()}" if len(self.tasks) == 1 else self.setting
        return name + (f" gated ({self.gate_lambda:g})" if self.gate_lambda is not None else "")

    def role(self, task: str) -> str | None:
        """The column this model fills for ``task`` in the label analysis: ``pretrained``, ``STL``
        (``task``'s own STL model only), the setting of MTL over every task, ``MTL +NER`` (the
        other tasks of a subset containing ``task``); None where the model does not train it."""
        if self.is_pretrained:
            return PRETRAINED
        if task not in self.tasks:
            return None
        if len(self.tasks) == 1:
            return "STL"
        if set(self.tasks) == set(TASKS):
            return self.setting
        return "MTL +" + "+".join(t.upper() for t in self.tasks if t != task)


MTL = RunKey.mtl(0).setting  # ``MTL-5``: every task, sampled batches (the paper's MTL)
MTL_JOINT = RunKey.mtl(0, mtl_mode="joint").setting  # ``MTL-5 joint``
MTL_STL_UPDATES = RunKey.mtl(0, updates="stl").setting  # ``MTL-5 STL updates``
