"""Getting benchmark data and refusing bad data: dataset cards, downloads, safe extraction, checks.

- :mod:`harness.data.cards` reads and validates the YAML cards in ``datasets/``;
- :mod:`harness.data.download` fetches an HTTP(S) dataset (resume, retries, sha256) and unpacks it;
- :mod:`harness.data.extract` unpacks zip/tar archives without ever writing outside the target;
- :mod:`harness.data.check` validates a data root against its card (``require_valid`` for the runner).
"""
