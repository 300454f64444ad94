"""The three tasks edgecnn deploys: classify, detect, segment, each one :class:`Task` in :data:`TASKS`.

A task knows its loss, its metrics, its deployable graph and its demo view; train, convert, eval,
optimize and demo look the task up (from ``--task``, the architecture, or the model's metadata)
instead of branching on it. Importing a task never imports TensorFlow: the Pi evaluates .tflite
models and runs the demo through the same objects.
"""

from __future__ import annotations

from edgecnn.core.errors import EdgecnnError
from edgecnn.tasks.base import Task, check_task
from edgecnn.tasks.classify import ClassifyTask
from edgecnn.tasks.detect import DetectTask
from edgecnn.tasks.segment import SegmentTask

TASKS: dict[str, Task] = {task.name: task for task in (ClassifyTask(), DetectTask(), SegmentTask())}


def get_task(name: str | None) -> Task:
    """A task by name; None is classification (models and runs from before tasks existed)."""
    name = name or "classify"
    if name not in TASKS:
        raise EdgecnnError(f"unknown task {name!r}; use one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_of_arch(arch: str) -> Task:
    """The task an architecture is built for (an unknown name is a one-line error with close matches)."""
    from edgecnn.archs import get_arch  # lazy: the architectures import TensorFlow

    return get_task(get_arch(arch).task)


__all__ = ["TASKS", "Task", "check_task", "get_task", "task_of_arch"]
