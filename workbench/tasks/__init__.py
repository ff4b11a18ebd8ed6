"""Finetuning tasks: the catalogue (each task's loader, kind, labels, metric, origin), the task
kinds (HF head, encoding, official metric), the pinned downloads of the offline tasks, and the
metrics themselves.

    task = get_task("boolq"); data = task.load()        # workbench.tasks.catalogue
"""
