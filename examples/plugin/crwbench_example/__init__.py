"""A crwbench plug-in, installed on its own: a keypoint task (``toykp``), a trainable method (``toynet``) and its
trainer, registered with the harness through the entry points in ``pyproject.toml``; nothing under ``harness/``
names them.

- :mod:`crwbench_example.task`: the task (reading, label codec, scoring) and its dataset card ``toykp.yaml``;
- :mod:`crwbench_example.make_data`: writes the task's data, generated (``python -m crwbench_example.make_data``);
- :mod:`crwbench_example.method`: registers the method and its trainer (no torch import: ``harness list`` stays fast);
- :mod:`crwbench_example.network`: the network and the method class that evaluates it;
- :mod:`crwbench_example.trainer`: the trainer, with its recipes in ``recipes/``.
"""
