"""Task decoders, one module per task; ``build_task`` makes one from the training sentences.

Every module of this package that defines a ``Task`` subclass with a ``name`` adds that task
to the book: ``TASK_CLASSES`` finds them, in the order of their ``order``. A new Stem Cell task
is one module here (its decoder, loss, decoding, metric, labels and probe items); chapters 2-5
train, gate and probe it with the others.
"""

from __future__ import annotations

import importlib
import pkgutil

from mtlheads.tasks.base import Task


def _task_classes() -> dict[str, type[Task]]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found, stack = [], list(Task.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if cls.name and cls.__module__.startswith(f"{__name__}."):
            found.append(cls)
    return {cls.name: cls for cls in sorted(found, key=lambda cls: (cls.order, cls.name))}


TASK_CLASSES: dict[str, type[Task]] = _task_classes()
TASKS: tuple[str, ...] = tuple(n for n, c in TASK_CLASSES.items() if not c.control)  # the Stem Cell tasks, in order
CONTROL_TASKS: tuple[str, ...] = tuple(n for n, c in TASK_CLASSES.items() if c.control)  # chapter 3's control


def check_tasks(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in TASK_CLASSES]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names}; valid tasks: {', '.join(TASK_CLASSES)}")
    return names


def build_task(name: str, train: list[dict], hidden: int) -> Task:
    """A fresh decoder for task ``name`` whose label set is read from ``train``."""
    return TASK_CLASSES[check_tasks(name)[0]].build(train, hidden)
