"""Task decoders, one module per task; ``build_task`` makes one from the training sentences."""

from __future__ import annotations

from mtlheads.tasks.base import Task
from mtlheads.tasks.con import CON
from mtlheads.tasks.dep import DEP
from mtlheads.tasks.ner import NER
from mtlheads.tasks.pos import POS
from mtlheads.tasks.srl import SRL

TASK_CLASSES: dict[str, type[Task]] = {"pos": POS, "ner": NER, "dep": DEP, "con": CON, "srl": SRL}
TASKS: tuple[str, ...] = tuple(TASK_CLASSES)  # the Stem Cell tasks, in the book's order


def check_tasks(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in TASK_CLASSES]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names}; valid tasks: {', '.join(TASK_CLASSES)}")
    return names


def build_task(name: str, train: list[dict], hidden: int) -> Task:
    """A fresh decoder for task ``name`` whose label set is read from ``train``."""
    return TASK_CLASSES[check_tasks(name)[0]].build(train, hidden)
