"""Label codecs every task may reuse, and the registry of label and split-list formats.

- :mod:`harness.labels.masks`: object masks (one channel per id, bilinear to the feature grid; argmax back).
- :mod:`harness.labels.parts`: part / class-id maps (one channel per class present; argmax back to class ids).
- :mod:`harness.labels.keypoints`: keypoints (Gaussian heatmaps at feature resolution; top-k mean back to
  pixels) and readers of keypoint files (``.mat``, ``.npy``, ``.json``).
- :mod:`harness.labels.formats`: what a dataset card's ``check.labels`` and split-list ``format`` mean, so
  that ``harness data check`` reads a new task's labels without an edit under ``harness/data``.

Torch is imported inside the codecs only: checking and scoring data need none.
"""
