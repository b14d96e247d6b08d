"""The one result type of a training run, for every model of the book."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """A trained model of either paper: its config, training cost, what it trained on, its scores
    and weights. Stem Cell runs (``train``) fill the dev curve, the best checkpoint's dev and test
    metrics and the sentences and subwords seen; multi-head runs (``multihead.train_run``) the
    examples per task and every step's head losses. ``state_dict`` holds the kept weights, on the
    host."""

    config: Any
    dev_curve: list[dict] = field(default_factory=list)  # {"step", "seconds", "dev": {task: score}}
    best_step: int = 0
    dev: dict = field(default_factory=dict)  # metrics at the best checkpoint
    test: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    steps: int = 0
    train_sentences: int = 0
    train_subwords: int = 0
    examples: dict = field(default_factory=dict)  # per task
    losses: list = field(default_factory=list)  # per step, {head: loss}
    state_dict: dict | None = None  # the kept (best, or last) weights

    def main_scores(self, split: str = "test") -> dict[str, float]:
        """Each task's main metric on ``split`` (Stem Cell runs)."""
        from mtlheads.tasks import TASK_CLASSES  # the task classes only where a Stem Cell run asks

        scores = getattr(self, split)
        return {t: scores[t][TASK_CLASSES[t].metric] for t in self.config.tasks}
