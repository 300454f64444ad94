"""The three tasks edgecnn deploys: classify, detect, segment, each one :class:`Task` in a registry.

A task knows its data, its loss, its metrics and how its model becomes a .tflite; train, convert,
eval, optimize and demo look the task up (from ``--task``, the architecture, or the model's
metadata) instead of branching on it. Importing a task never imports TensorFlow: the Pi evaluates
.tflite models through the same objects.
"""

from edgecnn.tasks.base import TASKS, Task, get_task, task_of_arch

__all__ = ["TASKS", "Task", "get_task", "task_of_arch"]
